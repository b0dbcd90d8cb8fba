# CHECKS: kernel copy offload when the device's limits change under the running guest (set-copy-limits + Namespace Attribute Changed): the kernel's sysfs limits and its next Copies follow the new MSSRL/MCL/MSRC, or the test records that the series ignores the change; the data stays right either way
. /tests/lib.sh
. /tests/kcopy-lib.sh
kcopy_setup
[ "$COPY" = on ] || skip "the device has no Copy (--ctrl copy=off)"
[ -n "$CONTROL_TTY" ] || skip "$DEVICE cannot change its copy limits at run time (vnvme's set-copy-limits, scripts/guest-test --device vnvme)"
command -v jq >/dev/null 2>&1 || skip "no jq in the guest to read the device's counters"
ns_limits 1
q=/sys/block/${DEV#/dev/}/queue
before=$(for a in $q/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a); done)
new_mssrl=16 new_mcl=64 new_msrc=3
ctl_json set-copy-limits "{\"nsid\":$NSID,\"mssrl\":$new_mssrl,\"mcl\":$new_mcl,\"msrc\":$new_msrc}"
i=0
while [ $i -lt 100 ]; do
    now=$(for a in $q/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a); done)
    [ "$now" != "$before" ] && break
    sleep 0.1
    i=$((i + 1))
done
echo "ns $NSID limits $MSSRL/$MCL/$MSRC -> $new_mssrl/$new_mcl/$new_msrc; sysfs before: $before"
echo "sysfs after $((i / 10)).$((i % 10)) s: $now"
MSSRL=$new_mssrl MCL=$new_mcl MSRC=$new_msrc
followed=yes
if [ -n "$SYSFS" ]; then
    for kv in $SYSFS; do
        a=${kv%%=*}
        want=$(eval_expr "${kv#*=}")
        got=$(cat $q/$a 2>/dev/null)
        [ "$got" = "$want" ] || followed=no
    done
fi
[ "$now" = "$before" ] && followed=no
n=200
copy_check "ns $NSID: $n blocks after the change" $DEV 100 $((NSBLOCKS / 2)) $n
rc=$?
ctl_json query-stats
st=$(copy_stats $NSID)
echo "the device saw: $st"
if [ "$followed" = yes ]; then
    echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the kernel followed the new limits (sysfs within $((i / 10)).$((i % 10)) s)"
    [ "$(stat_of "$st" max_range)" -le $MSSRL ] || kernel_bug live-mssrl "sysfs follows MSSRL=$MSSRL but a Copy range had $(stat_of "$st" max_range) blocks"
    [ "$(stat_of "$st" max_command)" -le $MCL ] || kernel_bug live-mcl "sysfs follows MCL=$MCL but a Copy had $(stat_of "$st" max_command) blocks"
    [ "$(stat_of "$st" ranges_max)" -le $((MSRC + 1)) ] || kernel_bug live-msrc "a Copy had $(stat_of "$st" ranges_max) ranges, MSRC+1 is $((MSRC + 1))"
else
    echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the series ignores the change (sysfs unchanged after 10 s: $now); its next Copies: $st"
fi
[ $rc = 1 ] && echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the copy after the change returned an error to the caller: $KC_ERR"
# Back to the configured limits, for the tests after this one.
ns_limits 1
ctl_json set-copy-limits "{\"nsid\":$NSID,\"mssrl\":$MSSRL,\"mcl\":$MCL,\"msrc\":$MSRC}"
i=0
while [ $i -lt 100 ]; do
    [ "$(for a in $q/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a); done)" = "$before" ] && break
    sleep 0.1
    i=$((i + 1))
done
