# CHECKS: OCFS advertises descriptor formats 2 and 3; Get Features 0x16 shows the CDFE the device comes up with (0, or --ctrl cdfe); formats 2 and 3 fail with Invalid Field (0x4002) while their CDFE bit is clear
. /tests/lib.sh
nvme_only
nvme id-ctrl /dev/nvme0 >/tmp/idc
ocfs=$(($(field ocfs </tmp/idc)))
[ $((ocfs & 4)) -ne 0 ] || fail "OCFS does not advertise format 2: ocfs=$ocfs"
[ $((ocfs & 8)) -ne 0 ] || fail "OCFS does not advertise format 3: ocfs=$ocfs"
cdfe=$(get_cdfe)
expect_eq "CDFE after the driver's reset (Get Features 0x16)" "$cdfe" "$CDFE"
echo "ocfs=$ocfs cdfe=$cdfe"
d1=$(dev_of 1) n1=$(ns_var 1 NSID)
if [ $((cdfe & 4)) = 0 ]; then
    copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=2 --snsids=$n1
fi
if [ $((cdfe & 8)) = 0 ]; then
    copy_expect_status 0x4002 $d1 --sdlba=3000 --slbs=0 --blocks=0 --format=3 --snsids=$n1
fi
[ $((cdfe & 12)) != 12 ] || echo "CDFE enables formats 2 and 3 from the start: 13-copy-format2-cdfe checks them"
