# CHECKS: experiment (host-steered): inject-fault copy_range=2 makes a 4-range Copy fail with 0x4281 after really copying ranges 0 and 1 (Dword 0 = 2 in the trace), range 2 and 3 not copied
# DEVICE-ARGS: --ns size=64M
# HOST: firmware-tests/host/23-exp-copy-fails-at-range-k.sh installs the fault before boot and checks Dword 0 in the trace.
# Run by scripts/guest-experiments (vnvme only); scripts/guest-test leaves it out.
case " $(cat /proc/cmdline) " in *" vnvme.device=vhost-user-blk "* | *" vnvme.device=qemu-virtio-blk "*)
    echo "SKIP-REASON: NVMe-only (device is virtio-blk)"
    exit 77 ;;
esac
if [ ! -e /exp/host-steered ]; then
    echo "FAIL-REASON: needs its host side: run it with scripts/guest-experiments (vnvme only)"
    exit 1
fi
fail() { echo "FAIL-REASON: $*"; exit 1; }
d=/dev/nvme0n1
# Four 8-block source ranges at 100, 200, 300, 400; destination 2000 (32 blocks) zeroed.
for s in 100 200 300 400; do
    dd if=/dev/urandom of=/tmp/src.$s bs=512 count=8 2>/dev/null
    dd if=/tmp/src.$s of=$d bs=512 seek=$s count=8 oflag=direct conv=notrunc 2>/dev/null || fail "write at $s"
done
dd if=/dev/zero of=$d bs=512 seek=2000 count=32 oflag=direct conv=notrunc 2>/dev/null || fail "zeroing 2000"
nvme copy $d --sdlba=2000 --slbs=100,200,300,400 --blocks=7,7,7,7 >/tmp/c 2>&1
echo "nvme copy (4 ranges): exit $? $(head -n1 /tmp/c)"
grep -qi '(0x4281)' /tmp/c || fail "the copy should fail with 0x4281: $(cat /tmp/c)"
dd if=/dev/zero of=/tmp/zero bs=512 count=8 2>/dev/null
i=0
for s in 100 200 300 400; do
    dd if=$d of=/tmp/got bs=512 skip=$((2000 + i * 8)) count=8 iflag=direct 2>/dev/null
    if [ $i -lt 2 ]; then
        cmp -s /tmp/src.$s /tmp/got || fail "range $i (from $s) should have been copied"
    else
        cmp -s /tmp/zero /tmp/got || fail "range $i (from $s) should not have been copied"
    fi
    i=$((i + 1))
done
echo "ranges 0 and 1 copied, 2 and 3 not"
echo "EXP-23-DONE"
