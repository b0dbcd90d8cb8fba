# CHECKS: Host Behavior Support CDFE gates formats 2/3: 0x4002 before, success after, cross-namespace data (ns A, ns B, ns A), 0x4185 for another LBA format, format 3 0x410A (no PI), 0x4002 once cleared; CDFE set by the guest where its kernel allows it, and from the device's control side (vnvme)
. /tests/lib.sh
nvme_only
d1=$(dev_of 1) lbs=$(ns_var 1 LBS) n1=$(ns_var 1 NSID)
# Who can set CDFE here: the guest (Set Features from user space, refused by Linux since
# 6.12.117) and/or the device's host side (vnvme's set-host-behavior over the control port).
setters=""
if guest_set_cdfe 0; then
    setters="guest"
else
    echo "kernel $KERNEL_RELEASE refuses Set Features 0x16 from user space: $(head -n1 /tmp/sf.out)"
fi
[ -n "$CONTROL_TTY" ] && setters="$setters host"
if [ -z "$setters" ]; then
    skip "CDFE cannot be set here: kernel $KERNEL_RELEASE refuses Set Features 0x16 from user space (EACCES), and $DEVICE has no device-side control (vnvme's set-host-behavior) to set it"
fi

# A second namespace with the same LBA format, and one with another, if configured.
other="" incompatible=""
i=2
while [ $i -le $NS_COUNT ]; do
    if [ "$(ns_var $i LBS)" = "$lbs" ]; then
        [ -n "$other" ] || other=$i
    else
        [ -n "$incompatible" ] || incompatible=$i
    fi
    i=$((i + 1))
done

round=0
for who in $setters; do
    round=$((round + 1))
    echo "--- CDFE set by the $who"
    set_cdfe() { "${who}_set_cdfe" "$1" || fail "the $who could not set CDFE=$1"; }
    set_cdfe 0
    copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
    set_cdfe 4
    expect_eq "CDFE in Get Features 0x16" "$(get_cdfe)" 4
    copy_expect_status success $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
    # Format 3 is not enabled by bit 2.
    copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=3 --snsids=$n1
    if [ -n "$other" ]; then
        d2=$(dev_of $other) n2=$(ns_var $other NSID)
        base=$((400 + round * 1000))
        fill_random $d1 $lbs $base 8
        fill_random $d2 $lbs $((base + 200)) 16
        fill_random $d1 $lbs $((base + 50)) 4
        fill_random $d2 $lbs $((base + 50)) 4
        blocks_to /tmp/a1 $d1 $lbs $base 8
        blocks_to /tmp/b $d2 $lbs $((base + 200)) 16
        blocks_to /tmp/a2 $d1 $lbs $((base + 50)) 4
        blocks_to /tmp/b2 $d2 $lbs $((base + 50)) 4
        cat /tmp/a1 /tmp/b /tmp/a2 >/tmp/want
        dst=$((9000 + round * 100))
        copy_expect_status success $d1 --sdlba=$dst --slbs=$base,$((base + 200)),$((base + 50)) --blocks=7,15,3 --format=2 --snsids=$n1,$n2,$n1
        blocks_to /tmp/got $d1 $lbs $dst 28
        if ! cmp -s /tmp/want /tmp/got; then
            # QEMU keeps the previous range's source namespace when a range names the
            # destination namespace: range 2 is then read from ns $n2 (docs/copy.md).
            if cat /tmp/a1 /tmp/b /tmp/b2 | cmp -s - /tmp/got; then
                known_deviation QEMU-COPY-SNSID "format 2 ranges (ns $n1, $n2, $n1): the third was read from ns $n2, the previous range's namespace, not from its own"
            else
                fail "cross-namespace copy (ns $n1, $n2, $n1 -> $n1) differs from the sources"
            fi
        else
            echo "cross-namespace data (ns $n1, $n2, $n1 -> $n1 at $dst): identical"
        fi
    else
        echo "no second namespace with $lbs-byte blocks: cross-namespace data check not run"
    fi
    if [ -n "$incompatible" ]; then
        # Another LBA format is not a valid source: Incompatible Namespace or Format.
        copy_expect_status 0x4185 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$(ns_var $incompatible NSID)
    fi
    # Format 3 enabled, but it needs 32/64-bit guard protection information: Invalid Format.
    set_cdfe 12
    copy_expect_status 0x410a $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=3 --snsids=$n1
    set_cdfe 0
    expect_eq "CDFE in Get Features 0x16" "$(get_cdfe)" 0
    copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
done
echo "CDFE set by:${setters}"
