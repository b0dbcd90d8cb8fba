# CHECKS: kernel copy offload as the device saw it (vnvme's counters, over the control port): on every namespace a copy of several Copies' worth is split into exactly the number of Copy commands the limits imply, and no Copy exceeds MSSRL, MCL or MSRC or uses another descriptor format than the series'
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
[ "$COPY" = on ] || skip "the device has no Copy (--ctrl copy=off): 33-kcopy-emulation checks that case"
[ -n "$CONTROL_TTY" ] || skip "$DEVICE shows no per-command view of the Copies it got (vnvme's control port, scripts/guest-test --device vnvme)"
command -v jq >/dev/null 2>&1 || skip "no jq in the guest to read the device's counters"
[ -n "$BLOCKS_PER_COPY" ] || skip "no expectations for series ${KERNEL_SERIES:-?} (firmware-tests/kernels/$KERNEL_SERIES.expect): nothing to hold the split to"
bad=""
i=1
while [ $i -le $NS_COUNT ]; do
    ns_limits $i
    per=$(eval_expr "$BLOCKS_PER_COPY")
    rpc=$(eval_expr "$RANGES_PER_COPY")
    # Three Copies' worth and a bit, at most 16 MiB.
    n=$((3 * per + 5))
    cap=$((16777216 / LBS))
    [ $n -le $cap ] || n=$cap
    want=$(((n + per - 1) / per))
    copy_check "ns $NSID: $n blocks" $DEV 8192 $((NSBLOCKS / 2)) $n
    rc=$?
    ctl_json query-stats
    st=$(copy_stats $NSID)
    echo "ns $NSID (mssrl=$MSSRL mcl=$MCL msrc=$MSRC; series: $per blocks, $rpc ranges per Copy): $st; want commands=$want"
    cmds=$(stat_of "$st" commands)
    errs=$(stat_of "$st" errors)
    if [ $rc = 1 ] && [ -z "$errs" ] && [ "$cmds" -lt "$want" ]; then
        # The device failed nothing: the kernel gave up on Copies it built itself.
        kernel_bug driver-refused-copy "ns $NSID: $KC_OUTCOME for a copy within the limits the kernel derived ($(for a in /sys/block/${DEV#/dev/}/queue/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a); done| sed 's/ $//')); the device got $cmds of the $want Copies and failed none ($(dmesg | grep "I/O error, dev ${DEV#/dev/}" | tail -n1 | sed 's/^\[[^]]*\] //'))"
    elif [ "$cmds" != "$want" ]; then
        bad="$bad; ns $NSID: $cmds Copy commands for $n blocks, the limits imply $want"
    fi
    [ "$(stat_of "$st" max_range)" -le "$MSSRL" ] || kernel_bug limit-mssrl "ns $NSID: a Copy range of $(stat_of "$st" max_range) blocks, MSSRL is $MSSRL"
    [ "$(stat_of "$st" max_command)" -le "$MCL" ] || kernel_bug limit-mcl "ns $NSID: a Copy of $(stat_of "$st" max_command) blocks, MCL is $MCL"
    [ "$(stat_of "$st" ranges_max)" -le $((MSRC + 1)) ] || kernel_bug limit-msrc "ns $NSID: a Copy of $(stat_of "$st" ranges_max) ranges, MSRC+1 is $((MSRC + 1))"
    [ "$(stat_of "$st" ranges_max)" -le "$rpc" ] || bad="$bad; ns $NSID: $(stat_of "$st" ranges_max) ranges in one Copy, the series sends at most $rpc"
    [ "$(stat_of "$st" formats)" = "$FORMAT" ] || bad="$bad; ns $NSID: descriptor formats $(stat_of "$st" formats), the series sends $FORMAT"
    [ -z "$errs" ] || echo "ns $NSID: the device failed Copies: $errs (copy_check above says what the kernel made of it)"
    i=$((i + 1))
done
[ -z "$bad" ] || fail "${bad#; }"
