# CHECKS: Flush completes successfully on every namespace, after a write
. /tests/lib.sh
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i)
    dd if=/dev/urandom of=$d bs=4096 count=4 oflag=direct conv=notrunc 2>/dev/null || fail "$d: write failed"
    nvme flush $d >/tmp/fl 2>&1 || fail "$d: nvme flush failed: $(cat /tmp/fl)"
    echo "$d: $(cat /tmp/fl)"
    i=$((i + 1))
done
