# CHECKS: experiment (host-steered): with --ctrl cdfe=0xc a format 2 Copy succeeds with no Set Features 0x16 from the guest; after the host's set-host-behavior cdfe=0 the same Copy fails with 0x4002
# DEVICE-ARGS: --ns size=64M --ns size=64M --ctrl cdfe=0xc
# HOST: firmware-tests/host/24-exp-cdfe-from-the-device.sh waits for EXP-24-READY, sets cdfe=0, then checks the trace.
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
cdfe() {
    nvme get-feature /dev/nvme0 --feature-id=0x16 --data-len=512 --raw-binary >/tmp/hbs 2>/dev/null || fail "get-feature 0x16 failed"
    echo $(($(od -An -tu1 -j4 -N1 /tmp/hbs) + 256 * $(od -An -tu1 -j5 -N1 /tmp/hbs)))
}
d=/dev/nvme0n1
for b in /sys/block/nvme0n*; do [ "$(cat $b/nsid)" = 1 ] && d=/dev/${b##*/}; done
other=/dev/nvme0n2
[ "$d" = /dev/nvme0n2 ] && other=/dev/nvme0n1
got=$(cdfe)
[ "$got" = 12 ] || fail "CDFE after the driver's reset: $got, want 12 (--ctrl cdfe=0xc)"
dd if=/dev/urandom of=/tmp/src bs=512 count=8 2>/dev/null
dd if=/tmp/src of=$other bs=512 seek=100 count=8 oflag=direct conv=notrunc 2>/dev/null || fail "write failed"
nvme copy $d --sdlba=2000 --slbs=100 --blocks=7 --format=2 --snsids=2 >/tmp/c1 2>&1
echo "copy 1 (format 2, ns 2 -> ns 1): $(head -n1 /tmp/c1)"
grep -q 'NVMe Copy: success' /tmp/c1 || fail "format 2 copy with CDFE from --ctrl should succeed: $(cat /tmp/c1)"
dd if=$d of=/tmp/got bs=512 skip=2000 count=8 iflag=direct 2>/dev/null
cmp -s /tmp/src /tmp/got || fail "copy 1: destination differs from the source"
echo "EXP-24-READY"
i=0
while [ "$(cdfe)" != 0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(cdfe)" = 0 ] || fail "CDFE did not become 0 within 60 s"
echo "CDFE 0 after $((i / 10)).$((i % 10)) s"
nvme copy $d --sdlba=3000 --slbs=100 --blocks=7 --format=2 --snsids=2 >/tmp/c2 2>&1
echo "copy 2 (the same, after set-host-behavior cdfe=0): $(head -n1 /tmp/c2)"
grep -qi '(0x4002)' /tmp/c2 || fail "format 2 copy after cdfe=0 should fail with 0x4002: $(cat /tmp/c2)"
echo "EXP-24-DONE"
