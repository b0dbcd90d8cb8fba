# Helpers sourced by the host side of the experiment tests (firmware-tests/host/*.sh),
# run by scripts/guest-run --host-script with:
#   VNVME_CONTROL  vnvme's --control socket     VNVME_TRACE  its --trace file
#   VNVME_CONSOLE  the guest's console log      VNVME_READY  touch it to let QEMU boot
#   VNVME_BIN      the vnvme binary (for `vnvme ctl`)
set -u

log() { echo "$(date +%T) $*"; }

# ctl COMMAND [KEY=VALUE...]: one control command; prints the reply; fails on an error.
ctl() {
    local out
    out=$("$VNVME_BIN" ctl --control "$VNVME_CONTROL" "$@") || {
        log "ctl $* failed: $out"
        return 1
    }
    log "ctl $*: $out"
    echo "$out" >"$_last"
}
# (next to $VNVME_READY: guest-run's work directory, removed after the run)
_last="$(dirname "$VNVME_READY")/host-last-reply.json"

# last_reply: the reply of the last ctl call.
last_reply() { cat "$_last"; }

# ready: the guest may boot now.
ready() { touch "$VNVME_READY"; }

# wait_console MARKER SECONDS: wait until the guest printed MARKER on its console.
wait_console() {
    local i=0
    while [ $i -lt $(($2 * 10)) ]; do
        grep -aq "$1" "$VNVME_CONSOLE" 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    log "no '$1' on the guest console after $2 s"
    return 1
}

# verdict OK|FAIL TEXT: the host side's result, in the guest-run log.
verdict() {
    log "HOST-VERDICT $1: $2"
    [ "$1" = OK ]
}
