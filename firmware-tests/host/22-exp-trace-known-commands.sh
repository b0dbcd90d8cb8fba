# Host side of 22-exp-trace-known-commands: once the guest printed EXP-22-DONE, the trace
# records at LBAs 50000-50999 (and every Copy) are exactly the four nvme-cli commands.
. "$(dirname "$0")/lib.sh"
ready
wait_console EXP-22-DONE 240 || exit 1
want='[
 {"opcode_name":"write","slba":50000,"nlb":8,"status":"0x0000"},
 {"opcode_name":"read","slba":50100,"nlb":4,"status":"0x0000"},
 {"opcode_name":"copy","sdlba":50200,"format":0,"nr":1,"ranges":[{"nsid":1,"slba":50000,"nlb":4},{"nsid":1,"slba":50004,"nlb":2}],"status":"0x0000"},
 {"opcode_name":"copy","sdlba":50300,"format":0,"nr":0,"ranges":[{"nsid":1,"slba":50002,"nlb":1}],"status":"0x0000"}
]'
sel='select(.qid != 0 and (.opcode_name == "copy" or (.slba != null and .slba >= 50000 and .slba < 51000)))'
proj='{opcode_name, slba, nlb, sdlba, format, nr, ranges, status} | with_entries(select(.value != null))'
for _ in $(seq 1 50); do
    got=$(jq -c "$sel | $proj" "$VNVME_TRACE" | jq -s -c .)
    [ "$(echo "$got" | jq length)" -ge 4 ] && break
    sleep 0.1
done
echo "trace records of the guest's commands:"
jq -c "$sel" "$VNVME_TRACE"
if [ "$(echo "$want" | jq -c .)" = "$got" ]; then
    verdict OK "the trace holds exactly the 4 commands nvme-cli sent"
else
    verdict FAIL "want $(echo "$want" | jq -c .), got $got"
    exit 1
fi
