# The guest-side runner: runs every /tests/[0-9]*.sh in order, each in its own shell,
# prints PASS/FAIL per test (with the reason a failing test printed), and ends with
# "N passed, N failed". Exit status 0 only when nothing failed.
passed=0
failed=0
failed_names=""
for t in /tests/[0-9]*.sh; do
    name=$(basename "$t" .sh)
    what=$(sed -n 's/^# CHECKS: //p' "$t" | head -n1)
    echo "=== $name: $what"
    start=$(cut -d' ' -f1 /proc/uptime)
    sh "$t" >/tmp/out.$name 2>&1
    rc=$?
    end=$(cut -d' ' -f1 /proc/uptime)
    sed 's/^/    /' /tmp/out.$name | tail -n 40
    grep '^KNOWN-DEVIATION ' /tmp/out.$name >>/tmp/deviations
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name ($(awk "BEGIN{print $end-$start}") s)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        echo "FAIL $name (exit $rc): $(sed -n 's/^FAIL-REASON: //p' /tmp/out.$name | tail -n1)"
    fi
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
[ -s /tmp/deviations ] && cat /tmp/deviations
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
