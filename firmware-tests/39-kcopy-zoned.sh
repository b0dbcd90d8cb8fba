# CHECKS: kernel copy offload on a zoned namespace (scripts/guest-test --kernel-series DIR --zoned): the copy limits the kernel derives there, a copy to an empty zone at its write pointer and one of more than MSSRL blocks after it (data, write pointer, what the device received: Copy commands, not writes), a copy off the write pointer, past the zone capacity and into a full zone (an error to the caller, the zone unchanged), and a regular write at the write pointer a copy moved
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
i=""
for k in $(seq 1 "$NS_COUNT"); do
    [ "$(ns_var $k ZONED)" = 1 ] && { i=$k; break; }
done
[ -n "$i" ] || skip "no zoned namespace in this run (scripts/guest-test --kernel-series DIR --zoned)"
d=$(dev_of $i)
[ -e /sys/block/${d#/dev/}/queue/zoned ] || fail "no $d for the zoned namespace (a kernel without CONFIG_BLK_DEV_ZONED creates none)"
[ -e /sys/block/${d#/dev/}/queue/copy_max_bytes ] ||
    skip "kernel $KERNEL_RELEASE has no block-layer copy offload (no queue/copy_max_bytes): boot a copy-offload kernel (scripts/guest-test --kernel-series DIR --zoned)"
command -v kcopy >/dev/null 2>&1 || skip "no kcopy helper in the guest (scripts/guest-test --kernel-series adds it)"
kcopy_setup
ns_limits $i
zsze=$(($(ns_var $i ZONE_SIZE) / LBS))
zcap=$(($(ns_var $i ZONE_CAP) / LBS))
[ "$zcap" -gt 0 ] || zcap=$zsze
nzones=$(ns_var $i ZONES)
q=/sys/block/${DEV#/dev/}/queue
echo "$DEV: zoned ($(cat $q/zoned)), $nzones zones of $zsze blocks (capacity $zcap), lbs=$LBS mssrl=$MSSRL mcl=$MCL msrc=$MSRC"
[ "$nzones" -ge 8 ] || fail "the test needs 8 zones, the namespace has $nzones"
[ "$zcap" -ge 600 ] || fail "the test needs zones of at least 600 blocks of capacity, has $zcap"

# The sysfs limits the series derives are the same as on a conventional namespace.
for kv in $SYSFS; do
    a=${kv%%=*} want=$(eval_expr "${kv#*=}")
    expect_eq "queue/$a on the zoned namespace" "$(sysfs_q $DEV $a)" "$want"
done
echo "sysfs: $(for kv in $SYSFS; do printf '%s=%s ' ${kv%%=*} $(sysfs_q $DEV ${kv%%=*}); done)"

# zone K FIELD: state or wp of zone K (nvme zns report-zones).
zone() {
    nvme zns report-zones "$DEV" -s $(($1 * zsze)) -d 1 -o json >/tmp/rz.json 2>&1 || fail "report-zones at zone $1: $(cat /tmp/rz.json)"
    jq -r ".zone_list[0].$2" /tmp/rz.json
}
# seen: what the device received since the last reset-stats (vnvme's counters), or "".
seen() {
    SEEN="" SEEN_WRITES=0 SEEN_COPIES=0
    [ -n "$CONTROL_TTY" ] || return 0
    ctl_json query-stats
    SEEN_COPIES=$(jq -r --arg ns "$NSID" '.return[$ns].opcodes.copy.commands // 0' /tmp/ctl.json)
    SEEN_WRITES=$(jq -r --arg ns "$NSID" '.return[$ns].opcodes.write.commands // 0' /tmp/ctl.json)
    SEEN="device: $(copy_stats $NSID) writes=$SEEN_WRITES"
}
reset_seen() { [ -z "$CONTROL_TTY" ] || ctl_json reset-stats; }

# Zones are reset and finished through the block layer (blkzone), never by NVMe passthrough:
# a passthrough reset leaves the kernel's zone write plug of a partly written zone at its
# old write pointer, and the kernel then fails the next write at the zone start itself.
blkzone reset $DEV 2>/tmp/bz.err || fail "blkzone reset: $(cat /tmp/bz.err)"
# The zoned tests after this one start from empty zones, also when this one fails.
trap 'blkzone reset $DEV 2>/dev/null' EXIT
# Sources: 512 blocks at the start of zone 0 (written at its write pointer).
kcopy fill $DEV 0 $((512 * LBS)) 41 >/dev/null || fail "fill the source in zone 0"

# zcopy WHAT SRC DST N: one copy through the kernel; status 0 done and the data right,
# 1 an error to the caller; wrong data or a hang is a KERNEL-BUG.
zcopy() {
    _what=$1 _s=$2 _dst=$3 _n=$4
    reset_seen
    kc $DEV $((_s * LBS)) $((_dst * LBS)) $((_n * LBS))
    _rc=$?
    seen
    [ $_rc = 124 ] && { kernel_bug hang "$_what: the copy did not finish within 120 s"; return 1; }
    if [ $_rc != 0 ]; then
        kc_outcome $((_n * LBS))
        echo "  $_what: the kernel returned $KC_OUTCOME ($KC_ERR); $SEEN"
        return 1
    fi
    if ! kcopy check $DEV $((_dst * LBS)) $((_n * LBS)) 41 $((_s * LBS)) >/tmp/kc.chk 2>&1; then
        if copies_failed $DEV; then
            kernel_bug success-after-failed-copy "$_what: the device failed the Copy ($COPIES_FAILED) yet the kernel reported it done ($(head -n1 /tmp/kc.out)) and the destination differs"
        else
            kernel_bug wrong-data "$_what: reported done ($(head -n1 /tmp/kc.out)) but the destination differs ($(head -n1 /tmp/kc.chk))"
        fi
        return 2
    fi
    echo "  $_what: done, data right ($(head -n1 /tmp/kc.out)); $SEEN"
    return 0
}
# dev_failed WHAT STATUS: on vnvme, the device failed the copy's Copy with STATUS (0x41bc...).
dev_failed() {
    [ -n "$CONTROL_TTY" ] || return 0
    case "$SEEN" in *"errors=$2x"*) ;; *) fail "$1: the device did not answer the Copy with $2 ($SEEN)" ;; esac
}
# offloaded WHAT N: on vnvme, the copy of N blocks reached the device as Copy commands only.
offloaded() {
    [ -n "$CONTROL_TTY" ] || return 0
    [ "$SEEN_COPIES" -gt 0 ] || fail "$1: the device received no Copy ($SEEN)"
    expect_eq "$1: writes the device received (a Copy is not emulated)" "$SEEN_WRITES" 0
    if [ -n "$BLOCKS_PER_COPY" ]; then
        per=$(eval_expr "$BLOCKS_PER_COPY")
        want=$((($2 + per - 1) / per))
        expect_eq "$1: Copy commands for $2 blocks at $per blocks each" "$SEEN_COPIES" "$want"
    fi
}

z=2
n=64
zcopy "64 blocks to empty zone $z at its write pointer" 0 $((z * zsze)) $n
case $? in
0) ;;
2) skip "the first copy already hit a known kernel bug (above; firmware-tests/kernels/$KERNEL_SERIES.known): the zoned cases need Copies that work${VNVME_ROUNDS:+ (scripts/test runs them again on vnvme with --ctrl $VNVME_ROUNDS)}" ;;
*) fail "a copy to an empty zone at its write pointer failed" ;;
esac
offloaded "64 blocks to zone $z" $n
expect_eq "zone $z write pointer" "$(zone $z wp)" $((z * zsze + n))
expect_eq "zone $z state" "$(zone $z state)" IMP_OPENED
n2=$((2 * MSSRL + 3))
[ $n2 -le 448 ] || n2=448
zcopy "$n2 blocks (more than MSSRL) at zone $z's write pointer after it" $n $((z * zsze + n)) $n2 ||
    fail "a copy of $n2 blocks at the write pointer of zone $z failed"
offloaded "$n2 blocks to zone $z" $n2
expect_eq "zone $z write pointer" "$(zone $z wp)" $((z * zsze + n + n2))

z=3
if zcopy "8 blocks to empty zone $z off its write pointer (8 blocks in)" 0 $((z * zsze + 8)) 8; then
    fail "a copy off the write pointer of zone $z succeeded"
fi
dev_failed "the copy off the write pointer" 0x41bc
st=$(zone $z state)
if [ "$st" != EMPTY ]; then
    known_deviation zoned-copy-opens-on-failure "a Copy that failed its zone checks left empty zone $z $st"
fi
expect_eq "zone $z write pointer" "$(zone $z wp)" $((z * zsze))

z=4
kcopy fill $DEV $((z * zsze * LBS)) $(((zcap - 8) * LBS)) 43 >/dev/null || fail "fill zone $z to 8 blocks short of its capacity"
if zcopy "16 blocks to zone $z at its write pointer, 8 past its capacity" 0 $((z * zsze + zcap - 8)) 16; then
    fail "a copy past the capacity of zone $z succeeded"
fi
dev_failed "the copy past the zone capacity" 0x41b8
expect_eq "zone $z write pointer" "$(zone $z wp)" $((z * zsze + zcap - 8))

z=5
blkzone finish --offset $((z * zsze * LBS / 512)) --count 1 $DEV 2>/tmp/bz.err || fail "blkzone finish zone $z: $(cat /tmp/bz.err)"
if zcopy "8 blocks into full zone $z" 0 $((z * zsze)) 8; then
    fail "a copy into the full zone $z succeeded"
fi
dev_failed "the copy into a full zone" 0x41b9
expect_eq "zone $z state" "$(zone $z state)" FULL

# A regular write at the write pointer a copy moved. The block layer's zone write plug of a
# partly written zone keeps its own write pointer; a copy that bypasses it leaves it behind.
z=6
kcopy fill $DEV $((z * zsze * LBS)) $((8 * LBS)) 44 >/dev/null || fail "write 8 blocks at zone $z's write pointer"
zcopy "8 blocks at zone $z's write pointer after a regular write" 0 $((z * zsze + 8)) 8 ||
    fail "a copy at the write pointer of zone $z (after a write) failed"
expect_eq "zone $z write pointer" "$(zone $z wp)" $((z * zsze + 16))
reset_seen
if kcopy fill $DEV $(((z * zsze + 16) * LBS)) $((8 * LBS)) 45 >/tmp/fill.out 2>&1; then
    echo "  a regular write at zone $z's write pointer after the copy: done"
    expect_eq "zone $z write pointer after the write" "$(zone $z wp)" $((z * zsze + 24))
else
    seen
    kernel_bug zoned-copy-stale-write-plug "a write of 8 blocks at zone $z's write pointer ($((z * zsze + 16)), after a Copy moved it from $((z * zsze + 8))) failed in the kernel: $(head -n1 /tmp/fill.out); ${SEEN:-no device counters}; the zone write plug's write pointer does not follow REQ_OP_COPY"
fi

trap - EXIT
blkzone reset $DEV 2>/tmp/bz.err || fail "blkzone reset at the end: $(cat /tmp/bz.err)"
