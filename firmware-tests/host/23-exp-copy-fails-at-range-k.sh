# Host side of 23-exp-copy-fails-at-range-k: the fault before boot; the trace shows the
# failed Copy with Dword 0 = 2 (nvme-cli does not print Dword 0).
. "$(dirname "$0")/lib.sh"
ctl inject-fault opcode=copy copy_range=2 count=1 status=0x0281 || exit 1
ready
wait_console EXP-23-DONE 240 || exit 1
sleep 0.5
jq -c 'select(.opcode_name=="copy")' "$VNVME_TRACE"
got=$(jq -c 'select(.opcode_name=="copy") | [.status, .dw0, (.ranges | length)]' "$VNVME_TRACE")
[ "$got" = '["0x4281",2,4]' ] || { verdict FAIL "copy record [status, dw0, ranges]: $got"; exit 1; }
ctl query-stats || exit 1
verdict OK "the Copy failed at range 2 with Dword 0 = 2"
