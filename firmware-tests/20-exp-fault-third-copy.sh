# CHECKS: experiment (host-steered): inject-fault opcode=copy after=2 count=1 status=0x0281 makes the third Copy fail in nvme-cli with 0x4281 while copies 1, 2 and 4 succeed
# DEVICE-ARGS: --ns size=64M
# HOST: firmware-tests/host/20-exp-fault-third-copy.sh installs the fault before the guest boots.
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
dd if=/dev/urandom of=/tmp/src bs=512 count=8 2>/dev/null
dd if=/tmp/src of=$d bs=512 seek=100 count=8 oflag=direct conv=notrunc 2>/dev/null || fail "write failed"
for i in 1 2 3 4; do
    dst=$((1000 + i * 100))
    nvme copy $d --sdlba=$dst --slbs=100 --blocks=7 >/tmp/copy.$i 2>&1
    echo "copy $i -> $dst: exit $? $(head -n1 /tmp/copy.$i)"
done
for i in 1 2 4; do
    grep -q 'NVMe Copy: success' /tmp/copy.$i || fail "copy $i should succeed: $(cat /tmp/copy.$i)"
    dd if=$d of=/tmp/got bs=512 skip=$((1000 + i * 100)) count=8 iflag=direct 2>/dev/null
    cmp -s /tmp/src /tmp/got || fail "copy $i: destination differs from the source"
done
grep -qi '(0x4281)' /tmp/copy.3 || fail "copy 3 should fail with 0x4281 (0x0281 + DNR): $(cat /tmp/copy.3)"
echo "EXP-20-DONE"
