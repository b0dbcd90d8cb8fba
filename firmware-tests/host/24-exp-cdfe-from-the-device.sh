# Host side of 24-exp-cdfe-from-the-device: clear CDFE once the guest's first Copy worked;
# then the trace shows no Set Features 0x16 from the guest and the two Copies' statuses.
. "$(dirname "$0")/lib.sh"
ctl query-host-behavior || exit 1
[ "$(last_reply | jq -c .return)" = '{"cdfe":12,"reset_cdfe":12}' ] || { verdict FAIL "query-host-behavior at start: $(last_reply)"; exit 1; }
ready
wait_console EXP-24-READY 240 || exit 1
ctl set-host-behavior cdfe=0 || exit 1
[ "$(last_reply | jq -c .return)" = '{"cdfe":0}' ] || { verdict FAIL "set-host-behavior replied $(last_reply)"; exit 1; }
wait_console EXP-24-DONE 120 || exit 1
sleep 0.5
echo "the guest's Set Features (fid) and Copies:"
jq -c 'select(.opcode_name=="set-features" or .opcode_name=="copy") | {opcode_name, fid, format, ranges, status}' "$VNVME_TRACE"
hbs=$(jq -c 'select(.opcode_name=="set-features" and .fid==22)' "$VNVME_TRACE")
[ -z "$hbs" ] || { verdict FAIL "the guest sent Set Features 0x16: $hbs"; exit 1; }
[ -n "$(jq -c 'select(.opcode_name=="set-features" and .fid != null)' "$VNVME_TRACE")" ] || { verdict FAIL "no Set Features with a fid in the trace"; exit 1; }
got=$(jq -r 'select(.opcode_name=="copy") | "\(.format):\(.status)"' "$VNVME_TRACE" | tr '\n' ' ')
[ "$got" = "2:0x0000 2:0x4002 " ] || { verdict FAIL "copy format:status in the trace: $got"; exit 1; }
verdict OK "format 2 copied with CDFE from --ctrl, no Set Features 0x16 from the guest; 0x4002 after set-host-behavior cdfe=0"
