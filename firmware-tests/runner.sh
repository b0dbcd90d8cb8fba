# The guest-side runner: runs every /tests/[0-9]*.sh in order, each in its own shell, its
# output shown as it comes (indented), then PASS/FAIL/SKIP with the reason a failing or
# skipped test printed; ends with "N passed, N failed, N skipped". A test skips by exiting
# 77 after a "SKIP-REASON: ..." line (lib.sh skip); exit 77 without a reason is a failure.
# A test still running after $TEST_TIMEOUT seconds (default 180) is killed and fails as a
# hang, and the runner goes on. Exit status 0 only when nothing failed.
passed=0
failed=0
skipped=0
failed_names=""
limit=${TEST_TIMEOUT:-180}
# kill_tree PID: PID and every process below it (no pkill in busybox here).
kill_tree() {
    for _s in /proc/[0-9]*/stat; do
        _p=${_s#/proc/}
        _p=${_p%/stat}
        [ "$(cut -d' ' -f4 "$_s" 2>/dev/null)" = "$1" ] && kill_tree "$_p"
    done
    kill -9 "$1" 2>/dev/null
}
echo "guest kernel: $(uname -r)"
for t in /tests/[0-9]*.sh; do
    name=$(basename "$t" .sh)
    what=$(sed -n 's/^# CHECKS: //p' "$t" | head -n1)
    echo "=== $name: $what"
    start=$(cut -d' ' -f1 /proc/uptime)
    rm -f /tmp/rc.$name
    ( sh "$t" >/tmp/out.$name 2>&1; echo $? >/tmp/rc.$name ) &
    pid=$!
    # The test's output, shown as it comes (every 0.5 s) and, once it ended, all of the rest.
    shown=0
    show_new() {
        _n=$(wc -l </tmp/out.$name 2>/dev/null || echo 0)
        if [ "$_n" -gt "$shown" ]; then
            sed -n "$((shown + 1)),${_n}p" /tmp/out.$name | sed 's/^/    /'
            shown=$_n
        fi
    }
    waited=0
    while [ ! -f /tmp/rc.$name ] && [ $waited -lt $((limit * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
        [ $((waited % 5)) = 0 ] && show_new
    done
    [ -f /tmp/rc.$name ] || kill_tree $pid
    sed -n "$((shown + 1)),\$p" /tmp/out.$name | sed 's/^/    /'
    if [ -f /tmp/rc.$name ]; then
        rc=$(cat /tmp/rc.$name)
    else
        echo "FAIL-REASON: no result within $limit s: the test hung (last output above)" >>/tmp/out.$name
        rc=124
    fi
    end=$(cut -d' ' -f1 /proc/uptime)
    grep '^KNOWN-DEVIATION ' /tmp/out.$name >>/tmp/deviations
    grep '^KNOWN-KERNEL-BUG ' /tmp/out.$name >>/tmp/kernel-bugs
    reason=$(sed -n 's/^SKIP-REASON: //p' /tmp/out.$name | tail -n1)
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name ($(awk "BEGIN{print $end-$start}") s)"
    elif [ "$rc" = 77 ] && [ -n "$reason" ]; then
        skipped=$((skipped + 1))
        echo "SKIP $name: $reason"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        why=$(sed -n 's/^FAIL-REASON: //p' /tmp/out.$name | tail -n1)
        [ "$rc" = 77 ] && [ -z "$why" ] && why="exit 77 (skip) without a SKIP-REASON line"
        echo "FAIL $name (exit $rc): $why"
    fi
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
[ -s /tmp/deviations ] && cat /tmp/deviations
if [ -s /tmp/kernel-bugs ]; then
    # Once per bug id, with how often it was seen and its first occurrence.
    cut -d' ' -f2,3 /tmp/kernel-bugs | sort | uniq -c | while read -r n sid; do
        first=$(grep -m1 -F "KNOWN-KERNEL-BUG $sid " /tmp/kernel-bugs)
        echo "$first [seen $n times]"
    done
    echo "known kernel bugs seen: $(cut -d' ' -f2,3 /tmp/kernel-bugs | sort -u | wc -l) ($(wc -l </tmp/kernel-bugs) times)"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
