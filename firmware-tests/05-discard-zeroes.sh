# CHECKS: Dataset Management deallocate and Write Zeroes make blocks read back as zeroes (DLFEAT says so)
. /tests/lib.sh
d=$(dev_of 1)
lbs=$(ns_var 1 LBS)
nvme id-ns $d >/tmp/idn || fail "nvme id-ns failed"
dlfeat=$(($(field dlfeat </tmp/idn)))
expect_eq "$d dlfeat bits 2:0 (deallocated blocks read as zeroes)" "$((dlfeat & 7))" 1
nblk=$((131072 / lbs)) # 128 KiB
dd if=/dev/zero bs=$lbs count=$nblk 2>/dev/null >/tmp/zero
fill() { # slba
    dd if=/dev/urandom of=$d bs=$lbs seek=$1 count=$nblk oflag=direct conv=notrunc 2>/dev/null || fail "write at $1 failed"
    dd if=$d bs=$lbs skip=$1 count=$nblk iflag=direct 2>/dev/null | cmp -s - /tmp/zero && fail "random data at $1 reads as zeroes"
}
readback_zero() { # slba what
    dd if=$d bs=$lbs skip=$1 count=$nblk iflag=direct 2>/dev/null | cmp -s - /tmp/zero || fail "$2 at block $1 does not read back as zeroes"
    echo "$2 at block $1: zeroes"
}
# Deallocate with nvme-cli's Dataset Management command.
fill 2048
nvme dsm $d --namespace-id=$(ns_var 1 NSID) --ad --slbs=2048 --blocks=$nblk >/tmp/o 2>&1 || fail "nvme dsm failed: $(cat /tmp/o)"
readback_zero 2048 "DSM deallocate"
# Deallocate through the block layer (discard).
fill 8192
blkdiscard -o $((8192 * lbs)) -l $((nblk * lbs)) $d || fail "blkdiscard failed"
readback_zero 8192 "blkdiscard"
# Write Zeroes (NLB is 0's based).
fill 16384
nvme write-zeroes $d --namespace-id=$(ns_var 1 NSID) --start-block=16384 --block-count=$((nblk - 1)) >/tmp/o 2>&1 ||
    fail "nvme write-zeroes failed: $(cat /tmp/o)"
readback_zero 16384 "Write Zeroes"
# Write Zeroes with DEAC.
fill 20480
nvme write-zeroes $d --namespace-id=$(ns_var 1 NSID) --start-block=20480 --block-count=$((nblk - 1)) --deac >/tmp/o 2>&1 ||
    fail "nvme write-zeroes --deac failed: $(cat /tmp/o)"
readback_zero 20480 "Write Zeroes with DEAC"
