# CHECKS: Identify Controller and Identify Namespace fields match the configuration
. /tests/lib.sh
nvme_only
nvme id-ctrl /dev/nvme0 >/tmp/idc || fail "nvme id-ctrl failed"
expect_eq "id-ctrl sn" "$(field sn </tmp/idc)" "$SERIAL"
expect_eq "id-ctrl mdts" "$(field mdts </tmp/idc)" "$MDTS"
expect_eq "id-ctrl sqes" "$(field sqes </tmp/idc)" "0x66"
expect_eq "id-ctrl cqes" "$(field cqes </tmp/idc)" "0x44"
nn=$(field nn </tmp/idc)
[ "$nn" -ge "$NS_COUNT" ] || fail "id-ctrl nn=$nn is less than $NS_COUNT namespaces"
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i)
    nvme id-ns "$d" >/tmp/idn || fail "nvme id-ns $d failed"
    blocks=$(ns_var $i BLOCKS)
    expect_eq "$d nsze" "$(($(field nsze </tmp/idn)))" "$blocks"
    expect_eq "$d ncap" "$(($(field ncap </tmp/idn)))" "$blocks"
    expect_eq "$d mssrl" "$(field mssrl </tmp/idn)" "$(ns_var $i MSSRL)"
    expect_eq "$d mcl" "$(field mcl </tmp/idn)" "$(ns_var $i MCL)"
    expect_eq "$d msrc" "$(field msrc </tmp/idn)" "$(ns_var $i MSRC)"
    lbs=$(ns_var $i LBS)
    expect_eq "$d logical block size (sysfs)" "$(cat /sys/block/${d#/dev/}/queue/logical_block_size)" "$lbs"
    expect_eq "$d size in 512-byte sectors (sysfs)" "$(cat /sys/block/${d#/dev/}/size)" "$((blocks * lbs / 512))"
    want_lbads=$([ "$lbs" = 4096 ] && echo 12 || echo 9)
    inuse=$(grep '(in use)' /tmp/idn | head -n1)
    echo "$d in use: $inuse"
    echo "$inuse" | grep -q "ms:0 *lbads:$want_lbads " || fail "$d: the LBA format in use is not ms:0 lbads:$want_lbads: $inuse"
    i=$((i + 1))
done
echo "sn=$SERIAL mdts=$MDTS nn=$nn"
