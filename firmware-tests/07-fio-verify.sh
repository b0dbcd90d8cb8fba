# CHECKS: fio verify, 2 jobs x iodepth 8 on separate regions, writes then verifies every block
. /tests/lib.sh
d=$(dev_of 1)
fio --name=verify --filename=$d --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
    --iodepth=8 --numjobs=2 --size=16M --offset_increment=64M --verify=crc32c \
    --do_verify=1 --verify_fatal=1 --group_reporting >/tmp/fio 2>&1
rc=$?
grep -E 'err=|WRITE:|READ:|verify' /tmp/fio | head -n 10
[ $rc -eq 0 ] || fail "fio exited $rc: $(grep -i -m1 'error\|bad' /tmp/fio)"
grep -q 'err= 0' /tmp/fio || fail "fio reported errors"
