# CHECKS: kernel copy offload without device Copy: with --ctrl copy=off (or the series' sysfs switch, copy_max_bytes=0) a copy through the kernel's interface still gives the right data and the device sees reads and writes, no Copy
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
ns_limits 1
q=/sys/block/${DEV#/dev/}/queue
switched=""
if [ "$COPY" = on ]; then
    old=$(cat $q/copy_max_bytes)
    if echo 0 >$q/copy_max_bytes 2>/dev/null && [ "$(cat $q/copy_max_bytes)" = 0 ]; then
        switched=yes
        echo "device has Copy; the series' switch: copy_max_bytes $old -> 0"
    else
        skip "the device has Copy and series ${KERNEL_SERIES:-?} has no writable queue/copy_max_bytes: the emulation path is tested with --ctrl copy=off"
    fi
else
    echo "device without Copy (--ctrl copy=off): copy_max_hw_bytes=$(cat $q/copy_max_hw_bytes 2>/dev/null) copy_max_bytes=$(cat $q/copy_max_bytes)"
fi
n=$((2 * MSSRL + 3))
[ $n -le 4096 ] || n=4096
copy_check "ns $NSID: $n blocks without offload" $DEV 100 $((NSBLOCKS / 2)) $n
rc=$?
[ -n "$switched" ] && echo "$old" >$q/copy_max_bytes
[ $rc = 1 ] && fail "the kernel's copy failed without offload: $KC_ERR"
if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
    ctl_json query-stats
    c=$(jq -r --arg ns "$NSID" '.return[$ns].opcodes.copy.commands // 0' /tmp/ctl.json)
    r=$(jq -r --arg ns "$NSID" '.return[$ns].opcodes.read.commands // 0' /tmp/ctl.json)
    w=$(jq -r --arg ns "$NSID" '.return[$ns].opcodes.write.commands // 0' /tmp/ctl.json)
    echo "the device saw: copy=$c read=$r write=$w"
    [ "$c" = 0 ] || kernel_bug copy-when-disabled "$c Copy commands reached the device although offload is off"
    [ "$r" -gt 0 ] && [ "$w" -gt 0 ] || fail "no reads and writes reached the device (read=$r write=$w)"
fi
