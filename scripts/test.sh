#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, starts a private PostgreSQL,
# runs every test against it, and stops it again (also on failure).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building"
# Errors only: a passing `make test` shows the test names and the totals, not the package
# resolution (a fresh clone fetches every dependency from the mirror) or the compiler's progress.
if ! resolved="$(swift package resolve 2>&1)"; then
    printf '%s\n' "$resolved" >&2
    exit 1
fi
swift build --build-tests --quiet
export MEDIANEST_WORKER_BIN="$(swift_bin_path)/medianest-worker"
export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"
pg_start
log "testing"
output="$PG_DIR/swift-test.log"
status=0
# The whole log goes to $output (the crash report below needs every "started" line); the screen
# gets the test names, failures with their details, and anything else the tests print (which a
# passing test should not: see TestLogging in Sources/MediaNestTestSupport). The suite is Swift
# Testing only, so XCTest's empty run is not started.
#
# At most 16 tests run at once. Left to itself the runner starts all ~620 at the first moment,
# and most bodies make blocking libpq or decoder calls on the cooperative pool's threads (two on
# this machine). A test that then suspends (every `waitUntil` look, every `await`) resumes only
# behind all the bodies queued before it: the queue tests' 50 ms sleeps came back after up to
# 66 s in an unloaded run, so a test's 10-30 s waits and 1-2 minute time limits measured the
# queue, not the test. With 16 their longest gap was 0.6 s, and the run took 149 s against 136 s.
swift test --skip-build --disable-xctest --experimental-maximum-parallelization-width 16 "$@" 2>&1 | tee "$output" \
    | { grep --line-buffered -v -E '^◇ |^↳ (Testing Library Version|Target Platform): |^\[0/1] Planning build$' || true; } || status=$?
# One plain closing line with the totals, whatever the runner printed above it.
passed=$(grep -E '^✔ Test .* passed after' "$output" | grep -vc 'Test run with' || true)
failed=$(grep -E '^✘ Test .* failed after' "$output" | grep -vc 'Test run with' || true)
skipped=$(grep -cE '^➜ Test .* skipped' "$output" || true)
# Lines of tests running in parallel can share a line with log output, so counting ✔ lines
# undercounts; Swift Testing's own closing line ("Test run with N tests in M suites …") has the
# total, and passed is what is left of it.
total=$(grep -oE 'Test run with [0-9]+ tests? in' "$output" | tail -1 | grep -oE '[0-9]+' || true)
if [[ -n "$total" ]]; then passed=$((total - failed - skipped)); fi
# A test that crashes the test binary (a trap, a fatalError, a signal) takes every result after it
# with it, and the runner's own summary never comes. Say so plainly, and name the tests that
# started but never finished: the crash happened in one of them.
if [[ $status -ne 0 ]]; then
    python3 - "$output" "$status" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
status = int(sys.argv[2])
started, ended = [], set()
for line in text.splitlines():
    m = re.match(r"^◇ Test (.+?) started\.$", line)
    if m and m.group(1) != "run":
        started.append(m.group(1))
        continue
    m = re.match(r"^(?:✔|✘|➜) Test (.+?) (?:passed|failed|skipped)\b", line)
    if m:
        ended.add(m.group(1))
summary = re.search(r"^(?:✔|✘) Test run with \d+ tests?", text, re.M)
signal = re.search(r"(Fatal error[^\n]*|[Ee]xited with (?:unexpected )?signal[^\n]*|Segmentation fault[^\n]*|Illegal instruction[^\n]*|Trace/breakpoint trap[^\n]*)", text)
if summary and not signal:
    sys.exit(0)
running = [name for name in started if name not in ended]
print()
print("THE TEST BINARY CRASHED" + (f": {signal.group(1).strip()}" if signal else f" (exit status {status}, no summary from the test runner)"))
if running:
    print(("It was running: " if len(running) == 1 else "One of these tests, running at the time, crashed it: ") + "; ".join(dict.fromkeys(running)))
else:
    print("No test was running at the time (it crashed before, between or after the tests).")
print("Results after the crash are missing; the totals below count only what finished.")
PY
fi
echo
echo "$passed passed, $failed failed, $skipped skipped"
if [[ $status -eq 0 && $failed -ne 0 ]]; then status=1; fi
exit "$status"
