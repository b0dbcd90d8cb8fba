# Host side of 20-exp-fault-third-copy: the fault before the guest boots; afterwards the
# fault's counters and the trace agree with what the guest saw.
. "$(dirname "$0")/lib.sh"
ctl inject-fault opcode=copy after=2 count=1 status=0x0281 || exit 1
ready
wait_console EXP-20-DONE 240 || exit 1
ctl query-faults || exit 1
inj=$(last_reply | jq '.return.faults[0].injected')
matched=$(last_reply | jq '.return.faults[0].matched')
[ "$inj" = 1 ] && [ "$matched" = 4 ] || { verdict FAIL "injected=$inj matched=$matched (want 1 and 4)"; exit 1; }
sleep 0.5
jq -c 'select(.opcode_name=="copy")' "$VNVME_TRACE"
got=$(jq -r 'select(.opcode_name=="copy") | .status' "$VNVME_TRACE" | tr '\n' ' ')
[ "$got" = "0x0000 0x0000 0x4281 0x0000 " ] || { verdict FAIL "copy statuses in the trace: $got"; exit 1; }
verdict OK "the third of 4 copies got 0x4281"
