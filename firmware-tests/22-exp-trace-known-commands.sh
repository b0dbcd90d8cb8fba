# CHECKS: experiment (host-steered): the --trace of a known nvme-cli command sequence (write, read, two copies at distinctive LBAs) holds exactly those commands with their fields
# DEVICE-ARGS: --ns size=64M
# HOST: firmware-tests/host/22-exp-trace-known-commands.sh checks the trace after EXP-22-DONE.
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
dd if=/dev/urandom of=/tmp/w bs=512 count=8 2>/dev/null
# LBAs 50000-50999: nothing else (partition scan, udev) reads there.
nvme write $d --start-block=50000 --block-count=7 --data-size=4096 --data=/tmp/w >/tmp/o 2>&1 || fail "nvme write: $(cat /tmp/o)"
nvme read $d --start-block=50100 --block-count=3 --data-size=2048 --data=/tmp/r >/tmp/o 2>&1 || fail "nvme read: $(cat /tmp/o)"
nvme copy $d --sdlba=50200 --slbs=50000,50004 --blocks=3,1 >/tmp/o 2>&1 || fail "nvme copy 1: $(cat /tmp/o)"
nvme copy $d --sdlba=50300 --slbs=50002 --blocks=0 >/tmp/o 2>&1 || fail "nvme copy 2: $(cat /tmp/o)"
echo "EXP-22-DONE"
