# CHECKS: kernel copy offload data: copies through the kernel's interface (copy_file_range or BLKCPY) of one block, odd lengths, 1 MiB, 8 MiB, more than MCL, the last block of the namespace and overlapping ranges, on every namespace (512- and 4096-byte blocks); data verified byte for byte, the blocks around the destination untouched
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
errors=0 done_ok=0 known=0
note() { # WHAT: a copy the kernel refused is recorded (not a failure: it may fall back or refuse)
    errors=$((errors + 1))
}
i=1
while [ $i -le $NS_COUNT ]; do
    ns_limits $i
    echo "--- ns $NSID ($DEV): lbs=$LBS mssrl=$MSSRL mcl=$MCL msrc=$MSRC blocks=$NSBLOCKS"
    mib=$((1048576 / LBS))
    over_mcl=$((MCL + 3))
    half=$((NSBLOCKS / 2))
    big="MCL+3_blocks:$((32 * mib)):$((half + 32 * mib)):$over_mcl"
    if [ $((32 * mib + over_mcl)) -gt $half ]; then
        echo "ns $NSID: the copy of more than MCL blocks is not run here (MCL+3 = $over_mcl blocks does not fit in half the namespace)"
        big=""
    fi
    for c in one_block:0:$half:1 7_blocks:100:$((half + 100)):7 37_blocks:1000:$((half + 1000)):37 \
        1_MiB:$mib:$((half + mib)):$mib 8_MiB:$((16 * mib)):$((half + 16 * mib)):$((8 * mib)) \
        $big \
        last_block:5000:$((NSBLOCKS - 1)):1 to_block_0_from_the_last:$((NSBLOCKS - 1)):0:1 \
        overlap,_destination_1_block_after_the_source:3000:3001:64 \
        overlap,_destination_1_block_before_the_source:4001:4000:64; do
        what=$(echo "${c%%:*}" | tr _ ' ') rest=${c#*:}
        s=${rest%%:*} rest=${rest#*:}
        d=${rest%%:*} n=${rest#*:}
        copy_check "ns $NSID $what ($n blocks $s -> $d)" $DEV $s $d $n
        case $? in 0) done_ok=$((done_ok + 1)) ;; 1) note ;; 2) known=$((known + 1)) ;; esac
    done
    i=$((i + 1))
done
if [ "$IFACE" = blkcpy ]; then
    # Many sources to one destination (BLKCPY_VEC), on the first namespace.
    ns_limits 1
    vec_id=vec-wrong-data
    [ "$COPY" = off ] && vec_id=vec-wrong-data-emulated
    _seed=900
    list="" want_off=0 dst=$((NSBLOCKS / 2 + 40000))
    for r in 10:8 200:1 300:64 1000:33 5000:128 7000:2 9000:16 12000:5; do
        s=${r%%:*} n=${r#*:}
        _seed=$((_seed + 1))
        kcopy fill $DEV $((s * LBS)) $((n * LBS)) $_seed >/dev/null || fail "fill"
        list="$list,$((s * LBS)):$((n * LBS))"
    done
    timeout 120 kcopy blkcpy-vec $DEV $((dst * LBS)) "${list#,}" >/tmp/kc.out 2>&1
    rc=$?
    echo "ns $NSID 8 sources -> $dst (BLKCPY_VEC): $(head -n1 /tmp/kc.out)"
    if [ $rc = 0 ]; then
        _seed=900 off=$dst
        for r in 10:8 200:1 300:64 1000:33 5000:128 7000:2 9000:16 12000:5; do
            s=${r%%:*} n=${r#*:}
            _seed=$((_seed + 1))
            kcopy check $DEV $((off * LBS)) $((n * LBS)) $_seed $((s * LBS)) >/tmp/kc.chk 2>&1 ||
                kernel_bug "$vec_id" "BLKCPY_VEC reported done but source $s ($n blocks) at $off differs: $(cat /tmp/kc.chk)"
            off=$((off + n))
        done
        done_ok=$((done_ok + 1))
    elif [ $rc = 124 ]; then
        kernel_bug hang "BLKCPY_VEC did not finish within 120 s"
    else
        note
    fi
fi
echo "copies with the data right: $done_ok; refused by the kernel: $errors; wrong data (known kernel bugs): $known"
[ $done_ok -gt 0 ] || [ $known -gt 0 ] || fail "no copy went through the kernel's interface"
