# Helpers sourced by every guest test. Runs in the guest's busybox sh.
# /tests/expect.conf (written by scripts/guest-test) describes the configured device:
#   SERIAL, MDTS, NS_COUNT, DEVICE, VIRTIO_QUEUES, and per namespace i (1..NS_COUNT):
#   NSi_NSID NSi_LBS NSi_BLOCKS NSi_MSSRL NSi_MCL NSi_MSRC NSi_RO, and the metadata format
#   NSi_MS NSi_MSET NSi_PI NSi_PIL NSi_PIF (--ns ms, mset, pi, pil, pif; 0 when not given)
. /tests/expect.conf

# The device kind (expect.conf's DEVICE, else the kernel command line's vnvme.device= that
# guest-run sets) and the kind of disk the block-level tests use, DISK:
#   nvme    qemu-nvme, vnvme, and vnvme+vhost-user-blk (the suite tests its NVMe view;
#           40-two-views compares it with the virtio view /dev/vda)
#   virtio  vhost-user-blk, qemu-virtio-blk: namespace i is the i-th virtio disk (/dev/vdX)
if [ -z "${DEVICE:-}" ]; then
    for _w in $(cat /proc/cmdline); do
        case "$_w" in vnvme.device=*) DEVICE=${_w#vnvme.device=} ;; esac
    done
fi
case "${DEVICE:-}" in
vhost-user-blk | qemu-virtio-blk) DISK=virtio ;;
*) DISK=nvme ;;
esac

# nvme_only: skip (with the reason) a test of NVMe commands when the disks are virtio-blk.
nvme_only() {
    [ "$DISK" = nvme ] || skip "NVMe-only (device is virtio-blk: $DEVICE)"
}

fail() {
    echo "FAIL-REASON: $*"
    exit 1
}

# skip REASON: this test cannot run here (the runner counts it as skipped, never passed).
skip() {
    echo "SKIP-REASON: $*"
    exit 77
}

# The kernel the guest runs (for messages).
KERNEL_RELEASE=$(uname -r)

# The device's control socket as a serial port, when guest-run was given --guest-control
# (vnvme only): the kernel command line names it (vnvme.control=ttyS1).
CONTROL_TTY=""
for _w in $(cat /proc/cmdline); do
    case "$_w" in vnvme.control=*) CONTROL_TTY=/dev/${_w#vnvme.control=} ;; esac
done
[ -c "$CONTROL_TTY" ] || CONTROL_TTY=""

# host_ctl COMMAND [ARGS-JSON]: one request to the device's control socket (docs/control.md)
# through $CONTROL_TTY. Prints the reply line; status 0 on a "return" reply, 1 on an
# "error" reply or no reply within 10 s, 2 without a control channel.
_ctl_seq=0
host_ctl() {
    [ -n "$CONTROL_TTY" ] || return 2
    _ctl_seq=$((_ctl_seq + 1))
    _id="g$$-$_ctl_seq"
    exec 9<>"$CONTROL_TTY"
    stty raw -echo <&9 2>/dev/null
    _args=${2:-}
    [ -n "$_args" ] || _args='{}'
    printf '{"execute":"%s","arguments":%s,"id":"%s"}\n' "$1" "$_args" "$_id" >&9
    _reply=""
    # Skip stale lines (a reply to an earlier request that timed out).
    while IFS= read -r -t 10 _line <&9; do
        case "$_line" in *"\"id\":\"$_id\""*) _reply=$_line; break ;; esac
    done
    exec 9<&-
    echo "$_reply"
    case "$_reply" in *'"return":'*) return 0 ;; esac
    return 1
}

# get_cdfe: Host Behavior Support CDFE as Get Features (from the guest) reports it.
get_cdfe() {
    nvme get-feature /dev/nvme0 --feature-id=0x16 --data-len=512 --raw-binary >/tmp/hbs.get 2>/tmp/gf.err ||
        fail "get-feature 0x16 failed: $(head -n1 /tmp/gf.err)"
    _lo=$(od -An -tu1 -j4 -N1 /tmp/hbs.get | tr -d ' ')
    _hi=$(od -An -tu1 -j5 -N1 /tmp/hbs.get | tr -d ' ')
    echo $((_lo + 256 * _hi))
}

# field KEY: value of "KEY : value" in nvme-cli's human output on stdin.
field() {
    awk -F: -v k="$1" '{g=$1; gsub(/[ \t]/,"",g)} g==k {v=$2; for(i=3;i<=NF;i++) v=v":"$i; sub(/^[ \t]*/,"",v); sub(/[ \t]*$/,"",v); print v; exit}'
}

# expect_eq WHAT GOT WANT
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# ns_var I NAME: the value of NS<I>_<NAME> from expect.conf.
ns_var() {
    eval "echo \${NS$1_$2}"
}

# vd_of I: the I-th virtio-blk disk in PCI address order, which is the order guest-run
# attaches them in (--ns order): /dev/vdX, or a name that does not exist.
vd_of() {
    _k=0
    for _v in $(for _b in /sys/block/vd*; do
        [ -e "$_b/device" ] || continue
        _pci=$(readlink -f "$_b/device")
        echo "${_pci%/*} ${_b##*/}"
    done | sort | awk '{print $2}'); do
        _k=$((_k + 1))
        [ "$_k" = "$1" ] && { echo "/dev/$_v"; return; }
    done
    echo "/dev/vd-no-disk-$1"
}

# virtio_has DEV BIT: is virtio feature BIT negotiated on DEV (/dev/vdX)? The sysfs
# features string has one 0/1 character per bit, bit 0 first.
virtio_has() {
    _f=$(cat "/sys/block/${1#/dev/}/device/features" 2>/dev/null)
    [ "$(echo "$_f" | cut -c$(($2 + 1)))" = 1 ]
}

# blk_stat DEV FIELD: field FIELD (1-based) of /sys/block/DEV/stat (12: discards completed,
# 16: flushes completed; Documentation/block/stat.rst).
blk_stat() {
    awk -v f="$2" '{print $f}' "/sys/block/${1#/dev/}/stat"
}

# dev_of I: the block device of namespace I: on virtio disks vd_of I; on NVMe found by NSID
# (the kernel scans namespaces in parallel, so nvme0nK need not be NSID K).
dev_of() {
    if [ "$DISK" = virtio ]; then
        vd_of "$1"
        return
    fi
    _want=$(ns_var "$1" NSID)
    for _b in /sys/block/nvme0n*; do
        if [ "$(cat "$_b/nsid" 2>/dev/null)" = "$_want" ]; then
            echo "/dev/${_b##*/}"
            return
        fi
    done
    echo "/dev/nvme0-no-namespace-$_want"
}

# A file of N random bytes (multiple of 4096) at PATH.
random_file() {
    dd if=/dev/urandom of="$1" bs=4096 count=$(($2 / 4096)) 2>/dev/null
}

# blocks_to FILE DEV LBS SLBA N: read N blocks at SLBA of DEV into FILE (O_DIRECT).
blocks_to() {
    dd if="$2" of="$1" bs="$3" skip="$4" count="$5" iflag=direct 2>/dev/null || fail "read of $5 blocks at $4 from $2 failed"
}

# fill_random DEV LBS SLBA N: write N random blocks at SLBA (O_DIRECT).
fill_random() {
    dd if=/dev/urandom of=/tmp/rnd bs="$2" count="$4" 2>/dev/null
    dd if=/tmp/rnd of="$1" bs="$2" seek="$3" count="$4" oflag=direct conv=notrunc 2>/dev/null || fail "write of $4 blocks at $3 to $1 failed"
}

# copy_expect_status STATUS DEV ARGS...: run nvme copy, require NVMe status STATUS
# ("success" or a hex code such as 0x4183).
copy_expect_status() {
    want=$1
    shift
    nvme copy "$@" >/tmp/copy.out 2>&1
    rc=$?
    if [ "$want" = success ]; then
        [ $rc -eq 0 ] && grep -q 'NVMe Copy: success' /tmp/copy.out || fail "nvme copy $* should succeed: $(cat /tmp/copy.out)"
    else
        [ $rc -ne 0 ] || fail "nvme copy $* should fail with $want but succeeded"
        grep -qi "($want)" /tmp/copy.out || fail "nvme copy $* should fail with $want: $(cat /tmp/copy.out)"
    fi
    echo "nvme copy $*: $(head -n1 /tmp/copy.out)"
}

# seq_list START STEP COUNT: "START,START+STEP,..." (COUNT items)
seq_list() {
    awk -v s="$1" -v d="$2" -v n="$3" 'BEGIN{for(i=0;i<n;i++) printf "%s%d", (i?",":""), s+i*d}'
}

# repeat_list VALUE COUNT: "VALUE,VALUE,..."
repeat_list() {
    awk -v v="$1" -v n="$2" 'BEGIN{for(i=0;i<n;i++) printf "%s%s", (i?",":""), v}'
}

# guest_set_cdfe MASK: Set Features Host Behavior Support from the guest with CDFE
# (bytes 5:4) = MASK. Status 0 when set, 3 when the kernel refuses it (Linux >= 6.12.117
# returns EACCES: the driver owns the feature); any other failure fails the test.
guest_set_cdfe() {
    dd if=/dev/zero of=/tmp/hbs bs=512 count=1 2>/dev/null
    printf "$(printf '\\%03o' $(($1 & 255)))" | dd of=/tmp/hbs bs=1 seek=4 conv=notrunc 2>/dev/null
    if nvme set-feature /dev/nvme0 --feature-id=0x16 --data-len=512 --data=/tmp/hbs >/tmp/sf.out 2>&1; then
        return 0
    fi
    grep -qi 'permission denied' /tmp/sf.out && return 3
    fail "set-feature 0x16 (CDFE=$1) failed: $(head -n1 /tmp/sf.out)"
}

# host_set_cdfe MASK: set CDFE from the device's side (control command set-host-behavior),
# then wait until the guest's Get Features shows it. Status 2 without a control channel.
host_set_cdfe() {
    [ -n "$CONTROL_TTY" ] || return 2
    host_ctl set-host-behavior "{\"cdfe\":$1}" >/tmp/ctl.out || fail "set-host-behavior cdfe=$1: $(cat /tmp/ctl.out)"
    grep -q "\"return\":{\"cdfe\":$1}" /tmp/ctl.out || fail "set-host-behavior cdfe=$1 replied $(cat /tmp/ctl.out)"
    _seen=$(get_cdfe)
    [ "$_seen" = "$1" ] || fail "after set-host-behavior cdfe=$1 the guest's Get Features 0x16 shows CDFE=$_seen"
}

# kernel_bug ID TEXT: the booted kernel (copy-offload series $KERNEL_SERIES) did something
# wrong: wrong data reported as success, a limit ignored, a hang. Fails the test, unless
# /tests/kernel.known (firmware-tests/kernels/<series>.known: lines "ID evidence") lists
# ID: then it is recorded as KNOWN-KERNEL-BUG and the test goes on.
kernel_bug() {
    if [ -f /tests/kernel.known ] && grep -q "^$1[[:space:]]" /tests/kernel.known; then
        echo "KNOWN-KERNEL-BUG ${KERNEL_SERIES:-stock} $1: $2"
        return 0
    fi
    echo "KERNEL-BUG ${KERNEL_SERIES:-stock} $1: $2"
    fail "kernel bug $1: $2"
}

# known_kernel_bug ID: is ID listed for the booted kernel's series? (For a step that would
# crash the kernel: a test does not take it when the crash is known.)
known_kernel_bug() {
    [ -f /tests/kernel.known ] && grep -q "^$1[[:space:]]" /tests/kernel.known
}

# known_deviation ID TEXT: the device under test is QEMU's emulated NVMe and showed a
# documented deviation from the spec (docs/copy.md lists each ID): record it and go on.
# Against any other device the same observation is a failure.
known_deviation() {
    if [ "$DEVICE" = qemu-nvme ]; then
        echo "KNOWN-DEVIATION qemu-nvme $1: $2"
        return 0
    fi
    fail "$2"
}
