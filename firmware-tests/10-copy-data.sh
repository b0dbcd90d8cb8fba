# CHECKS: Copy format 0 moves data exactly: several ranges out of order, a range overlapping the destination, FUA, and reads back what the sources held
. /tests/lib.sh
nvme_only
nvme id-ctrl /dev/nvme0 >/tmp/idc
oncs=$(($(field oncs </tmp/idc)))
[ $((oncs & 0x100)) -ne 0 ] || fail "ONCS bit 8 (Copy) is not set: oncs=$oncs"
ocfs=$(($(field ocfs </tmp/idc)))
[ $((ocfs & 1)) -ne 0 ] || fail "OCFS does not advertise format 0: ocfs=$ocfs"
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i) lbs=$(ns_var $i LBS) nsid=$(ns_var $i NSID)
    # Three source ranges, copied in the order B, A, C (out of LBA order).
    fill_random $d $lbs 100 8
    fill_random $d $lbs 300 16
    fill_random $d $lbs 200 4
    blocks_to /tmp/a $d $lbs 100 8
    blocks_to /tmp/b $d $lbs 300 16
    blocks_to /tmp/c $d $lbs 200 4
    cat /tmp/b /tmp/a /tmp/c >/tmp/want
    copy_expect_status success $d --sdlba=1000 --slbs=300,100,200 --blocks=15,7,3
    blocks_to /tmp/got $d $lbs 1000 28
    cmp -s /tmp/want /tmp/got || fail "$d: destination after copying 3 ranges differs from the sources"
    # The blocks after the destination are untouched.
    fill_random $d $lbs 2000 4
    blocks_to /tmp/before $d $lbs 2004 4
    copy_expect_status success $d --sdlba=2000 --slbs=100 --blocks=3
    blocks_to /tmp/after $d $lbs 2004 4
    cmp -s /tmp/before /tmp/after || fail "$d: a 4-block copy to 2000 changed blocks 2004-2007"
    # A range that overlaps its destination copies the original data (memmove).
    fill_random $d $lbs 5000 16
    blocks_to /tmp/orig $d $lbs 5000 16
    copy_expect_status success $d --sdlba=5008 --slbs=5000 --blocks=15
    blocks_to /tmp/got $d $lbs 5008 16
    cmp -s /tmp/orig /tmp/got || fail "$d: overlapping copy 5000+16 -> 5008 did not copy the original data"
    # FUA.
    copy_expect_status success $d --sdlba=7000 --slbs=300 --blocks=15 --force-unit-access
    blocks_to /tmp/got $d $lbs 7000 16
    cmp -s /tmp/b /tmp/got || fail "$d: FUA copy differs"
    i=$((i + 1))
done
