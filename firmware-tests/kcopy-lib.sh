# Helpers of the kernel copy-offload tests (3x-kcopy-*.sh), sourced after lib.sh.
# The booted kernel's series is $KERNEL_SERIES (from guest-test --kernel-series); what it
# is expected to read and send is /tests/kernel.expect (firmware-tests/kernels/<series>.expect):
# IFACE (cfr: copy_file_range; blkcpy: BLKCPY/BLKCPY_VEC), FORMAT, SYSFS, RANGES_PER_COPY,
# BLOCKS_PER_COPY, DM_LINEAR, NVMET.

# kcopy_setup: skip on virtio-blk disks (NVMe-only), and unless the kernel offers block-layer copy offload and kcopy is here.
kcopy_setup() {
    nvme_only
    [ -e /sys/block/nvme0n1/queue/copy_max_bytes ] ||
        skip "kernel $KERNEL_RELEASE has no block-layer copy offload (no queue/copy_max_bytes): boot a copy-offload kernel (scripts/guest-test --kernel-series DIR)"
    command -v kcopy >/dev/null 2>&1 || skip "no kcopy helper in the guest (scripts/guest-test --kernel-series adds it)"
    EXPECT=""
    IFACE="" FORMAT="" SYSFS="" RANGES_PER_COPY="" BLOCKS_PER_COPY="" DM_LINEAR="" NVMET=""
    if [ -f /tests/kernel.expect ]; then
        . /tests/kernel.expect
        EXPECT=yes
    fi
    if [ -z "$IFACE" ]; then
        # No expectations for this series: find its interface by trying.
        d=$(dev_of 1)
        if kcopy blkcpy "$d" 0 0 4096 >/tmp/probe 2>&1 || [ $? != 3 ]; then IFACE=blkcpy; else IFACE=cfr; fi
    fi
    echo "kernel $KERNEL_RELEASE, series ${KERNEL_SERIES:-?}${TITLE:+ ($TITLE)}, interface $IFACE, expectations ${EXPECT:-none (no firmware-tests/kernels/$KERNEL_SERIES.expect)}"
}

# ns_limits I: sets LBS MSSRL MCL MSRC NSBLOCKS DEV NSID of namespace I.
ns_limits() {
    LBS=$(ns_var "$1" LBS) MSSRL=$(ns_var "$1" MSSRL) MCL=$(ns_var "$1" MCL) MSRC=$(ns_var "$1" MSRC)
    NSBLOCKS=$(ns_var "$1" BLOCKS) NSID=$(ns_var "$1" NSID) DEV=$(dev_of "$1")
}

# eval_expr EXPR: EXPR over the namespace's MSSRL MCL MSRC LBS (after ns_limits).
eval_expr() {
    echo $(($1))
}

# sysfs_q DEV ATTR: /sys/block/<dev>/queue/ATTR, or "absent".
sysfs_q() {
    cat "/sys/block/${1#/dev/}/queue/$2" 2>/dev/null || echo absent
}

# kc DEV SRC DST LEN (bytes): one copy through the kernel's interface (timeout 120 s: a
# hang is a finding). Output line in /tmp/kc.out; status 0 copied, 1 failed, 3 no interface,
# 124 timed out.
kc() {
    if [ "$IFACE" = blkcpy ]; then
        timeout 120 kcopy blkcpy "$1" "$3" "$2" "$4" >/tmp/kc.out 2>&1
    else
        timeout 120 kcopy cfr "$1" "$2" "$3" "$4" >/tmp/kc.out 2>&1
    fi
}

# kc_outcome LEN: after a kc that failed, KC_ERR is kcopy's line and KC_OUTCOME what the
# kernel gave the caller for a copy of LEN bytes: a short copy without an errno, or an error.
kc_outcome() {
    KC_ERR=$(head -n1 /tmp/kc.out)
    # "cfr: requested N copied M calls C errno E (text) ..." / "blkcpy: ... errno E ..."
    _copied=$(echo "$KC_ERR" | sed -n 's/.* copied \([0-9]*\).*/\1/p')
    _errno=$(echo "$KC_ERR" | sed -n 's/.* errno \([0-9]*\).*/\1/p')
    if [ "${_errno:-0}" = 0 ] && [ -n "$_copied" ]; then
        KC_OUTCOME="a short copy: $_copied of $1 bytes, no error (the call returned 0)"
    else
        KC_OUTCOME="an error to the caller: $(echo "$KC_ERR" | sed -n 's/.*\(errno [0-9]* ([^)]*)\).*/\1/p')"
    fi
}

_seed=100
# copy_check WHAT DEV SRC_BLOCK DST_BLOCK NBLOCKS: fill the source, and one guard block on
# each side of the destination where that block is not part of the source; copy through
# the kernel; check that the destination holds the source as it was and the guards are
# untouched. Prints one line. Status 0: data right; 1: the kernel returned an error (data
# not checked; KC_ERR says what); 2: the kernel reported the copy done but the data is
# wrong (a KERNEL-BUG wrong-data, unless known). A hang (120 s) is KERNEL-BUG hang.
copy_check() {
    _what=$1 _dev=$2 _sb=$3 _db=$4 _nb=$5
    _seed=$((_seed + 1))
    kcopy fill "$_dev" $((_sb * LBS)) $((_nb * LBS)) "$_seed" >/dev/null || fail "$_what: fill failed"
    _before=$((_db - 1)) _after=$((_db + _nb))
    _gb="" _ga=""
    if [ "$_before" -ge 0 ] && { [ "$_before" -lt "$_sb" ] || [ "$_before" -ge $((_sb + _nb)) ]; }; then
        _gb=yes
        kcopy fill "$_dev" $((_before * LBS)) "$LBS" 7 >/dev/null || fail "$_what: fill guard"
    fi
    if [ "$_after" -lt "$NSBLOCKS" ] && { [ "$_after" -lt "$_sb" ] || [ "$_after" -ge $((_sb + _nb)) ]; }; then
        _ga=yes
        kcopy fill "$_dev" $((_after * LBS)) "$LBS" 9 >/dev/null || fail "$_what: fill guard"
    fi
    [ -n "$CONTROL_TTY" ] && host_ctl reset-stats >/dev/null
    dmesg | grep -c "$COPY_ERR_LOG" >/tmp/kc.dmesg0
    kc "$_dev" $((_sb * LBS)) $((_db * LBS)) $((_nb * LBS))
    _rc=$?
    KC_ERR=""
    if [ $_rc = 124 ]; then
        kernel_bug hang "$_what: the copy did not finish within 120 s"
        return 1
    fi
    if [ $_rc != 0 ]; then
        kc_outcome $((_nb * LBS))
        echo "$_what: the kernel returned $KC_OUTCOME: $KC_ERR"
        return 1
    fi
    _bad=""
    kcopy check "$_dev" $((_db * LBS)) $((_nb * LBS)) "$_seed" $((_sb * LBS)) >/tmp/kc.chk 2>&1 ||
        _bad="the destination differs ($(head -n1 /tmp/kc.chk))"
    if [ -n "$_gb" ]; then
        kcopy check "$_dev" $((_before * LBS)) "$LBS" 7 >/dev/null 2>&1 || _bad="$_bad; the block before the destination changed"
    fi
    if [ -n "$_ga" ]; then
        kcopy check "$_dev" $((_after * LBS)) "$LBS" 9 >/dev/null 2>&1 || _bad="$_bad; the block after the destination changed"
    fi
    if [ -n "$_bad" ]; then
        if copies_failed "$_dev"; then
            kernel_bug success-after-failed-copy "$_what: the device failed the Copy ($COPIES_FAILED) yet the kernel reported the copy done ($(head -n1 /tmp/kc.out)) and ${_bad#; }"
        else
            kernel_bug wrong-data "$_what: reported done ($(head -n1 /tmp/kc.out)) but ${_bad#; }"
        fi
        return 2
    fi
    echo "$_what: ok ($(head -n1 /tmp/kc.out))"
    return 0
}

# How the kernel logs a failed Copy: the NVMe driver's "...(0x19) @ LBA ..." line, or the
# block layer's "... error, dev X, sector N op 0x14:(COPY_SRC)" (the op names differ by series).
COPY_ERR_LOG='(0x19) @ LBA\|:(COPY_SRC)\|:(COPY_DST)\|op 0x1[45]:'
# copies_failed DEV: did the device fail a Copy since copy_check started? From the device's
# counters (vnvme) or the kernel's error log (any device). COPIES_FAILED says how it knows.
copies_failed() {
    COPIES_FAILED=""
    if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1 && host_ctl query-stats >/tmp/ctl.json; then
        # Any namespace: a copy through device mapper or nvmet lands on the one below.
        _e=$(jq -r '[.return | to_entries[] | select(.key != "admin") | .value.opcodes.copy.errors // {} | to_entries[] | "\(.key)x\(.value)"] | join(",")' /tmp/ctl.json)
        [ -n "$_e" ] && COPIES_FAILED="device counters: $_e" && return 0
    fi
    # Without the device's view: the kernel's log (its error lines are rate limited, so
    # any failed Copy this boot counts).
    if [ -z "$CONTROL_TTY" ] && dmesg | grep -q "$COPY_ERR_LOG"; then
        COPIES_FAILED="kernel log of this boot: $(dmesg | grep "$COPY_ERR_LOG" | tail -n1 | sed 's/^\[[^]]*\] //')"
        return 0
    fi
    return 1
}

# ctl_json COMMAND [ARGS-JSON]: host_ctl, failing the test on an error; the reply in /tmp/ctl.json.
ctl_json() {
    host_ctl "$@" >/tmp/ctl.json || fail "control $1 ${2:-}: $(cat /tmp/ctl.json)"
}

# copy_stats NSID: after ctl_json query-stats, one line "commands=N ranges_max=N
# max_range=N max_command=N formats=F errors=E" for namespace NSID's Copies, from the
# device's counters (needs jq in the guest).
copy_stats() {
    jq -r --arg ns "$1" '.return[$ns] // {} |
        "commands=\(.opcodes.copy.commands // 0) ranges_max=\((.copy.ranges_histogram // {}) | keys | map(tonumber) | max // 0) max_range=\(.copy.max_range_blocks // 0) max_command=\(.copy.max_command_blocks // 0) formats=\((.copy.formats // {}) | keys | join(",")) errors=\((.opcodes.copy.errors // {}) | to_entries | map("\(.key)x\(.value)") | join(","))"' /tmp/ctl.json
}

# stat_of LINE KEY: the value of KEY=... in a copy_stats line.
stat_of() {
    echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
