# CHECKS: zonefs on a zoned namespace: blkzone report lists every zone, mkzonefs formats the device, the mount shows one sequential file per zone after the super block zone (no conventional zones), O_DIRECT appends land at the zone's write pointer and read back, a write not at the end of the file fails and leaves the zone alone, the size survives a remount (read from the device's write pointer), a file filled to the zone capacity is full and refuses more, truncate to 0 resets the zone; on vnvme, a zone the device makes read-only refuses appends and reads back, an offline one fails reads and shows as an empty file after a remount
. /tests/lib.sh
. /tests/pi-lib.sh
nvme_only
i=""
for k in $(seq 1 "$NS_COUNT"); do
    [ "$(ns_var $k ZONED)" = 1 ] && { i=$k; break; }
done
[ -n "$i" ] || skip "no zoned namespace in this run (scripts/guest-test --zoned)"
d=$(dev_of $i)
lbs=$(ns_var $i LBS)
zsze=$(($(ns_var $i ZONE_SIZE) / lbs))
zcap=$(($(ns_var $i ZONE_CAP) / lbs))
[ "$zcap" -gt 0 ] || zcap=$zsze
nzones=$(ns_var $i ZONES)
command -v mkzonefs >/dev/null 2>&1 || skip "no mkzonefs in the guest (scripts/guest-env puts zonefs-tools' mkzonefs in the base initramfs)"
command -v blkzone >/dev/null 2>&1 || skip "no blkzone in the guest (util-linux)"
if ! grep -qw zonefs /proc/filesystems; then
    m=/lib/modules/$KERNEL_RELEASE/kernel/fs/zonefs/zonefs.ko
    [ -f "$m" ] || skip "kernel $KERNEL_RELEASE has no zonefs (not built in, and no $m)"
    insmod "$m" 2>/tmp/insmod.err || fail "insmod $m: $(cat /tmp/insmod.err)"
    grep -qw zonefs /proc/filesystems || fail "zonefs not in /proc/filesystems after insmod $m"
    echo "zonefs: module $m"
else
    echo "zonefs: in kernel $KERNEL_RELEASE"
fi
echo "$d: $nzones zones of $zsze blocks (capacity $zcap) of $lbs bytes; $(mkzonefs --version 2>&1 | head -n1)"

# zone K FIELD: state or wp of zone K (nvme zns report-zones).
zone() {
    nvme zns report-zones "$d" -s $(($1 * zsze)) -d 1 -o json >/tmp/rz.json 2>&1 || fail "report-zones at zone $1: $(cat /tmp/rz.json)"
    jq -r ".zone_list[0].$2" /tmp/rz.json
}

blkzone report "$d" >/tmp/bz.txt 2>&1 || fail "blkzone report: $(head -n2 /tmp/bz.txt)"
expect_eq "blkzone report: zones" "$(grep -c 'start:' /tmp/bz.txt)" "$nzones"
expect_eq "blkzone report: sequential write required zones" "$(grep -c 'SEQ_WRITE_REQUIRED' /tmp/bz.txt)" "$nzones"
blkzone reset "$d" 2>/tmp/bz.err || fail "blkzone reset: $(cat /tmp/bz.err)"

mkzonefs -f "$d" >/tmp/mkz.txt 2>&1 || fail "mkzonefs -f $d: $(tail -n3 /tmp/mkz.txt | tr '\n' ' ')"
echo "mkzonefs: $(grep -i 'zones' /tmp/mkz.txt | head -n3 | tr '\n' ';' | tr -s ' ')"
mnt=/mnt/zonefs
mkdir -p $mnt
mount -t zonefs "$d" $mnt 2>/tmp/mount.err || fail "mount -t zonefs $d: $(cat /tmp/mount.err) $(dmesg | grep -i zonefs | tail -n2 | tr '\n' ' ')"
cleanup() { umount $mnt 2>/dev/null; }
trap cleanup EXIT
[ -d $mnt/cnv ] && fail "a cnv directory on a device without conventional zones"
nfiles=$(ls $mnt/seq | wc -l)
expect_eq "files in seq/ (one per zone after the super block's zone 0)" "$nfiles" $((nzones - 1))
expect_eq "seq/0 size after mkzonefs" "$(stat -c %s $mnt/seq/0)" 0

# Files: seq/N is zone N+1.
f=$mnt/seq/0
zf=1
random_file /tmp/a 1048576
random_file /tmp/b 262144
dd if=/tmp/a of=$f bs=65536 oflag=direct conv=notrunc 2>/tmp/dd.err || fail "O_DIRECT write of 1 MiB to the empty $f: $(cat /tmp/dd.err)"
dd if=/tmp/b of=$f bs=65536 oflag=direct,append conv=notrunc 2>/tmp/dd.err || fail "O_DIRECT append of 256 KiB to $f: $(cat /tmp/dd.err)"
expect_eq "$f size" "$(stat -c %s $f)" $((1048576 + 262144))
expect_eq "zone $zf write pointer" "$(zone $zf wp)" $((zf * zsze + (1048576 + 262144) / lbs))
cat /tmp/a /tmp/b >/tmp/ab
cmp -s /tmp/ab $f || fail "$f does not read back what was written"
blocks_to /tmp/raw $d $lbs $((zf * zsze)) $(((1048576 + 262144) / lbs))
cmp -s /tmp/ab /tmp/raw || fail "zone $zf on the device does not hold $f's data"
echo "  1 MiB + 256 KiB appended to $f: at zone $zf's write pointer, reads back"
if dd if=/tmp/b of=$f bs=65536 count=1 oflag=direct conv=notrunc 2>/dev/null; then
    fail "a write at offset 0 of the non-empty $f succeeded"
fi
expect_eq "zone $zf write pointer after the refused write" "$(zone $zf wp)" $((zf * zsze + (1048576 + 262144) / lbs))
echo "  a write at offset 0 of the non-empty file: refused, zone untouched"

# A second file written while the first is open, then a remount.
f2=$mnt/seq/3
dd if=/tmp/b of=$f2 bs=4096 oflag=direct conv=notrunc 2>/tmp/dd.err || fail "write to $f2: $(cat /tmp/dd.err)"
umount $mnt || fail "umount"
mount -t zonefs "$d" $mnt 2>/tmp/mount.err || fail "second mount: $(cat /tmp/mount.err)"
expect_eq "$f size after a remount" "$(stat -c %s $f)" $((1048576 + 262144))
expect_eq "$f2 size after a remount" "$(stat -c %s $f2)" 262144
cmp -s /tmp/ab $f || fail "$f differs after a remount"
cmp -s /tmp/b $f2 || fail "$f2 differs after a remount"
echo "  sizes and data kept across a remount"

# Fill seq/5 to its zone's capacity.
f3=$mnt/seq/5
zf3=6
capb=$((zcap * lbs))
expect_eq "$f3 size before" "$(stat -c %s $f3)" 0
dd if=/dev/urandom of=/tmp/full bs=1048576 count=$((capb / 1048576)) 2>/dev/null
dd if=/tmp/full of=$f3 bs=1048576 oflag=direct conv=notrunc 2>/tmp/dd.err || fail "write of the zone capacity ($capb bytes) to $f3: $(cat /tmp/dd.err)"
expect_eq "$f3 size" "$(stat -c %s $f3)" "$capb"
expect_eq "zone $zf3 state" "$(zone $zf3 state)" FULL
if dd if=/tmp/b of=$f3 bs=4096 count=1 oflag=direct,append conv=notrunc 2>/dev/null; then
    fail "an append to the full $f3 succeeded"
fi
cmp -s /tmp/full $f3 || fail "$f3 does not read back"
echo "  $f3 filled to the zone capacity ($capb bytes): zone full, more refused"

truncate -s 0 $f || fail "truncate -s 0 $f"
expect_eq "zone $zf state after truncate to 0" "$(zone $zf state)" EMPTY
expect_eq "$f size after truncate" "$(stat -c %s $f)" 0
truncate -s 0 $f3 || fail "truncate -s 0 $f3"
expect_eq "zone $zf3 state after truncate to 0" "$(zone $zf3 state)" EMPTY
echo "  truncate to 0 resets the zone"

# Zones the device takes Read Only or Offline on its own (vnvme's control socket).
if [ -n "$CONTROL_TTY" ]; then
    nsid=$(ns_var $i NSID)
    # errors=zone-ro: an I/O error makes only that file read-only (the default,
    # remount-ro, makes the whole file system read-only).
    umount $mnt || fail "umount"
    mount -t zonefs -o errors=zone-ro "$d" $mnt 2>/tmp/mount.err || fail "mount -o errors=zone-ro: $(cat /tmp/mount.err)"
    f4=$mnt/seq/8
    zf4=9
    dd if=/tmp/b of=$f4 bs=65536 oflag=direct conv=notrunc 2>/tmp/dd.err || fail "write to $f4: $(cat /tmp/dd.err)"
    host_ctl set-zone-state "{\"nsid\":$nsid,\"zone\":$zf4,\"state\":\"read-only\"}" >/tmp/ctl.out ||
        fail "set-zone-state $zf4 read-only: $(cat /tmp/ctl.out)"
    expect_eq "zone $zf4 state" "$(zone $zf4 state)" READONLY
    if dd if=/tmp/b of=$f4 bs=4096 count=1 oflag=direct,append conv=notrunc 2>/dev/null; then
        fail "an append to $f4 in a read-only zone succeeded"
    fi
    cmp -s /tmp/b $f4 || fail "$f4 in a read-only zone does not read back"
    echo "  zone $zf4 made read-only by the device: $f4 refuses appends, reads back (mode $(stat -c %a $f4), size $(stat -c %s $f4))"
    f5=$mnt/seq/9
    zf5=10
    dd if=/tmp/b of=$f5 bs=65536 oflag=direct conv=notrunc 2>/tmp/dd.err || fail "write to $f5: $(cat /tmp/dd.err)"
    host_ctl set-zone-state "{\"nsid\":$nsid,\"zone\":$zf5,\"state\":\"offline\"}" >/tmp/ctl.out ||
        fail "set-zone-state $zf5 offline: $(cat /tmp/ctl.out)"
    if dd if=$d of=/dev/null bs=$lbs skip=$((zf5 * zsze)) count=1 iflag=direct 2>/dev/null; then
        fail "a read of the offline zone $zf5 succeeded"
    fi
    umount $mnt || fail "umount"
    mount -t zonefs "$d" $mnt 2>/tmp/mount.err || fail "mount with a read-only and an offline zone: $(cat /tmp/mount.err)"
    expect_eq "$f5 size (offline zone) after a remount" "$(stat -c %s $f5)" 0
    if cat $f5 >/dev/null 2>&1 && [ "$(stat -c %a $f5)" != 0 ]; then
        fail "$f5 in an offline zone is readable (mode $(stat -c %a $f5))"
    fi
    echo "  zone $zf5 taken offline by the device: reads fail; after a remount $f5 has size 0, mode $(stat -c %a $f5); $f4 mode $(stat -c %a $f4), size $(stat -c %s $f4)"
else
    echo "  read-only and offline zones: not run on $DEVICE (they need vnvme's control socket to put a zone there)"
fi
umount $mnt || fail "umount"
trap - EXIT
blkzone reset "$d" 2>/dev/null || fail "blkzone reset at the end"
