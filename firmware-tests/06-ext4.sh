# CHECKS: mkfs.ext4, mount, write files, remount and read them back unchanged
. /tests/lib.sh
d=$(dev_of 1)
mkfs.ext4 -q -F $d >/tmp/mkfs 2>&1 || fail "mkfs.ext4 $d failed: $(tail -n 3 /tmp/mkfs)"
mount -t ext4 $d /mnt || fail "mount $d failed"
random_file /mnt/a 8388608
random_file /mnt/b 65536
mkdir -p /mnt/dir && echo "hello vnvme" >/mnt/dir/c
sha256sum /mnt/a /mnt/b /mnt/dir/c >/tmp/sums
umount /mnt || fail "umount failed"
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 $d /mnt || fail "second mount failed"
sha256sum -c /tmp/sums || fail "files changed across a remount"
umount /mnt
