# CHECKS: Write Uncorrectable from the guest (nvme write-uncor): reads of the marked blocks fail with Unrecovered Read Error, through nvme-cli and through the kernel's block layer (ENODATA or EIO, the kernel logs the media error), the blocks around them still read; Get LBA Status (nvme get-lba-status, the command nvme-cli's own e2e test means to send) and the LBA Status Information log list exactly the marked blocks; a write heals them
. /tests/lib.sh
nvme_only
nvme id-ctrl /dev/nvme0 -o json >/tmp/idc.json || fail "nvme id-ctrl failed"
oncs=$(jq -r .oncs /tmp/idc.json)
oacs=$(jq -r .oacs /tmp/idc.json)
[ $((oncs & 2)) -ne 0 ] || skip "the device has no Write Uncorrectable (ONCS=$oncs, bit 1 clear): $DEVICE"
d=$(dev_of 1)
lbs=$(ns_var 1 LBS)
nsid=$(ns_var 1 NSID)
echo "namespace $nsid: $d, $lbs-byte blocks; ONCS=$oncs OACS=$oacs"

fill_random "$d" "$lbs" 64 8
cp /tmp/rnd /tmp/orig
# --block-count is NLB, 0's based: 1 marks blocks 66 and 67.
nvme write-uncor "$d" --start-block=66 --block-count=1 >/tmp/wu.out 2>&1 || fail "write-uncor failed: $(cat /tmp/wu.out)"
echo "write-uncor 66+2: $(cat /tmp/wu.out)"

# nvme-cli's read (passthrough): the spec's status.
if nvme read "$d" --start-block=66 --block-count=0 --data-size="$lbs" --data=/tmp/r.bin >/tmp/r.out 2>&1; then
    fail "read of marked block 66 succeeded"
fi
grep -qi "0x4281\|0x281\|unrecovered" /tmp/r.out || fail "read of block 66 should fail with Unrecovered Read Error (0x4281): $(cat /tmp/r.out)"
echo "nvme read 66: $(head -n1 /tmp/r.out)"

# The kernel's block layer: EIO for the marked block, data for its neighbours.
dmesg -c >/dev/null 2>&1
if dd if="$d" of=/tmp/k.bin bs="$lbs" skip=67 count=1 iflag=direct 2>/tmp/dd.err; then
    fail "dd of marked block 67 through $d succeeded"
fi
# BLK_STS_MEDIUM reaches user space as ENODATA (older kernels: EIO).
grep -qi "No data available\|I/O error" /tmp/dd.err || fail "dd of block 67: no media error reported: $(cat /tmp/dd.err)"
echo "dd of block 67: $(cat /tmp/dd.err | head -n1)"
dmesg | grep -qi "medium error\|sc 0x81\|Unrecovered Read" || fail "the kernel logged no media error for block 67: $(dmesg | tail -n 5)"
echo "kernel: $(dmesg | grep -i -m1 'medium error\|sc 0x81\|Unrecovered Read')"
blocks_to /tmp/a.bin "$d" "$lbs" 64 2
blocks_to /tmp/b.bin "$d" "$lbs" 68 4
dd if=/tmp/orig of=/tmp/oa.bin bs="$lbs" count=2 2>/dev/null
dd if=/tmp/orig of=/tmp/ob.bin bs="$lbs" skip=4 count=4 2>/dev/null
cmp -s /tmp/a.bin /tmp/oa.bin && cmp -s /tmp/b.bin /tmp/ob.bin || fail "the blocks around the mark changed"

# Get LBA Status: one descriptor, 66+2.
lba_status() {
    nvme get-lba-status /dev/nvme0 --namespace-id="$nsid" --start-lba=0 --max-dw=63 --action=0x11 --range-len=0 >/tmp/gls.out 2>&1 ||
        fail "get-lba-status failed: $(cat /tmp/gls.out)"
    sed -n 's/^Number of LBA Status Descriptors(NLSD): *//p' /tmp/gls.out
}
[ $((oacs & 512)) -ne 0 ] || fail "Write Uncorrectable without Get LBA Status (OACS=$oacs, bit 9 clear)"
expect_eq "get-lba-status descriptors" "$(lba_status)" 1
dslba=$(sed -n 's/.*DSLBA: *\(0x[0-9a-fA-F]*\).*/\1/p' /tmp/gls.out)
nlb=$(sed -n 's/.*NLB: *\(0x[0-9a-fA-F]*\).*/\1/p' /tmp/gls.out)
expect_eq "DSLBA" $((dslba)) 66
expect_eq "NLB" $((nlb)) 2
echo "get-lba-status: $(grep DSLBA /tmp/gls.out)"
nvme lba-status-log /dev/nvme0 -o json >/tmp/lsl.json 2>&1 || fail "lba-status-log failed: $(cat /tmp/lsl.json)"
expect_eq "lba-status-log: namespace element" "$(jq -c '[.ns_elements[] | {neid, descs}]' /tmp/lsl.json)" \
    "[{\"neid\":$nsid,\"descs\":[{\"rslba\":66,\"rnlb\":2}]}]"
expect_eq "lba-status-log: estimated unrecoverable blocks" "$(jq .estulb /tmp/lsl.json)" 2

# A write over the marked blocks heals them.
fill_random "$d" "$lbs" 66 2
blocks_to /tmp/c.bin "$d" "$lbs" 66 2
cmp -s /tmp/c.bin /tmp/rnd || fail "blocks 66-67 do not read back what was written over them"
expect_eq "get-lba-status descriptors after the write" "$(lba_status)" 0
echo "written over: blocks 66-67 read back, no LBA status descriptors"
