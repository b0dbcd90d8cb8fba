# CHECKS: kernel copy offload through device mapper: a dm-linear target over a namespace (dmsetup) offers copy offload, and a copy through it reaches the device as Copy with the right data (series that stack copy through dm-linear)
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
[ "$COPY" = on ] || skip "the device has no Copy (--ctrl copy=off)"
command -v dmsetup >/dev/null 2>&1 || skip "no dmsetup in the guest"
ns_limits 1
sectors=$((NSBLOCKS * LBS / 512))
# The second half of the namespace, so dm block 0 is namespace block NSBLOCKS/2.
off=$((sectors / 2))
# No udev in the guest: dmsetup makes no /dev/mapper node; devtmpfs has /dev/dm-N.
export DM_DISABLE_UDEV=1
dmsetup create --noudevsync kcopylin --table "0 $((sectors / 2)) linear $DEV $off" >/tmp/dm.out 2>&1 || fail "dmsetup create: $(cat /tmp/dm.out)"
dm=""
for b in /sys/block/dm-*; do
    [ "$(cat $b/dm/name 2>/dev/null)" = kcopylin ] && dm=/dev/${b##*/}
done
[ -n "$dm" ] && [ -b "$dm" ] || { dmsetup remove --noudevsync kcopylin; fail "no block device for the dm-linear target kcopylin"; }
q=/sys/block/${dm#/dev/}/queue
limits=$(for a in $q/*copy*; do printf '%s=%s ' ${a##*/} $(cat $a 2>/dev/null); done)
echo "dm-linear $dm over $DEV (sectors $off..$((off + sectors / 2 - 1))): $limits"
cmb=$(cat $q/copy_max_bytes 2>/dev/null || echo 0)
if [ "$cmb" = 0 ]; then
    dmsetup remove --noudevsync kcopylin
    [ "$DM_LINEAR" = yes ] && kernel_bug dm-no-offload "series ${KERNEL_SERIES:-?} should stack copy offload through dm-linear but $dm has copy_max_bytes=0"
    skip "series ${KERNEL_SERIES:-?} does not stack copy offload through dm-linear ($dm: copy_max_bytes=0)"
fi
NSBLOCKS=$((NSBLOCKS / 2))
copy_check "dm-linear $dm: 64 blocks" $dm 10 2000 64
rc=$?
if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
    ctl_json query-stats
    st=$(copy_stats $NSID)
    echo "the device saw (ns $NSID): $st"
    [ "$(stat_of "$st" commands)" -gt 0 ] || { dmsetup remove --noudevsync kcopylin; fail "the copy through dm-linear reached the device as no Copy"; }
fi
dmsetup remove --noudevsync kcopylin || fail "dmsetup remove failed"
[ $rc != 1 ] || fail "the copy through dm-linear failed: $KC_ERR"
