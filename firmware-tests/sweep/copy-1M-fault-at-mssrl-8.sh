# A FILE workload for scripts/guest-sweep (--workload firmware-tests/sweep/copy-1M-fault-at-mssrl-8.sh):
# copy 1 MiB through the kernel's copy interface and verify it; at the point with MSSRL 8
# every Copy the device receives fails (vnvme inject-fault status 0x0281, Unrecovered Read
# Error), so that point must be recorded as failed and the sweep must go on.
# Sourced by firmware-tests/sweep/driver.sh with DEV NSID LBS MSSRL MCL MSRC NSBLOCKS POINT
# REPEAT IFACE set and lib.sh / kcopy-lib.sh loaded.
len=1048576
dst=$((NSBLOCKS / 2 * LBS))
seed=$((POINT * 7 + REPEAT))
if [ "$MSSRL" = 8 ]; then
    host_ctl inject-fault "{\"opcode\":\"copy\",\"status\":\"0x0281\",\"nsid\":$NSID}" >/tmp/fault.out ||
        { echo "inject-fault failed: $(cat /tmp/fault.out)"; exit 3; }
fi
kcopy fill $DEV 0 $len $seed >/dev/null || { echo "fill failed"; exit 3; }
kc $DEV 0 $dst $len
rc=$?
host_ctl clear-faults >/dev/null
echo "SWEEP-BYTES=$len"
echo "SWEEP-TIME-US=$(sed -n 's/.* time_us \([0-9]*\).*/\1/p' /tmp/kc.out | head -n1)"
[ $rc = 0 ] || { echo "the copy failed: $(head -n1 /tmp/kc.out)"; exit 1; }
kcopy check $DEV $dst $len $seed 0 >/tmp/chk.out 2>&1 || { echo "reported done but the destination differs: $(head -n1 /tmp/chk.out)"; exit 1; }
echo "SWEEP-VERIFIED=yes"
