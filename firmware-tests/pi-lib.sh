# Helpers of the protection-information tests (5x-pi-*), sourced after lib.sh.
# Namespaces come from expect.conf's NSi_MS/NSi_MSET/NSi_PI/NSi_PIL/NSi_PIF.

# pi_ns KIND: the index of the first namespace of KIND, or nothing:
#   16   PI, 16-bit guard, separate metadata that is exactly the tuple (8 bytes)
#   64   PI, 64-bit guard, separate metadata that is exactly the tuple (16 bytes)
#   ext  PI, extended LBA (metadata after each block's data)
#   big  PI, separate metadata larger than the tuple
pi_ns() {
    _i=1
    while [ "$_i" -le "$NS_COUNT" ]; do
        _pi=$(ns_var $_i PI) _pif=$(ns_var $_i PIF) _ms=$(ns_var $_i MS) _mset=$(ns_var $_i MSET)
        if [ "${_pi:-0}" != 0 ]; then
            _t=8
            [ "$_pif" = 2 ] && _t=16
            case "$1" in
            16) [ "$_pif" = 0 ] && [ "$_mset" = 0 ] && [ "$_ms" = 8 ] && { echo $_i; return; } ;;
            64) [ "$_pif" = 2 ] && [ "$_mset" = 0 ] && [ "$_ms" = 16 ] && { echo $_i; return; } ;;
            ext) [ "$_mset" = 1 ] && { echo $_i; return; } ;;
            big) [ "$_mset" = 0 ] && [ "$_ms" -gt "$_t" ] && { echo $_i; return; } ;;
            esac
        fi
        _i=$((_i + 1))
    done
}

# bytes HEX: the bytes HEX spells (two digits each) on stdout.
bytes() {
    printf "$(echo "$1" | awk '{for (i = 1; i < length($0); i += 2) {
        v = (index("0123456789abcdef", substr($0, i, 1)) - 1) * 16 + index("0123456789abcdef", substr($0, i + 1, 1)) - 1
        printf "\\%03o", v }}')"
}

# hex FILE: the bytes of FILE as one lower-case hex string.
hex() {
    od -An -tx1 -v "$1" | tr -d ' \n'
}

# hexnum VALUE BYTES: VALUE (decimal or 0x...) as BYTES big-endian bytes in hex.
hexnum() {
    awk -v v="$(($1))" -v n="$2" 'BEGIN{s=""; for(i=0;i<n;i++){s=sprintf("%02x", v%256) s; v=int(v/256)}; print s}'
}

# tuple16 GUARD APP REF / tuple64 GUARDHEX APP REF: a protection information tuple in hex
# (16-bit guard: guard, application tag, 32-bit reference tag; 64-bit guard: 16 hex digits
# of guard, application tag, 48-bit reference tag; all big-endian).
tuple16() {
    echo "$(hexnum "$1" 2)$(hexnum "$2" 2)$(hexnum "$3" 4)"
}
tuple64() {
    echo "$1$(hexnum "$2" 2)$(hexnum "$3" 6)"
}

# The guards of zeroed blocks: CRC-16 T10-DIF of zeroes is 0; CRC-64 NVMe of 4096 zero
# bytes is the NVM Command Set specification's first 64b CRC test case.
GUARD64_ZERO_4K=6482d367eb22b64e

# pi_status CMD...: run an nvme-cli command (its output files, /tmp/o /tmp/mo /tmp/one
# /tmp/meta /tmp/b /tmp/mb, removed first); prints "success" or the status nvme-cli
# reports, as 0x followed by 3 hex digits (SCT, SC) and " dnr" when DNR was set.
pi_status() {
    # nvme-cli writes its output files without truncating them: start from none.
    rm -f /tmp/o /tmp/mo /tmp/one /tmp/meta /tmp/b /tmp/mb
    "$@" >/tmp/pi.out 2>&1
    _rc=$?
    if [ $_rc -eq 0 ]; then
        echo success
        return
    fi
    _s=$(grep -o '(0x[0-9a-fA-F]*)' /tmp/pi.out | tail -n1 | tr -d '()')
    if [ -z "$_s" ]; then
        echo "error:$(head -n1 /tmp/pi.out)"
        return
    fi
    _v=$((_s))
    _d=""
    [ $((_v & 0x4000)) -ne 0 ] && _d=" dnr"
    printf '0x%03x%s\n' $((_v & 0x7ff)) "$_d"
}

# pi_expect WANT WHAT CMD...: run CMD, require status WANT ("success", or 0xSCC without
# DNR). On vnvme a failure must carry DNR (the command fails the same way again); QEMU's
# end-to-end statuses carry none: noted as a KNOWN-DEVIATION there, not failed.
pi_expect() {
    _want=$1 _what=$2
    shift 2
    _got=$(pi_status "$@")
    case "$_got" in
    "$_want")
        if [ "$_want" != success ] && [ "$DEVICE" != qemu-nvme ]; then
            fail "$_what: status $_got without DNR ($*)"
        fi
        [ "$_want" != success ] && echo "KNOWN-DEVIATION qemu-nvme pi-status-without-dnr: $_what: $_got, no DNR (vnvme sets DNR: the same command fails again)"
        ;;
    "$_want dnr") ;;
    *) fail "$_what: got $_got, want $_want ($*): $(head -n2 /tmp/pi.out | tr '\n' ' ')" ;;
    esac
    echo "  $_what: $_got"
}
