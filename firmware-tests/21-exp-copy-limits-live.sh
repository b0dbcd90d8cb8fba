# CHECKS: experiment (host-steered): set-copy-limits under the running guest changes MSSRL/MCL in nvme id-ns, and the Namespace Attribute Changed event shows in dmesg
# DEVICE-ARGS: --ns size=64M,mssrl=128,mcl=128,msrc=127
# HOST: firmware-tests/host/21-exp-copy-limits-live.sh waits for EXP-21-READY, then sets mssrl=16,mcl=64.
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
field() {
    awk -F: -v k="$1" '{g=$1; gsub(/[ \t]/,"",g)} g==k {v=$2; sub(/^[ \t]*/,"",v); sub(/[ \t]*$/,"",v); print v; exit}'
}
d=/dev/nvme0n1
echo 7 >/proc/sys/kernel/printk 2>/dev/null
before=$(nvme id-ns $d | field mssrl)
[ "$before" = 128 ] || fail "MSSRL at start: $before, want 128"
dmesg >/tmp/dmesg.before
echo "EXP-21-READY mssrl=$before"
i=0 now=$before
while [ "$now" = "$before" ] && [ $i -lt 600 ]; do
    sleep 0.1
    now=$(nvme id-ns $d | field mssrl)
    i=$((i + 1))
done
mcl=$(nvme id-ns $d | field mcl)
echo "after $((i / 10)).$((i % 10)) s: mssrl=$now mcl=$mcl"
[ "$now" = 16 ] || fail "MSSRL did not change to 16 within 60 s (it is $now)"
[ "$mcl" = 64 ] || fail "MCL is $mcl, want 64"
# The kernel handles the Namespace Attribute Changed notice by rescanning namespaces
# ("rescanning namespaces." in dmesg); wait for it (bounded).
i=0
while [ $i -lt 100 ]; do
    dmesg | grep -v -F -x -f /tmp/dmesg.before | grep -i 'nvme.*rescanning namespaces\|nvme.*async event' >/tmp/aen && break
    sleep 0.1
    i=$((i + 1))
done
if [ -s /tmp/aen ]; then
    echo "AEN in dmesg: $(tail -n1 /tmp/aen)"
else
    dmesg | tail -n 20
    fail "no Namespace Attribute Changed handling in dmesg within 10 s"
fi
# A copy over the new MSSRL is refused; one at it succeeds.
nvme copy $d --sdlba=5000 --slbs=0 --blocks=16 >/tmp/c1 2>&1
grep -qi '(0x4183)' /tmp/c1 || fail "a 17-block range should fail with 0x4183 now: $(cat /tmp/c1)"
nvme copy $d --sdlba=5000 --slbs=0 --blocks=15 >/tmp/c2 2>&1
grep -q 'NVMe Copy: success' /tmp/c2 || fail "a 16-block range should succeed: $(cat /tmp/c2)"
echo "EXP-21-DONE"
