# CHECKS: kernel copy offload when the device's limits change under the running guest (set-copy-limits + Namespace Attribute Changed): the kernel's sysfs limits and its next Copies follow the new MSSRL/MCL/MSRC, or the test records that the series ignores the change; the data stays right either way
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
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
sysfs_view=""
if [ -n "$SYSFS" ]; then
    for kv in $SYSFS; do
        a=${kv%%=*}
        want=$(eval_expr "${kv#*=}")
        got=$(cat $q/$a 2>/dev/null)
        if [ "$got" = "$want" ]; then
            sysfs_view="$sysfs_view $a follows ($got)"
        else
            sysfs_view="$sysfs_view $a does not ($got, the new limits give $want)"
        fi
    done
fi
n=200
copy_check "ns $NSID: $n blocks after the change" $DEV 100 $((NSBLOCKS / 2)) $n
rc=$?
ctl_json query-stats
st=$(copy_stats $NSID)
echo "the device saw: $st"
within=yes
[ "$(stat_of "$st" max_range)" -le $MSSRL ] || within=no
[ "$(stat_of "$st" max_command)" -le $MCL ] || within=no
[ "$(stat_of "$st" ranges_max)" -le $((MSRC + 1)) ] || within=no
if [ "$now" = "$before" ]; then
    view="sysfs unchanged after 10 s"
else
    view="sysfs changed within $((i / 10)).$((i % 10)) s:${sysfs_view:- $now}"
fi
if [ $within = yes ]; then
    echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the next Copies follow the new limits ($view)"
else
    echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the series ignores the change: its next Copies exceed the new limits ($st; $view)"
fi
[ $rc = 1 ] && echo "LIVE-LIMITS ${KERNEL_SERIES:-?}: the copy after the change returned $KC_OUTCOME"
# Back to the configured limits, for the tests after this one.
ns_limits 1
ctl_json set-copy-limits "{\"nsid\":$NSID,\"mssrl\":$MSSRL,\"mcl\":$MCL,\"msrc\":$MSRC}"
i=0
while [ $i -lt 100 ]; do
    [ "$(for a in $q/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a); done)" = "$before" ] && break
    sleep 0.1
    i=$((i + 1))
done
