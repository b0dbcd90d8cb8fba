# The guest side of scripts/guest-sweep: runs the points of /tests/sweep.conf in order,
# one line per point on the console:
#   SWEEP-RESULT {"point":K,"repeat":R,"ok":true|false,"error":"...","bytes":N,"time_us":N,
#                 "verified":true|false,"interface":"...","sysfs":"..."}
# and SWEEP-DONE at the end. Between points (live mode) it changes the namespace's copy
# limits with the control socket's set-copy-limits and waits until the kernel's sysfs
# limits change; it marks each point's start and end in the device's trace (trace-mark),
# from which the host counts what the device received. A failed point is recorded and
# the sweep goes on.
. /tests/lib.sh
. /tests/kcopy-lib.sh
. /tests/sweep.conf
[ -n "$CONTROL_TTY" ] || { echo "SWEEP-FATAL: no control channel to vnvme (guest-run --guest-control)"; exit 1; }
command -v kcopy >/dev/null 2>&1 || { echo "SWEEP-FATAL: no kcopy helper (a copy-offload kernel's helpers)"; exit 1; }
# kcopy_setup exits (skip) when the kernel has no copy offload: try it in a subshell first.
(kcopy_setup) >/tmp/setup.out 2>&1 || { echo "SWEEP-FATAL: $(grep -E 'SKIP-REASON|FAIL-REASON' /tmp/setup.out | head -n1)"; exit 1; }
kcopy_setup >/dev/null 2>&1
echo "sweep: $(cat /tmp/setup.out)"

# json_str TEXT: TEXT as a JSON string.
json_str() {
    printf '%s' "$1" | jq -R -s .
}

# copy_sysfs DEV: the kernel's copy attributes, "name=value ...".
copy_sysfs() {
    for _a in /sys/block/${1#/dev/}/queue/*copy*; do
        [ -e "$_a" ] && printf '%s=%s ' "${_a##*/}" "$(cat "$_a")"
    done | sed 's/ $//'
}

# sysfs_wanted: the SYSFS expectations of the series for the current limits, or "".
sysfs_wanted() {
    [ -n "$SYSFS" ] || return 0
    for _kv in $SYSFS; do
        printf '%s=%s ' "${_kv%%=*}" "$(eval_expr "${_kv#*=}")"
    done | sed 's/ $//'
}

# sysfs_has WANT: every name=value of WANT is in the device's sysfs now.
sysfs_has() {
    _now=" $(copy_sysfs $DEV) "
    for _kv in $1; do
        case "$_now" in *" $_kv "*) ;; *) return 1 ;; esac
    done
}

# sweep_mark start|end: the point's mark in the device's trace. The builtin workloads put
# them around the copy alone (the fill before, the check after), so the reads and writes
# counted for a point are the kernel's own (emulation); a FILE workload runs between them.
sweep_mark() {
    host_ctl trace-mark "{\"label\":\"point $POINT repeat $REPEAT $1\"}" >/dev/null
}

# The workloads. Each sets W_BYTES, W_TIME_US, W_VERIFIED, W_IFACE, W_ERR; status 0 ok.
# Source at block 0 of the namespace, destination at its middle.
workload_copy() { # IFACE MIB
    _iface=$1 _len=$(($2 * 1048576))
    W_IFACE=$_iface W_BYTES=$_len W_TIME_US="" W_VERIFIED=false W_ERR=""
    _dst=$((NSBLOCKS / 2 * LBS))
    [ $_len -le $_dst ] || { W_ERR="$2 MiB does not fit in half of namespace $NSID"; return 1; }
    _seed=$((POINT * 100 + REPEAT))
    kcopy fill $DEV 0 $_len $_seed >/dev/null || { W_ERR="fill failed"; return 1; }
    sweep_mark start
    if [ "$_iface" = blkcpy ]; then
        timeout 300 kcopy blkcpy $DEV $_dst 0 $_len >/tmp/kc.out 2>&1
    else
        timeout 300 kcopy cfr $DEV 0 $_dst $_len >/tmp/kc.out 2>&1
    fi
    _rc=$?
    sweep_mark end
    W_TIME_US=$(sed -n 's/.* time_us \([0-9]*\).*/\1/p' /tmp/kc.out | head -n1)
    if [ $_rc != 0 ]; then
        W_ERR="$(head -n1 /tmp/kc.out)"
        [ $_rc = 124 ] && W_ERR="the copy did not finish within 300 s"
        return 1
    fi
    if kcopy check $DEV $_dst $_len $_seed 0 >/tmp/kc.chk 2>&1; then
        W_VERIFIED=true
    else
        W_ERR="reported done but the destination differs: $(head -n1 /tmp/kc.chk)"
        return 1
    fi
}

workload_vec() { # COUNT: COUNT sources of 8 blocks, 64 blocks apart, to one destination
    _n=$1
    W_IFACE=blkcpy-vec W_BYTES=$((_n * 8 * LBS)) W_TIME_US="" W_VERIFIED=false W_ERR=""
    _dst=$((NSBLOCKS / 2))
    [ $((_n * 64)) -le $_dst ] || { W_ERR="$_n sources do not fit in half of namespace $NSID"; return 1; }
    _list="" _k=0
    while [ $_k -lt $_n ]; do
        kcopy fill $DEV $((_k * 64 * LBS)) $((8 * LBS)) $((POINT * 1000 + _k)) >/dev/null || { W_ERR="fill failed"; return 1; }
        _list="$_list,$((_k * 64 * LBS)):$((8 * LBS))"
        _k=$((_k + 1))
    done
    sweep_mark start
    timeout 300 kcopy blkcpy-vec $DEV $((_dst * LBS)) "${_list#,}" >/tmp/kc.out 2>&1
    _rc=$?
    sweep_mark end
    W_TIME_US=$(sed -n 's/.* time_us \([0-9]*\).*/\1/p' /tmp/kc.out | head -n1)
    if [ $_rc != 0 ]; then
        W_ERR="$(head -n1 /tmp/kc.out)"
        return 1
    fi
    _k=0
    while [ $_k -lt $_n ]; do
        kcopy check $DEV $(((_dst + _k * 8) * LBS)) $((8 * LBS)) $((POINT * 1000 + _k)) $((_k * 64 * LBS)) >/tmp/kc.chk 2>&1 ||
            { W_ERR="reported done but source $_k differs at the destination: $(head -n1 /tmp/kc.chk)"; return 1; }
        _k=$((_k + 1))
    done
    W_VERIFIED=true
}

workload_file() {
    W_IFACE=file W_BYTES="" W_TIME_US="" W_VERIFIED=false W_ERR=""
    sweep_mark start
    (
        export DEV NSID LBS MSSRL MCL MSRC NSBLOCKS POINT REPEAT IFACE
        . /tests/sweep-workload.sh
    ) >/tmp/w.out 2>&1
    _rc=$?
    sweep_mark end
    sed 's/^/  workload: /' /tmp/w.out | head -n 20
    W_BYTES=$(sed -n 's/^SWEEP-BYTES=\([0-9]*\)$/\1/p' /tmp/w.out | tail -n1)
    W_TIME_US=$(sed -n 's/^SWEEP-TIME-US=\([0-9]*\)$/\1/p' /tmp/w.out | tail -n1)
    grep -q '^SWEEP-VERIFIED=yes$' /tmp/w.out && W_VERIFIED=true
    if [ $_rc != 0 ]; then
        W_ERR="the workload exited $_rc: $(grep -v '^SWEEP-' /tmp/w.out | tail -n1)"
        return 1
    fi
}

run_workload() {
    case "$SWEEP_WORKLOAD" in
    cfr-*M)
        _m=${SWEEP_WORKLOAD#cfr-}
        # copy_file_range, or BLKCPY where the series offers no copy_file_range offload.
        if [ "$IFACE" = blkcpy ]; then workload_copy blkcpy ${_m%M}; else workload_copy cfr ${_m%M}; fi ;;
    blkcpy-vec-*) workload_vec ${SWEEP_WORKLOAD#blkcpy-vec-} ;;
    blkcpy-*M) _m=${SWEEP_WORKLOAD#blkcpy-}; workload_copy blkcpy ${_m%M} ;;
    file) workload_file ;;
    *) W_ERR="unknown workload $SWEEP_WORKLOAD"; return 1 ;;
    esac
}

for POINT in $SWEEP_POINTS; do
    eval "set -- \$P$POINT"
    # P<k>="nsindex mssrl mcl msrc repeats"
    nsi=$1 p_mssrl=$2 p_mcl=$3 p_msrc=$4 repeats=$5
    ns_limits $nsi
    MSSRL=$p_mssrl MCL=$p_mcl MSRC=$p_msrc
    sysfs_err=""
    eval "last=\${LAST_$nsi:-\$(ns_var $nsi MSSRL) \$(ns_var $nsi MCL) \$(ns_var $nsi MSRC)}"
    if [ "$SWEEP_LIVE" = 1 ] && [ "$last" != "$MSSRL $MCL $MSRC" ]; then
        before=$(copy_sysfs $DEV)
        host_ctl set-copy-limits "{\"nsid\":$NSID,\"mssrl\":$MSSRL,\"mcl\":$MCL,\"msrc\":$MSRC}" >/tmp/ctl.out ||
            sysfs_err="set-copy-limits failed: $(cat /tmp/ctl.out)"
        [ -n "$sysfs_err" ] || eval "LAST_$nsi=\"\$MSSRL \$MCL \$MSRC\""
        want=$(sysfs_wanted)
        i=0
        while [ -z "$sysfs_err" ] && [ $i -lt 100 ]; do
            if [ -n "$want" ]; then
                sysfs_has "$want" && break
            else
                # No expectations for this series: any change.
                [ "$(copy_sysfs $DEV)" != "$before" ] && break
            fi
            sleep 0.1
            i=$((i + 1))
        done
        if [ -z "$sysfs_err" ] && [ $i -ge 100 ]; then
            sysfs_err="the kernel's sysfs limits did not follow within 10 s (want ${want:-a change}, have $(copy_sysfs $DEV))"
        fi
        [ -n "$sysfs_err" ] || echo "sweep: point $POINT: ns $NSID limits $last -> $MSSRL $MCL $MSRC; sysfs $(copy_sysfs $DEV) after $((i / 10)).$((i % 10)) s"
    fi
    REPEAT=1
    while [ $REPEAT -le $repeats ]; do
        W_BYTES="" W_TIME_US="" W_VERIFIED=false W_IFACE="" W_ERR="$sysfs_err"
        ok=false
        if [ -z "$sysfs_err" ] && run_workload; then ok=true; fi
        echo "SWEEP-RESULT {\"point\":$POINT,\"repeat\":$REPEAT,\"nsid\":$NSID,\"ok\":$ok,\"error\":$(json_str "$W_ERR"),\"bytes\":${W_BYTES:-null},\"time_us\":${W_TIME_US:-null},\"verified\":$W_VERIFIED,\"interface\":$(json_str "$W_IFACE"),\"sysfs\":$(json_str "$(copy_sysfs $DEV)")}"
        REPEAT=$((REPEAT + 1))
    done
done
echo "SWEEP-DONE"
