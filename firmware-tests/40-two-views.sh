# CHECKS: two views of one store (--device vnvme+vhost-user-blk): both views have the same size; data written with O_DIRECT through virtio-blk (/dev/vda) and flushed reads back identical through NVMe namespace 1 with O_DIRECT, and the other way round, at the start, the middle and the last MiB, page cache dropped in between; a discard and a write-zeroes through one view read as zeroes through the other
. /tests/lib.sh
[ "$DEVICE" = vnvme+vhost-user-blk ] ||
    skip "needs the two-view device (scripts/guest-test --device vnvme+vhost-user-blk): $DEVICE shows one view"
v=$(vd_of 1)
n=$(dev_of 1)
[ -b "$v" ] || fail "no virtio-blk disk (vhost-user-blk view of namespace $(ns_var 1 NSID))"
[ -b "$n" ] || fail "no NVMe block device for namespace $(ns_var 1 NSID)"
vbytes=$(blockdev --getsize64 $v) nbytes=$(blockdev --getsize64 $n)
expect_eq "size of $v (bytes) against $n" "$vbytes" "$nbytes"
expect_eq "$n size (bytes) against the configuration" "$nbytes" "$(($(ns_var 1 BLOCKS) * $(ns_var 1 LBS)))"
echo "views: $v (vhost-user-blk) and $n (vfio-user NVMe, NSID $(ns_var 1 NSID)), $nbytes bytes each"
mib=$((nbytes / 1048576))
dd if=/dev/urandom of=/tmp/pool bs=1M count=6 2>/dev/null
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# across FROM TO MIB POOL-MIB: 1 MiB of the pool written at MiB MIB of FROM (O_DIRECT, fsync
# = flush, flushbufs), caches dropped, read back at MIB of TO (O_DIRECT) and compared.
across() {
    dd if=/tmp/pool of=/tmp/pat bs=1M skip=$4 count=1 2>/dev/null
    dd if=/tmp/pat of=$1 bs=1M seek=$3 count=1 oflag=direct conv=notrunc,fsync 2>/dev/null || fail "write of 1 MiB at MiB $3 to $1 failed"
    blockdev --flushbufs $1 || fail "blockdev --flushbufs $1 failed"
    drop
    dd if=$2 of=/tmp/back bs=1M skip=$3 count=1 iflag=direct 2>/dev/null || fail "read of 1 MiB at MiB $3 from $2 failed"
    cmp -s /tmp/pat /tmp/back || fail "1 MiB written at MiB $3 through $1 reads back different through $2"
    echo "1 MiB at MiB $3: written through $1, read back identical through $2 ($(sha256sum </tmp/pat | cut -c1-16))"
}
k=0
for at in 0 $((mib / 2)) $((mib - 1)); do
    across $v $n $at $k
    k=$((k + 1))
    across $n $v $at $k
    k=$((k + 1))
done
# Zeroes across the views: discard through virtio (a hole in the store), write zeroes
# through NVMe; each read as zeroes through the other view.
dd if=/dev/zero of=/tmp/zero bs=1M count=1 2>/dev/null
dd if=/tmp/pool of=$n bs=1M seek=8 count=1 oflag=direct conv=notrunc,fsync 2>/dev/null || fail "write at MiB 8 failed"
blkdiscard -o $((8 * 1048576)) -l 1048576 $v || fail "blkdiscard on $v failed"
drop
dd if=$n bs=1M skip=8 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/zero || fail "1 MiB discarded through $v does not read as zeroes through $n"
echo "1 MiB at MiB 8: discarded through $v, reads as zeroes through $n"
dd if=/tmp/pool of=$v bs=1M seek=9 count=1 oflag=direct conv=notrunc,fsync 2>/dev/null || fail "write at MiB 9 failed"
lbs=$(ns_var 1 LBS)
nvme write-zeroes $n --namespace-id="$(ns_var 1 NSID)" --start-block=$((9 * 1048576 / lbs)) --block-count=$((1048576 / lbs - 1)) >/tmp/o 2>&1 ||
    fail "nvme write-zeroes failed: $(cat /tmp/o)"
drop
dd if=$v bs=1M skip=9 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/zero || fail "1 MiB zeroed with NVMe Write Zeroes through $n does not read as zeroes through $v"
echo "1 MiB at MiB 9: Write Zeroes through $n, reads as zeroes through $v"
