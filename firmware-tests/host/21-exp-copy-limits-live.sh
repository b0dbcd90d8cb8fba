# Host side of 21-exp-copy-limits-live: change the limits once the guest is up.
. "$(dirname "$0")/lib.sh"
ready
wait_console EXP-21-READY 240 || exit 1
ctl set-copy-limits nsid=1 mssrl=16 mcl=64 || exit 1
wait_console EXP-21-DONE 120 || exit 1
ctl query-namespaces || exit 1
m=$(last_reply | jq '.return.namespaces[0].mssrl')
[ "$m" = 16 ] || { verdict FAIL "query-namespaces mssrl=$m"; exit 1; }
# The guest's Get Log Page (Changed Namespace List) after the event, from the trace.
sleep 0.5
jq -c 'select(.qid==0 and .opcode_name=="get-log-page")' "$VNVME_TRACE" | tail -n 3
verdict OK "limits changed under the guest"
