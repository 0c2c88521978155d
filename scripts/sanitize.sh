#!/usr/bin/env bash
# `make sanitize`: the test suite under the sanitizers, against a private PostgreSQL.
#
#   address  the whole suite under AddressSanitizer (with LeakSanitizer), scratch path .build-asan
#   thread   the runtime, queue and pool tests under ThreadSanitizer, scratch path .build-tsan
#
# Each run builds the tests and the executables with the sanitizer, so the worker processes the
# tests start (MEDIANEST_WORKER_BIN and medianest-testworker beside it) are instrumented too.
# Every process writes its reports to a file of its own under <scratch>/sanitizer-reports
# (log_path), so a report from a child worker is counted even though the test only keeps that
# child's stderr in a temporary file. The summary counts the reports, prints them, and the
# script exits non-zero on any report, any failed test or a crashed test binary.
#
#   make sanitize                        both runs
#   make sanitize SANITIZE_RUNS=thread   one of them (address, thread)
#   make sanitize SANITIZE_FILTER=X      only tests matching X (one swift test --filter X), both runs
#
# Logs: <scratch>/sanitize-build.log, <scratch>/sanitize-test.log, <scratch>/sanitizer-reports/.
# Both runs take long on a small machine (on 2 shared cores, about 12 min for ThreadSanitizer
# after a 30 min build): they are not part of `make test`.
#
# The suppressions (scripts/sanitizers/*.supp) name, per entry, the library that makes the
# report unavoidable; the project's own code is never suppressed.
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages

RUNS=(${SANITIZE_RUNS:-address thread})
SUPPRESSIONS="$REPO_ROOT/scripts/sanitizers"

# Each run is one `swift test` per group below, one after the other, each in a process of its
# own. The suites within a group still run in parallel, as in `make test`; the groups are apart
# because in one process the media suites' fixture generation (a once-per-process initialiser
# that runs ffmpeg dozens of times) holds the two threads of Swift's cooperative pool on this
# 2-core machine for as long as it runs, several times longer under a sanitizer, and the
# time-limited runtime suites waiting behind it then fail on their time limits, not on a fault.
#
# A group is a --filter regular expression, optionally followed by "!" and a --skip one.
#
# The runtime suites: in process or in worker processes, with synthetic and real handlers.
RUNTIME_SUITES='MediaNestWorkerTests\.(JobPoolTests|ListenerTests|WriteBacklogTests|ResultWriteTests|WorkerProcessTests|WorkerLogFormatTests|ConnectionBudgetTests|EnvironmentFaultTests|MaintenanceServiceTests|PostgresRestartTests|MetricsProcessTests|SchedulerTests|SchedulerUnitTests|JobExecutorTests|JobExecutorUnitTests|MemoryReclaimerTests|MemoryBudgetTests|MemoryBudgetProcessTests|StatusWatchTests|RunExecutorTests)/'
END_TO_END_SUITES='MediaNestWorkerTests\.(BytesReadMetricsTests|MetadataEndToEndTests|StillEndToEndTests|TranscodeEndToEndTests)/'
# AddressSanitizer: every test target, the worker's runtime suites apart from its media ones.
ASAN_GROUPS=()
for target in Tests/*Tests; do
    target="$(basename "$target")"
    [[ "$target" == MediaNestWorkerTests ]] && continue
    ASAN_GROUPS+=("$target\\.")
done
ASAN_GROUPS+=("$RUNTIME_SUITES" "MediaNestWorkerTests\\.!$RUNTIME_SUITES")
# ThreadSanitizer: the runtime, queue and pool tests: the queue's SQL under concurrent
# connections, the suites that drive the runtime's threads (claim loop, pool, writer,
# heartbeat, listener, maintenance), and the worker end to end with real handlers.
TSAN_GROUPS=('MediaNestQueueTests\.' "$RUNTIME_SUITES" "$END_TO_END_SUITES")

export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"
pg_start

RESULTS="$(mktemp /tmp/medianest-sanitize.XXXXXX)"
trap 'pg_stop; rm -f "$RESULTS"' EXIT

run_one() {
    local kind="$1" name scratch groups=() group
    case "$kind" in
        address) name="AddressSanitizer"; scratch=".build-asan"; groups=("${ASAN_GROUPS[@]}") ;;
        thread)  name="ThreadSanitizer";  scratch=".build-tsan"; groups=("${TSAN_GROUPS[@]}") ;;
        *) echo "unknown sanitizer '$kind' (address or thread)" >&2; exit 2 ;;
    esac
    [[ -n "${SANITIZE_FILTER:-}" ]] && groups=("$SANITIZE_FILTER")
    local reports="$REPO_ROOT/$scratch/sanitizer-reports" output="$REPO_ROOT/$scratch/sanitize-test.log"
    local started=$SECONDS status=0
    log "$name: building the tests and the executables ($scratch)"
    # The linker warns hundreds of times about the sanitizer's own symbols: keep the output in
    # a file and show its end only when the build fails.
    mkdir -p "$scratch"
    swift build --build-tests --sanitize="$kind" --scratch-path "$scratch" >"$scratch/sanitize-build.log" 2>&1 \
        || { tail -40 "$scratch/sanitize-build.log" >&2; echo "$name: the build failed (log: $scratch/sanitize-build.log)" >&2; exit 1; }
    export MEDIANEST_WORKER_BIN="$(swift build --sanitize="$kind" --scratch-path "$scratch" --show-bin-path)/medianest-worker"
    rm -rf "$reports"
    mkdir -p "$reports"
    local tested=$SECONDS
    : >"$output"
    for group in "${groups[@]}"; do
        local selection=(--filter "${group%%!*}")
        [[ "$group" == *!* ]] && selection+=(--skip "${group#*!}")
        log "$name: testing ${selection[*]}"
        # halt_on_error stays at its default for ASan (a memory error stops the process: what
        # follows it is undefined); TSan goes on after a race so one run finds them all.
        # MEDIANEST_SANITIZER tells the tests that a child's memory is the sanitizer's too (the
        # hostile-file suite then reports peak RSS without holding it to its limit).
        MEDIANEST_SANITIZER="$kind" \
        ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1" \
        LSAN_OPTIONS="suppressions=$SUPPRESSIONS/lsan.supp:print_suppressions=0" \
        TSAN_OPTIONS="log_path=$reports/tsan:suppressions=$SUPPRESSIONS/tsan.supp:print_suppressions=0:second_deadlock_stack=1:halt_on_error=0" \
            swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" "${selection[@]}" 2>&1 | tee -a "$output" || status=$?
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$output" "$reports" "$status" "$((SECONDS - started))" "$((SECONDS - tested))" "${#groups[@]}" >>"$RESULTS"
}

for kind in "${RUNS[@]}"; do run_one "$kind"; done

echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); $(swift --version 2>/dev/null | head -1 | sed 's/.*Swift version \([^ ]*\).*/Swift \1/')"
python3 - "$RESULTS" <<'PY'
import glob, os, re, sys

# What counts as a finding: the first line of every sanitizer report.
PATTERNS = {
    "ERROR: AddressSanitizer": re.compile(r"^==\d+==ERROR: AddressSanitizer", re.M),
    "ERROR: LeakSanitizer": re.compile(r"^==\d+==ERROR: LeakSanitizer", re.M),
    "WARNING: ThreadSanitizer": re.compile(r"^WARNING: ThreadSanitizer", re.M),
    "ERROR: ThreadSanitizer": re.compile(r"^==\d+==ERROR: ThreadSanitizer", re.M),
}

def test_counts(text):
    failed = len([l for l in re.findall(r"^✘ Test (.+?) failed after", text, re.M) if not l.startswith("run with")])
    skipped = len(re.findall(r"^➜ Test .* skipped", text, re.M))
    # Swift Testing's closing line of each group ("Test run with N tests in M suites ...") has
    # its total: lines of parallel tests can share a line with log output, so counting the ✔
    # lines would undercount.
    total = sum(int(n) for n in re.findall(r"Test run with (\d+) tests? in", text))
    runs = len(re.findall(r"Test run with \d+ tests? in", text))
    return total - failed - skipped, failed, skipped, runs

rows, overall_bad, details = [], False, []
for line in open(sys.argv[1]):
    name, output, reports, status, duration, test_duration, groups = line.rstrip("\n").split("\t")
    text = open(output, encoding="utf-8", errors="replace").read()
    passed, failed, skipped, summaries = test_counts(text)
    summary = summaries == int(groups)
    sources = [(output, text)] + [(path, open(path, encoding="utf-8", errors="replace").read())
                                  for path in sorted(glob.glob(os.path.join(reports, "*")))]
    findings = {}
    for path, content in sources:
        for label, pattern in PATTERNS.items():
            hits = len(pattern.findall(content))
            if hits:
                findings[label] = findings.get(label, 0) + hits
                if path != output:
                    details.append((name, path, content))
    count = sum(findings.values())
    crashed = int(status) != 0 and failed == 0 and count == 0
    bad = int(status) != 0 or failed > 0 or count > 0 or not summary
    overall_bad |= bad
    minutes = int(duration) / 60
    rows.append([name, str(passed + failed + skipped), str(passed), str(failed), str(skipped),
                 str(count) + ("" if not findings else " (" + ", ".join(f"{v} {k}" for k, v in findings.items()) + ")"),
                 f"{minutes:.1f} min (tests {int(test_duration) / 60:.1f})",
                 "FAILED" + (" (test binary crashed or exited " + status + ")" if crashed or not summary else "") if bad else "ok"])

for name, path, content in details:
    print()
    print(f"--- {name} report {path}")
    lines = content.splitlines()
    print("\n".join(lines[:60]) + ("\n[... %d more lines in the file]" % (len(lines) - 60) if len(lines) > 60 else ""))

header = ["run", "tests", "passed", "failed", "skipped", "findings", "duration", "result"]
table = [header] + rows
widths = [max(len(r[i]) for r in table) for i in range(len(header))]
print()
for i, r in enumerate(table):
    print("| " + " | ".join(c.ljust(widths[j]) for j, c in enumerate(r)) + " |")
    if i == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
sys.exit(1 if overall_bad else 0)
PY
