# CHECKS: kernel copy offload through the NVMe target: the namespace exported by nvmet over the loop transport (configfs, nvme connect -t loop) takes nvme copy, which reaches the device as Copy with the right data — the fabrics path without a network
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
[ "$COPY" = on ] || skip "the device has no Copy (--ctrl copy=off)"
ns_limits 1
grep -q " /sys/kernel/config configfs" /proc/mounts || mount -t configfs none /sys/kernel/config 2>/dev/null
t=/sys/kernel/config/nvmet
[ -d $t ] || skip "kernel $KERNEL_RELEASE has no NVMe target (no $t)"
nqn=nqn.2026-12.io.vnvme:kcopy host=nqn.2026-12.io.vnvme:guest
cleanup() {
    nvme disconnect -n $nqn >/dev/null 2>&1
    rm -f $t/ports/1/subsystems/$nqn 2>/dev/null
    echo 0 >$t/subsystems/$nqn/namespaces/1/enable 2>/dev/null
    rmdir $t/subsystems/$nqn/namespaces/1 $t/subsystems/$nqn $t/ports/1 2>/dev/null
}
mkdir $t/subsystems/$nqn || fail "mkdir subsystem"
echo 1 >$t/subsystems/$nqn/attr_allow_any_host
mkdir $t/subsystems/$nqn/namespaces/1
echo -n $DEV >$t/subsystems/$nqn/namespaces/1/device_path
echo 1 >$t/subsystems/$nqn/namespaces/1/enable || { cleanup; fail "cannot enable the nvmet namespace on $DEV"; }
mkdir $t/ports/1
echo loop >$t/ports/1/addr_trtype
ln -s $t/subsystems/$nqn $t/ports/1/subsystems/$nqn || { cleanup; fail "cannot link the subsystem to the loop port"; }
nvme connect -t loop -n $nqn --hostnqn=$host >/tmp/conn.out 2>&1 || { cleanup; fail "nvme connect -t loop: $(cat /tmp/conn.out)"; }
loopdev=""
i=0
while [ -z "$loopdev" ] && [ $i -lt 50 ]; do
    for c in /sys/class/nvme/nvme*; do
        [ "$(cat $c/transport 2>/dev/null)" = loop ] || continue
        for b in /sys/block/${c##*/}n* /sys/block/${c##*/}c*n*; do
            [ -e "$b" ] && loopdev=/dev/${b##*/}
        done
    done
    sleep 0.1
    i=$((i + 1))
done
[ -n "$loopdev" ] || { cleanup; fail "no namespace appeared on the loop controller"; }
nvme id-ctrl $loopdev >/tmp/lidc 2>&1
nvme id-ns $loopdev >/tmp/lidns 2>&1
oncs=$(field oncs </tmp/lidc)
ocfs=$(($(field ocfs </tmp/lidc)))
echo "nvmet loop namespace $loopdev over $DEV: oncs=$oncs ocfs=$ocfs mssrl=$(field mssrl </tmp/lidns) mcl=$(field mcl </tmp/lidns) msrc=$(field msrc </tmp/lidns)"
if [ $(($oncs & 0x100)) = 0 ]; then
    cleanup
    [ "$NVMET" = yes ] && kernel_bug nvmet-no-copy "series ${KERNEL_SERIES:-?} should pass Copy through nvmet but its loop controller does not advertise Copy (ONCS=$oncs)"
    skip "series ${KERNEL_SERIES:-?} does not pass Copy through nvmet (ONCS=$oncs on the loop controller)"
fi
[ -n "$CONTROL_TTY" ] && host_ctl reset-stats >/dev/null
fill_random $loopdev $LBS 500 8
fill_random $loopdev $LBS 7000 8
blocks_to /tmp/want $loopdev $LBS 500 8
blocks_to /tmp/dst_before $DEV $LBS 7000 8
nvme copy $loopdev --sdlba=7000 --slbs=500 --blocks=7 >/tmp/copy.out 2>&1
crc=$?
echo "nvme copy $loopdev --sdlba=7000 --slbs=500 --blocks=7: $(head -n1 /tmp/copy.out)"
if [ $crc != 0 ]; then
    # nvmet returned an error: fine if the device below failed the Copy (the error went up).
    if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
        ctl_json query-stats
        st=$(copy_stats $NSID)
        if [ "$(stat_of "$st" commands)" = 0 ]; then
            # Nothing reached the device: does the target take the same copy as format 2?
            lnsid=$(cat /sys/block/${loopdev#/dev/}/nsid 2>/dev/null || echo 1)
            if known_kernel_bug nvmet-format2-crash; then
                cleanup
                kernel_bug nvmet-format0-refused "nvmet fails a format 0 Copy without sending one ($(head -n1 /tmp/copy.out)); the format 2 retry is not run: it crashes this kernel (nvmet-format2-crash)"
                echo "KNOWN-KERNEL-BUG ${KERNEL_SERIES:-?} nvmet-format2-crash: not run (a format 2 Copy through nvmet crashes this kernel)"
                exit 0
            fi
            nvme copy $loopdev --sdlba=7000 --slbs=500 --blocks=7 --format=2 --snsids=$lnsid >/tmp/copy2.out 2>&1
            f2=$?
            echo "the same as format 2 (snsid $lnsid): $(head -n1 /tmp/copy2.out)"
            cleanup
            if [ $f2 = 0 ] && [ $((ocfs & 1)) != 0 ]; then
                kernel_bug nvmet-format0-refused "nvmet advertises Copy format 0 (OCFS=$ocfs) but fails every format 0 Copy without sending one ($(head -n1 /tmp/copy.out)); the same copy as format 2 works"
                exit 0
            fi
            kernel_bug nvmet-copy-fails "nvme copy on the loop namespace fails ($(head -n1 /tmp/copy.out)) and no Copy reaches the device"
            exit 0
        fi
        cleanup
        [ -n "$(stat_of "$st" errors)" ] || fail "nvme copy on the loop namespace failed although the device completed its Copies: $(head -n1 /tmp/copy.out); device: $st"
        echo "NVMET-OUTCOME ${KERNEL_SERIES:-?}: the device failed the Copy ($(stat_of "$st" errors)) and nvmet returned the error to its host: $(head -n1 /tmp/copy.out)"
        exit 0
    fi
    cleanup
    skip "nvme copy on the loop namespace failed ($(head -n1 /tmp/copy.out)); without the device's counters ($DEVICE) the suite cannot tell whether a Copy reached the device: run it against vnvme"
fi
blocks_to /tmp/got $DEV $LBS 7000 8
blocks_to /tmp/src_after $DEV $LBS 500 8
blocks_to /tmp/got_loop $loopdev $LBS 7000 8
if cmp -s /tmp/got /tmp/dst_before && cmp -s /tmp/src_after /tmp/dst_before; then
    cleanup
    kernel_bug nvmet-copy-reversed "nvme copy on the loop namespace (blocks 500-507 -> 7000) succeeded, but the device was sent the Copy the other way round: blocks 7000-7007 are unchanged and 500-507 now hold what 7000 held"
    exit 0
fi
if ! cmp -s /tmp/want /tmp/got; then
    seen="the loop namespace reads $(cmp -s /tmp/want /tmp/got_loop && echo the source || echo other data) there"
    if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
        ctl_json query-stats
        seen="$seen; the device saw $(copy_stats $NSID)"
    fi
    cleanup
    kernel_bug nvmet-wrong-data "nvme copy on the loop namespace succeeded but $DEV blocks 7000-7007 differ from the source ($seen)"
fi
if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
    ctl_json query-stats
    st=$(copy_stats $NSID)
    echo "the device saw (ns $NSID): $st"
    [ "$(stat_of "$st" commands)" -gt 0 ] || { cleanup; fail "nvme copy on the loop namespace reached the device as no Copy"; }
fi
cleanup
