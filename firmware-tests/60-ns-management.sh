# CHECKS: Namespace Management and Attachment and Format NVM from the guest: create a 4096-byte-block namespace, attach it (the kernel adds its disk), write/read/copy on it, format it to 512-byte blocks (the kernel sees the new block size and an erased disk), detach it (the disk goes), delete it (capacity comes back) — all without a reboot
. /tests/lib.sh
nvme_only
nvme id-ctrl /dev/nvme0 -o json >/tmp/idc.json || fail "nvme id-ctrl failed"
oacs=$(jq -r .oacs /tmp/idc.json)
[ $((oacs & 8)) -ne 0 ] || skip "the device has no Namespace Management (OACS=$oacs, bit 3 clear): $DEVICE"
num() { tr -d ',"' | awk '{print $1 + 0}'; }
unvm() { nvme id-ctrl /dev/nvme0 -o json | jq -r .unvmcap | num; }
free0=$(unvm)
size=$((16 << 20))
[ "$free0" -ge "$size" ] || skip "only $free0 bytes of unallocated NVM capacity; this test needs $size (start the device with --capacity)"
# The LBA formats a created namespace may use: the indexes of 4096+0 and 512+0.
nvme id-ns /dev/nvme0 -n 0xffffffff -o json >/tmp/common.json || fail "Identify Namespace FFFFFFFFh failed"
f4k=$(jq '[.lbafs[] | (.ds == 12 and .ms == 0)] | index(true)' /tmp/common.json)
f512=$(jq '[.lbafs[] | (.ds == 9 and .ms == 0)] | index(true)' /tmp/common.json)
[ "$f4k" != null ] && [ "$f512" != null ] || fail "no 4096+0 or 512+0 LBA format in $(jq -c .lbafs /tmp/common.json)"
echo "formats: 4096+0 is $f4k, 512+0 is $f512; unallocated $free0 bytes"

# wait_disk NSID present|absent: the kernel's view, polled for 10 s.
disk_of() {
    for _b in /sys/block/nvme0n*; do
        [ "$(cat "$_b/nsid" 2>/dev/null)" = "$1" ] && { echo "/dev/${_b##*/}"; return 0; }
    done
    return 1
}
wait_disk() {
    _t=0
    while [ $_t -lt 100 ]; do
        if disk_of "$1" >/dev/null; then [ "$2" = present ] && return 0; else [ "$2" = absent ] && return 0; fi
        sleep 0.1
        _t=$((_t + 1))
    done
    fail "namespace $1: the kernel's disk is not $2 after 10 s"
}
wait_lbs() { # DEV LBS
    _t=0
    while [ $_t -lt 100 ]; do
        [ "$(cat /sys/block/${1#/dev/}/queue/logical_block_size)" = "$2" ] && return 0
        sleep 0.1
        _t=$((_t + 1))
    done
    fail "$1: logical_block_size is $(cat /sys/block/${1#/dev/}/queue/logical_block_size), want $2"
}

out=$(nvme create-ns /dev/nvme0 --nsze=$((size / 4096)) --ncap=$((size / 4096)) --flbas=$f4k --dps=0 2>&1) || fail "create-ns failed: $out"
nsid=$(echo "$out" | sed -n 's/.*created nsid: *\([0-9]*\).*/\1/p')
[ -n "$nsid" ] || fail "create-ns printed no nsid: $out"
echo "created namespace $nsid: $out"
nvme list-ns /dev/nvme0 --all -o json | jq -e ".nsid_list[] | select(.nsid == $nsid)" >/dev/null ||
    fail "list-ns --all does not list $nsid: $(nvme list-ns /dev/nvme0 --all -o json | jq -c .)"
disk_of $nsid >/dev/null && fail "namespace $nsid has a disk before it is attached"
expect_eq "unallocated capacity after create" "$(unvm)" $((free0 - size))

nvme attach-ns /dev/nvme0 -n $nsid -c 0 >/dev/null 2>&1 || fail "attach-ns $nsid failed"
wait_disk $nsid present
d=$(disk_of $nsid)
wait_lbs $d 4096
expect_eq "$d size in 512-byte sectors" "$(cat /sys/block/${d#/dev/}/size)" $((size / 512))
echo "attached: $d, 4096-byte blocks"
dd if=/dev/urandom of=/tmp/pat bs=4096 count=16 2>/dev/null
dd if=/tmp/pat of=$d bs=4096 seek=10 oflag=direct conv=notrunc 2>/dev/null || fail "write to $d failed"
dd if=$d of=/tmp/back bs=4096 skip=10 count=16 iflag=direct 2>/dev/null || fail "read from $d failed"
cmp -s /tmp/pat /tmp/back || fail "$d: data read back differs"
out=$(nvme copy $d --sdlba=1000 --slbs=10 --blocks=15 2>&1) || fail "nvme copy on $d failed: $out"
dd if=$d of=/tmp/back bs=4096 skip=1000 count=16 iflag=direct 2>/dev/null || fail "read of the copy failed"
cmp -s /tmp/pat /tmp/back || fail "$d: the copy at LBA 1000 differs from its source"
echo "write, read and copy on $d ok"

out=$(nvme format /dev/nvme0 -n $nsid --lbaf=$f512 --ses=1 --force 2>&1) || fail "format of $nsid failed: $out"
wait_lbs $d 512
expect_eq "$d size after format" "$(cat /sys/block/${d#/dev/}/size)" $((size / 512))
dd if=$d of=/tmp/back bs=4096 skip=1000 count=16 iflag=direct 2>/dev/null || fail "read after format failed"
[ "$(tr -d '\000' </tmp/back | wc -c)" = 0 ] || fail "$d: not erased by Format NVM with SES 1"
dd if=/tmp/pat of=$d bs=512 seek=7 count=3 oflag=direct conv=notrunc 2>/dev/null || fail "512-byte write after format failed"
dd if=$d of=/tmp/back bs=512 skip=7 count=3 iflag=direct 2>/dev/null || fail "512-byte read after format failed"
dd if=/tmp/pat of=/tmp/pat3 bs=512 count=3 2>/dev/null
cmp -s /tmp/pat3 /tmp/back || fail "$d: 512-byte data read back differs after format"
echo "formatted to 512-byte blocks: erased, I/O ok"

nvme detach-ns /dev/nvme0 -n $nsid -c 0 >/dev/null 2>&1 || fail "detach-ns $nsid failed"
wait_disk $nsid absent
out=$(nvme delete-ns /dev/nvme0 -n $nsid 2>&1) || fail "delete-ns $nsid failed: $out"
expect_eq "unallocated capacity after delete" "$(unvm)" "$free0"
nvme list-ns /dev/nvme0 --all -o json | jq -e ".nsid_list[] | select(.nsid == $nsid)" >/dev/null &&
    fail "list-ns --all still lists $nsid after delete"
echo "detached and deleted namespace $nsid; capacity back to $free0 bytes"
