# CHECKS: the controller and every configured namespace are visible to the kernel and nvme-cli
. /tests/lib.sh
[ -c /dev/nvme0 ] || fail "no /dev/nvme0 character device"
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i)
    [ -b "$d" ] || fail "no block device $d for namespace $(ns_var $i NSID)"
    nvme list | grep -q "^$d " || fail "nvme list does not show $d"
    i=$((i + 1))
done
count=$(ls /sys/class/nvme/nvme0/ | grep -c '^nvme0n[0-9]*$')
expect_eq "namespaces under /sys/class/nvme/nvme0" "$count" "$NS_COUNT"
nvme list
