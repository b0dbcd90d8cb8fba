# CHECKS: random data written with O_DIRECT reads back identical at several offsets and sizes, including the last block
. /tests/lib.sh
# One pool of random data, sliced differently for every write, so that no check can
# pass on data left by an earlier one (urandom is slow under TCG).
dd if=/dev/urandom of=/tmp/pool bs=1M count=5 2>/dev/null
pool_off=0
check_rw() { # dev lbs offset_blocks count_blocks
    bytes=$(($2 * $4))
    pool_off=$(((pool_off + 4093 * 7) % 1048576))
    dd if=/tmp/pool of=/tmp/pat bs=$bytes count=1 skip=$pool_off iflag=skip_bytes 2>/dev/null
    dd if=/tmp/pat of="$1" bs=1M seek=$(($2 * $3)) oflag=direct,seek_bytes conv=notrunc 2>/dev/null ||
        fail "$1: write of $4 blocks at block $3 failed"
    dd if="$1" of=/tmp/back bs=1M skip=$(($2 * $3)) count=$bytes iflag=direct,skip_bytes,count_bytes 2>/dev/null ||
        fail "$1: read of $4 blocks at block $3 failed"
    cmp -s /tmp/pat /tmp/back || fail "$1: data read back at block $3 ($bytes bytes) differs from what was written"
    echo "$1: $bytes bytes at block $3 ok"
}
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i)
    lbs=$(ns_var $i LBS)
    last=$(($(ns_var $i BLOCKS) - 1))
    check_rw $d $lbs 0 1
    check_rw $d $lbs 7 3
    check_rw $d $lbs 1000 $((65536 / lbs))
    check_rw $d $lbs 4096 $((1048576 / lbs))   # larger than MDTS: several commands
    check_rw $d $lbs 12345 $((4194304 / lbs))  # 4 MiB, split by the kernel
    check_rw $d $lbs $last 1                   # the last block
    check_rw $d $lbs $((last - 15)) 16         # ending at the last block
    # A read past the end must fail, not wrap.
    if dd if=$d of=/dev/null bs=$lbs skip=$((last + 1)) count=1 iflag=direct 2>/dev/null &&
        [ "$(dd if=$d bs=$lbs skip=$((last + 1)) count=1 iflag=direct 2>/dev/null | wc -c)" != 0 ]; then
        fail "$d: a read past the last block returned data"
    fi
    i=$((i + 1))
done
