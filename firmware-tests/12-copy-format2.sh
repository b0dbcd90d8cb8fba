# CHECKS: descriptor format 2 (source NSID per range) fails with Invalid Field until Host Behavior Support enables it (CDFE), then copies across namespaces, mixing them in one command
. /tests/lib.sh
nvme id-ctrl /dev/nvme0 >/tmp/idc
ocfs=$(($(field ocfs </tmp/idc)))
[ $((ocfs & 4)) -ne 0 ] || fail "OCFS does not advertise format 2: ocfs=$ocfs"
d1=$(dev_of 1) lbs=$(ns_var 1 LBS) n1=$(ns_var 1 NSID)
set_cdfe 0
copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
set_cdfe 4
copy_expect_status success $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
# A second namespace with the same LBA format, if the configuration has one.
other=""
i=2
while [ $i -le $NS_COUNT ]; do
    [ "$(ns_var $i LBS)" = "$lbs" ] && other=$i && break
    i=$((i + 1))
done
if [ -n "$other" ]; then
    d2=$(dev_of $other) n2=$(ns_var $other NSID)
    fill_random $d1 $lbs 400 8
    fill_random $d2 $lbs 600 16
    fill_random $d2 $lbs 50 4
    fill_random $d2 $lbs 400 8
    blocks_to /tmp/x $d1 $lbs 400 8
    blocks_to /tmp/x2 $d2 $lbs 400 8
    blocks_to /tmp/y $d2 $lbs 600 16
    blocks_to /tmp/z $d2 $lbs 50 4
    cat /tmp/y /tmp/x /tmp/z >/tmp/want
    copy_expect_status success $d1 --sdlba=9000 --slbs=600,400,50 --blocks=15,7,3 --format=2 --snsids=$n2,$n1,$n2
    blocks_to /tmp/got $d1 $lbs 9000 28
    if ! cmp -s /tmp/want /tmp/got; then
        cat /tmp/y /tmp/x2 /tmp/z >/tmp/first_ns_only
        if cmp -s /tmp/first_ns_only /tmp/got; then
            known_deviation QEMU-COPY-SNSID "format 2 copy read every range from the first range's namespace ($n2), not from each range's own"
        else
            fail "cross-namespace copy (ns $n2, $n1, $n2 -> $n1) differs from the sources"
        fi
    fi
else
    echo "no second namespace with $lbs-byte blocks: cross-namespace data check not run"
fi
# A namespace with another LBA format is not a valid source (Incompatible Namespace or Format 0x4185).
i=2
while [ $i -le $NS_COUNT ]; do
    if [ "$(ns_var $i LBS)" != "$lbs" ]; then
        copy_expect_status 0x4185 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$(ns_var $i NSID)
        break
    fi
    i=$((i + 1))
done
set_cdfe 0
copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
