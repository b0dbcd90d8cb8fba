# CHECKS: Dataset Management deallocate and Write Zeroes make blocks read back as zeroes (DLFEAT says so); on virtio-blk: DISCARD (blkdiscard, reaching the device) and WRITE_ZEROES (blkdiscard -z, not emulated by the kernel) read back as zeroes
. /tests/lib.sh
d=$(dev_of 1)
lbs=$(ns_var 1 LBS)
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
if [ "$DISK" = virtio ]; then
    q=/sys/block/${d#/dev/}/queue
    dmax=$(cat $q/discard_max_bytes) wzmax=$(cat $q/write_zeroes_max_bytes)
    echo "$d: discard_max_bytes=$dmax discard_granularity=$(cat $q/discard_granularity) write_zeroes_max_bytes=$wzmax"
    [ "$dmax" -gt 0 ] || fail "$d: no discard (DISCARD not negotiated: discard_max_bytes=0)"
    # Without WRITE_ZEROES the kernel would write zero pages itself: that must not pass here.
    [ "$wzmax" -gt 0 ] || fail "$d: no write zeroes (WRITE_ZEROES not negotiated: write_zeroes_max_bytes=0)"
    # Discard: the device may keep the data (virtio does not promise zeroes); both devices
    # here deallocate by punching a hole in the file, which reads back as zeroes.
    fill 8192
    before=$(blk_stat $d 12)
    blkdiscard -o $((8192 * lbs)) -l $((nblk * lbs)) $d || fail "blkdiscard failed"
    after=$(blk_stat $d 12)
    [ "$after" -gt "$before" ] || fail "$d: blkdiscard completed no discard request (discards completed: $before -> $after)"
    readback_zero 8192 "blkdiscard (discards completed $before -> $after)"
    # Write zeroes (BLKZEROOUT: VIRTIO_BLK_T_WRITE_ZEROES). util-linux's blkdiscard by its
    # path: busybox sh runs its own applet (no -z) before anything in PATH.
    fill 16384
    /usr/sbin/blkdiscard -z -o $((16384 * lbs)) -l $((nblk * lbs)) $d 2>/tmp/bd.err || fail "blkdiscard -z failed: $(cat /tmp/bd.err)"
    readback_zero 16384 "blkdiscard -z (write zeroes)"
    # Write zeroes over a range that is partly discarded already.
    fill 20480
    blkdiscard -o $((20480 * lbs)) -l $((nblk * lbs / 2)) $d || fail "blkdiscard failed"
    /usr/sbin/blkdiscard -z -o $((20480 * lbs)) -l $((nblk * lbs)) $d 2>/tmp/bd.err || fail "blkdiscard -z failed: $(cat /tmp/bd.err)"
    readback_zero 20480 "discard of half, then write zeroes of all"
    exit 0
fi
nvme id-ns $d >/tmp/idn || fail "nvme id-ns failed"
dlfeat=$(($(field dlfeat </tmp/idn)))
expect_eq "$d dlfeat bits 2:0 (deallocated blocks read as zeroes)" "$((dlfeat & 7))" 1
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
