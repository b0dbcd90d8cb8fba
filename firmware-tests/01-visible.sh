# CHECKS: every configured namespace is visible: NVMe: the controller, one block device per NSID, nvme list; virtio-blk: one disk per namespace with its size and logical block size, the features vnvme offers (VERSION_1 SEG_MAX BLK_SIZE FLUSH EVENT_IDX, DISCARD and WRITE_ZEROES when writable, MQ with its queue count, RO as configured) negotiated, and GET_ID answered
. /tests/lib.sh
if [ "$DISK" = virtio ]; then
    count=$(for b in /sys/block/vd*; do [ -e "$b" ] && echo "$b"; done | wc -l)
    expect_eq "virtio-blk disks under /sys/block" "$count" "$NS_COUNT"
    i=1
    while [ $i -le $NS_COUNT ]; do
        d=$(dev_of $i)
        b=/sys/block/${d#/dev/}
        [ -b "$d" ] || fail "no virtio-blk disk $d for namespace $(ns_var $i NSID)"
        lbs=$(ns_var $i LBS) blocks=$(ns_var $i BLOCKS)
        expect_eq "$d logical block size (sysfs)" "$(cat $b/queue/logical_block_size)" "$lbs"
        expect_eq "$d size in 512-byte sectors (sysfs)" "$(cat $b/size)" "$((blocks * lbs / 512))"
        missing=""
        # DISCARD and WRITE_ZEROES only on a writable namespace: vnvme does not offer them on
        # a read-only one (QEMU's virtio-blk does).
        want="VERSION_1:32 SEG_MAX:2 BLK_SIZE:6 FLUSH:9 EVENT_IDX:29"
        [ "$(ns_var $i RO)" = on ] || want="$want DISCARD:13 WRITE_ZEROES:14"
        for f in $want; do
            virtio_has $d ${f#*:} || missing="$missing ${f%:*}"
        done
        [ -z "$missing" ] || fail "$d: virtio features not negotiated:$missing (features $(cat $b/device/features))"
        if [ "${VIRTIO_QUEUES:-1}" -gt 1 ]; then
            virtio_has $d 12 || fail "$d: MQ not negotiated with $VIRTIO_QUEUES queues configured"
        fi
        # virtio_blk uses at most one queue per possible CPU (a kernel without SMP: one).
        cpus=$(awk -F- '{print ($2 == "" ? 1 : $2 - $1 + 1)}' /sys/devices/system/cpu/possible)
        wantq=${VIRTIO_QUEUES:-1}
        [ "$wantq" -le "$cpus" ] || wantq=$cpus
        expect_eq "$d hardware queues (/sys/block/*/mq; $VIRTIO_QUEUES configured, $cpus possible CPUs)" "$(ls $b/mq | wc -l)" "$wantq"
        if [ "$(ns_var $i RO)" = on ]; then
            virtio_has $d 5 || fail "$d: namespace is read-only but RO is not negotiated"
            expect_eq "$d ro (sysfs)" "$(cat $b/ro)" 1
        else
            virtio_has $d 5 && fail "$d: RO negotiated on a writable namespace"
            expect_eq "$d ro (sysfs)" "$(cat $b/ro)" 0
        fi
        # Reading serial sends GET_ID (VIRTIO_BLK_T_GET_ID); it fails if the device refuses it.
        serial=$(cat $b/serial 2>/tmp/serial.err) || fail "$d: GET_ID (reading $b/serial) failed: $(cat /tmp/serial.err)"
        echo "$d: namespace $(ns_var $i NSID), $blocks x $lbs bytes, $(ls $b/mq | wc -l) queues, write cache '$(cat $b/queue/write_cache)', GET_ID '$serial', features $(cat $b/device/features)"
        i=$((i + 1))
    done
    exit 0
fi
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
