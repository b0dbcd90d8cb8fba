# CHECKS: Copy on protection-information namespaces: format 1 (40-byte descriptors, 48-bit EILBRT most significant byte first) on the 64-bit guard namespace carries the tuples with PRACT 0 or regenerates them with PRACT on both sides; PRINFOR checks with the descriptors' expected tags (0x283), PRINFOW checks of carried tuples (0x284); PRACT on one side only 0x002; format 0 there and format 1 on the 16-bit guard namespace are Invalid Format (0x10a)
. /tests/lib.sh
. /tests/pi-lib.sh
nvme_only
i64=$(pi_ns 64)
i16=$(pi_ns 16)
[ -n "$i64" ] || skip "no 64-bit guard namespace with separate metadata in this run (scripts/guest-test --pi)"
d=$(dev_of $i64) lbs=$(ns_var $i64 LBS) pi=$(ns_var $i64 PI)
[ "$pi" = 1 ] || skip "the 64-bit guard namespace is Type $pi; these cases are written for Type 1"
nvme id-ctrl /dev/nvme0 >/tmp/idc
ocfs=$(($(field ocfs </tmp/idc)))
[ $((ocfs & 2)) -ne 0 ] || fail "OCFS does not advertise format 1: ocfs=$ocfs"
echo "64-bit guard: $d (nsid $(ns_var $i64 NSID), $lbs-byte blocks), ocfs=$ocfs"
# Eight blocks at 200 with tuples the device makes: application tag 0x0abc, reference
# tags 200..207.
dd if=/dev/urandom of=/tmp/src bs=$lbs count=8 2>/dev/null
pi_expect success "write 8 blocks at 200 with PRACT" nvme write $d -s 200 -c 7 -z $((8 * lbs)) -d /tmp/src --prinfo=8 -r 200 -a 0x0abc
# Format 0 is not a 64-bit guard format.
pi_expect 0x10a "format 0 copy on the 64-bit guard namespace" nvme copy $d --format=0 --sdlba=300 --slbs=200 --blocks=7
# PRACT 0 on both sides: the source checked against the descriptor's expected tags
# (the Type 1 reference check also proves the EILBRT byte order: it must equal SLBA),
# the tuples carried, the destination's guard checked.
pi_expect success "format 1, prinfor=7 with expected tags, prinfow=4" nvme copy $d --format=1 --sdlba=300 --slbs=200 --blocks=7 \
    --prinfor=7 --expected-ref-tags=200 --expected-app-tags=0x0abc --expected-app-tag-masks=0xffff --prinfow=4
# (Read through nvme-cli: the kernel's own read would verify reference tags, which the
# carried tuples do not match at the destination.)
pi_expect success "read the copy, guard and application tag checked" nvme read $d -s 300 -c 7 -z $((8 * lbs)) -y 128 -d /tmp/o -M /tmp/mo --prinfo=6 -a 0x0abc -m 0xffff
cmp -s /tmp/src /tmp/o || fail "format 1 copy: destination data differs"
expect_eq "carried reference tag of the first copied block" "$(hex /tmp/mo | cut -c21-32)" "$(hexnum 200 6)"
pi_expect 0x284 "read the copy, reference checked (the tuples name LBAs 200..)" nvme read $d -s 300 -c 7 -z $((8 * lbs)) -y 128 -d /tmp/o -M /tmp/mo --prinfo=1 -r 300
pi_expect 0x284 "format 1 with the destination's reference check on carried tuples" nvme copy $d --format=1 --sdlba=500 --slbs=200 --blocks=7 --prinfor=0 --prinfow=1 --ref-tag=500
pi_expect 0x283 "format 1, wrong expected application tag" nvme copy $d --format=1 --sdlba=500 --slbs=200 --blocks=7 \
    --prinfor=2 --expected-app-tags=0x0abd --expected-app-tag-masks=0xffff
pi_expect 0x181 "format 1, expected reference tag not the source LBA (Type 1)" nvme copy $d --format=1 --sdlba=500 --slbs=200 --blocks=7 \
    --prinfor=1 --expected-ref-tags=201
pi_expect 0x002 "PRACT in PRINFOR only" nvme copy $d --format=1 --sdlba=500 --slbs=200 --blocks=7 --prinfor=8 --prinfow=0
# PRACT on both sides: the source checked, new tuples from the destination's tags.
pi_expect success "format 1, PRACT both, two ranges" nvme copy $d --format=1 --sdlba=400 --slbs=200,204 --blocks=3,3 \
    --prinfor=0xf --expected-ref-tags=200,204 --expected-app-tags=0x0abc,0x0abc --expected-app-tag-masks=0xffff,0xffff \
    --prinfow=8 --ref-tag=400 --app-tag=0x0def
blocks_to /tmp/got $d $lbs 400 8
cmp -s /tmp/src /tmp/got || fail "PRACT copy: destination data differs"
pi_expect success "read the regenerated copy, every check" nvme read $d -s 400 -c 7 -z $((8 * lbs)) -y 128 -d /tmp/o -M /tmp/mo --prinfo=7 -r 400 -a 0x0def -m 0xffff
if [ -n "$i16" ]; then
    pi_expect 0x10a "format 1 copy on the 16-bit guard namespace" nvme copy $(dev_of $i16) --format=1 --sdlba=300 --slbs=200 --blocks=7
    # Format 0 there carries the tuples (PRACT 0, no checks) like any copy.
    d16=$(dev_of $i16)
    fill_random $d16 512 3000 4
    pi_expect success "format 0 copy on the 16-bit guard namespace, prinfor=7 prinfow=4" nvme copy $d16 --format=0 --sdlba=3100 --slbs=3000 --blocks=3 \
        --prinfor=7 --expected-ref-tags=3000 --expected-app-tags=0 --expected-app-tag-masks=0 --prinfow=4
    blocks_to /tmp/a $d16 512 3000 4
    pi_expect success "read the copy's data and tuples" nvme read $d16 -s 3100 -c 3 -z 2048 -y 32 -d /tmp/b -M /tmp/mb --prinfo=0
    cmp -s /tmp/a /tmp/b || fail "format 0 copy on $d16: destination differs"
    expect_eq "carried reference tag (the source LBA)" "$(hex /tmp/mb | cut -c9-16)" "$(hexnum 3000 4)"
fi
