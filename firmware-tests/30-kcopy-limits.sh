# CHECKS: kernel copy offload: the kernel's sysfs copy limits of every namespace against the device's MSSRL, MCL, MSRC and LBA size, as the series is expected to derive them (firmware-tests/kernels/<series>.expect); 0 with --ctrl copy=off
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
i=1 bad=""
while [ $i -le $NS_COUNT ]; do
    ns_limits $i
    line="ns $NSID ($DEV): lbs=$LBS mssrl=$MSSRL mcl=$MCL msrc=$MSRC ->"
    for a in /sys/block/${DEV#/dev/}/queue/*copy*; do
        line="$line ${a##*/}=$(cat "$a")"
    done
    echo "$line"
    if [ "$COPY" = off ]; then
        for a in copy_max_hw_bytes copy_max_bytes; do
            v=$(sysfs_q $DEV $a)
            [ "$v" = absent ] || [ "$v" = 0 ] || bad="$bad; ns $NSID: $a=$v although the device has no Copy (copy=off)"
        done
    elif [ -n "$SYSFS" ]; then
        for kv in $SYSFS; do
            a=${kv%%=*}
            want=$(eval_expr "${kv#*=}")
            got=$(sysfs_q $DEV $a)
            [ "$got" = "$want" ] || bad="$bad; ns $NSID: $a=$got, the series should derive ${kv#*=}=$want"
        done
    fi
    i=$((i + 1))
done
[ "$COPY" = off ] || [ -n "$SYSFS" ] ||
    skip "no expectations for series ${KERNEL_SERIES:-?} (add firmware-tests/kernels/$KERNEL_SERIES.expect): the values above are recorded, not checked"
[ -z "$bad" ] || fail "${bad#; }"
