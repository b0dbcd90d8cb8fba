# CHECKS: kernel copy offload when a Copy fails (inject-fault opcode=copy status=0x0281, then copy_range=1): the kernel either returns an error to the caller or falls back to reads and writes with the right data; which one is recorded per series; wrong data reported as success or a hang is a kernel bug
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
[ "$COPY" = on ] || skip "the device has no Copy (--ctrl copy=off)"
[ -n "$CONTROL_TTY" ] || skip "$DEVICE cannot inject faults (vnvme's inject-fault, scripts/guest-test --device vnvme)"
command -v jq >/dev/null 2>&1 || skip "no jq in the guest to read the device's counters"
ns_limits 1
for f in '{"opcode":"copy","status":"0x0281","nsid":NSID,"count":1}' '{"opcode":"copy","status":"0x0281","nsid":NSID,"count":1,"copy_range":1}'; do
    f=$(echo "$f" | sed "s/NSID/$NSID/")
    ctl_json clear-faults
    ctl_json inject-fault "$f"
    n=$((4 * MSSRL))
    [ $n -le 2048 ] || n=2048
    copy_check "ns $NSID: $n blocks with fault $f" $DEV 100 $((NSBLOCKS / 2 + 4096)) $n
    rc=$?
    ctl_json query-faults
    inj=$(jq -r '.return.faults[0].injected' /tmp/ctl.json)
    ctl_json query-stats
    st=$(copy_stats $NSID)
    case $rc in
    0) outcome="the copy completed with the right data (fallback or retry)" ;;
    1) outcome="the kernel returned $KC_OUTCOME" ;;
    *) outcome="wrong data (see the KERNEL-BUG line)" ;;
    esac
    [ "$inj" = 1 ] || outcome="$outcome; the fault was never injected (injected=$inj)"
    echo "FAULT-OUTCOME ${KERNEL_SERIES:-?} $f: $outcome; device: $st"
done
ctl_json clear-faults
