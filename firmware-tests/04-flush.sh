# CHECKS: Flush completes successfully on every namespace, after a write (NVMe: nvme flush; virtio-blk: the write cache is write back (FLUSH) and fsync of the disk sends a flush the device completes)
. /tests/lib.sh
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i)
    if [ "$DISK" = virtio ]; then
        virtio_has $d 9 || fail "$d: FLUSH (virtio feature 9) not negotiated"
        wc=$(cat /sys/block/${d#/dev/}/queue/write_cache)
        # A write-through cache (CONFIG_WCE with writeback=0, e.g. qemu-storage-daemon) gets
        # no flushes from the kernel: the flush path could not be checked.
        [ "$wc" = "write back" ] || fail "$d: FLUSH negotiated but the write cache is '$wc': the kernel sends no flushes to check"
        before=$(blk_stat $d 16)
        # conv=fsync: fsync(2) on the disk, which the block layer sends as a flush.
        dd if=/dev/urandom of=$d bs=4096 count=4 oflag=direct conv=notrunc,fsync 2>/dev/null || fail "$d: write + fsync failed"
        after=$(blk_stat $d 16)
        [ "$after" -gt "$before" ] || fail "$d: fsync completed no flush (flushes completed: $before before, $after after)"
        echo "$d: write + fsync: flushes completed $before -> $after"
    else
        dd if=/dev/urandom of=$d bs=4096 count=4 oflag=direct conv=notrunc 2>/dev/null || fail "$d: write failed"
        nvme flush $d >/tmp/fl 2>&1 || fail "$d: nvme flush failed: $(cat /tmp/fl)"
        echo "$d: $(cat /tmp/fl)"
    fi
    i=$((i + 1))
done
