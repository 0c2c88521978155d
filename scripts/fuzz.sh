#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets (docs/FUZZING.md) with -sanitize=fuzzer,address into
# .build-fuzz, seeds them from a freshly generated corpus, runs each for FUZZ_SECONDS (default
# 600), at most FUZZ_JOBS (default 2) at once, and prints one row per target: executions,
# executions per second, corpus size and findings.
#
#   scripts/fuzz.sh [TARGET...]        every target when none is named (exif probe still thumbhash json motionphoto icc tiff)
#   FUZZ_SECONDS=60 FUZZ_JOBS=1 scripts/fuzz.sh still
#
# Every finding (crash, ASan report, leak, timeout, out-of-memory) is copied to
# Tests/FuzzRegressions/<target>/<kind>-<sha1>.unfixed, where `make test` replays it and fails
# until the bug is fixed and the file renamed to say the outcome (see docs/FUZZING.md).
# The run's logs, artifacts and summary stay under .build-fuzz/runs/<UTC time>/; the corpus each
# target grows is kept in .build-fuzz/corpus/<target>/ and reused by the next run.
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages

ALL_TARGETS=(exif probe still thumbhash json motionphoto icc tiff)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")
FUZZ_SECONDS="${FUZZ_SECONDS:-600}"
FUZZ_JOBS="${FUZZ_JOBS:-2}"
SCRATCH="$REPO_ROOT/.build-fuzz"
RUN="$SCRATCH/runs/$(date -u +%Y%m%dT%H%M%SZ)"
REGRESSIONS="$REPO_ROOT/Tests/FuzzRegressions"

# -max_len per target: FuzzTarget.maxInputBytes (Sources/MediaNestFuzzing/FuzzTarget.swift).
max_len() {
    case "$1" in
        exif) echo 65536 ;;
        probe | still | motionphoto | icc | tiff) echo 262144 ;;
        thumbhash) echo 64 ;;
        json) echo 16384 ;;
        *) echo "unknown fuzz target '$1' (known: ${ALL_TARGETS[*]})" >&2; return 1 ;;
    esac
}
for target in "${TARGETS[@]}"; do max_len "$target" >/dev/null; done
# Memory and time per input. FuzzTarget.limits caps a frame at 25 megapixels and a job at 10 s,
# so every input the product accepts fits 3 GiB (ASan included) and ends well within 60 s: what
# goes past these is a decode the project's own limits failed to stop.
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-3072}"
INPUT_TIMEOUT="${FUZZ_INPUT_TIMEOUT:-60}"

# The sanitized build has its own scratch path so `swift build` and `make test` are untouched.
# It starts from the normal build's checkouts, so no network is needed.
if [[ ! -d "$SCRATCH/checkouts" && -d "$REPO_ROOT/.build/checkouts" ]]; then
    mkdir -p "$SCRATCH"
    cp -a "$REPO_ROOT/.build/checkouts" "$REPO_ROOT/.build/repositories" "$REPO_ROOT/.build/workspace-state.json" "$SCRATCH/" 2>/dev/null || true
fi
log "building ${TARGETS[*]} with -sanitize=fuzzer,address into .build-fuzz"
for target in "${TARGETS[@]}"; do
    # --sanitize fuzzer makes SwiftPM link the executables with libFuzzer's main (not its own). The
    # instrumentation comes from one -sanitize=fuzzer,address: given as two flags (which is what
    # --sanitize fuzzer --sanitize address passes), swiftc 6.3 keeps ASan but drops the fuzzer's
    # coverage instrumentation, and libFuzzer runs blind.
    MEDIANEST_FUZZ=1 swift build --scratch-path "$SCRATCH" --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address --product "fuzz-$target" 2>&1 \
        | grep -vE '^\[[0-9]+/[0-9]+\]|^Building for|^Build of product|^Compiling|^Write|Cannot export local symbol' || true
    [[ -x "$SCRATCH/debug/fuzz-$target" ]] || { echo "building fuzz-$target failed" >&2; exit 1; }
done

log "generating the seed corpus in ${RUN#"$REPO_ROOT/"}/seeds"
mkdir -p "$RUN"
# The file-based targets' stand-in storage root: memory-backed, removed at the end (an input that
# crashes a fuzzer leaves its file behind).
SHM_BASE=/dev/shm
[[ -d "$SHM_BASE" && -w "$SHM_BASE" ]] || SHM_BASE="${TMPDIR:-/tmp}"
export MEDIANEST_FUZZ_SCRATCH
MEDIANEST_FUZZ_SCRATCH="$(mktemp -d "$SHM_BASE/medianest-fuzz-run.XXXXXX")"
trap 'rm -rf "$MEDIANEST_FUZZ_SCRATCH"' EXIT
python3 "$REPO_ROOT/scripts/fuzz/make-seeds.py" "$RUN/seeds" "$REPO_ROOT"

# Runs one target for FUZZ_SECONDS. libFuzzer stops at the first finding, so it is restarted on
# the same corpus until the time is up; every artifact is one finding.
run_target() {
    local target="$1" binary="$SCRATCH/debug/fuzz-$1"
    local corpus="$SCRATCH/corpus/$target" artifacts="$RUN/artifacts/$target" logs="$RUN/logs/$target"
    mkdir -p "$corpus" "$artifacts" "$logs"
    local start end remaining round=0 executions=0 status
    start=$(date +%s)
    end=$((start + FUZZ_SECONDS))
    while :; do
        remaining=$((end - $(date +%s)))
        ((remaining > 0)) || break
        round=$((round + 1))
        status=0
        # SWIFT_BACKTRACE off: Swift's own crash handler would inspect the dying process (and trip
        # ASan doing so) before libFuzzer's handler writes the artifact.
        # Leaks are findings, except those scripts/sanitizers/lsan.supp names (each a system
        # library's, with the reason).
        SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
            LSAN_OPTIONS="suppressions=$REPO_ROOT/scripts/sanitizers/lsan.supp:print_suppressions=0" \
            "$binary" -max_len="$(max_len "$target")" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$INPUT_TIMEOUT" \
            -max_total_time="$remaining" -print_final_stats=1 -artifact_prefix="$artifacts/" \
            "$corpus" "$RUN/seeds/$target" >"$logs/round-$round.log" 2>&1 || status=$?
        # Executions: the final stats line, or the last status line when a finding cut the run short.
        local n
        n=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$logs/round-$round.log" | grep -oE '[0-9]+$' | tail -1 || true)
        [[ -n "$n" ]] || n=$(grep -oE '^#[0-9]+' "$logs/round-$round.log" | tail -1 | tr -d '#' || true)
        executions=$((executions + ${n:-0}))
        if ((status == 0)); then break; fi
        if ((round >= 100)); then echo "fuzz-$target: stopped after 100 findings" >"$logs/stopped"; break; fi
        sleep 1
    done
    local elapsed=$(($(date +%s) - start))
    # Corpus: the inputs libFuzzer holds at the end for the coverage they add (its last `corp:
    # N/SIZE`); the directory also keeps inputs that later, smaller ones made redundant.
    local findings corpus_units="" corpus_size=""
    findings=$(find "$artifacts" -type f | wc -l)
    read -r corpus_units corpus_size < <(grep -ohE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$logs"/round-*.log | tail -1 | sed -E 's|corp: ([0-9]+)/(.*)|\1 \2|') || true
    # Keep every finding where `make test` replays it.
    local artifact kind sum
    for artifact in "$artifacts"/*; do
        [[ -f "$artifact" ]] || continue
        kind=$(basename "$artifact" | cut -d- -f1)
        sum=$(sha1sum "$artifact" | cut -c1-12)
        mkdir -p "$REGRESSIONS/$target"
        ls "$REGRESSIONS/$target/$kind-$sum".* >/dev/null 2>&1 || cp "$artifact" "$REGRESSIONS/$target/$kind-$sum.unfixed"
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$elapsed" "$executions" "$((executions / (elapsed > 0 ? elapsed : 1)))" \
        "${corpus_units:-0}" "${corpus_size:-0b}" "$findings" >"$RUN/summary-$target.tsv"
}

log "fuzzing ${TARGETS[*]}: ${FUZZ_SECONDS}s each, $FUZZ_JOBS at a time (logs in ${RUN#"$REPO_ROOT/"})"
running=0
for target in "${TARGETS[@]}"; do
    if ((running >= FUZZ_JOBS)); then wait -n || true; running=$((running - 1)); fi
    run_target "$target" &
    running=$((running + 1))
done
wait || true

total_findings=0
for target in "${TARGETS[@]}"; do total_findings=$((total_findings + $(cut -f7 "$RUN/summary-$target.tsv"))); done
{
    printf '%-10s %8s %12s %8s %16s %9s\n' target seconds executions exec/s corpus findings
    for target in "${TARGETS[@]}"; do
        IFS=$'\t' read -r name elapsed executions rate units size findings <"$RUN/summary-$target.tsv"
        printf '%-10s %8s %12s %8s %16s %9s\n' "$name" "$elapsed" "$executions" "$rate" "$units inputs/$size" "$findings"
    done
    echo
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%d)"
} | tee "$RUN/summary.txt"
if ((total_findings > 0)); then
    echo "findings were copied to Tests/FuzzRegressions/<target>/*.unfixed; reproduce one with" >&2
    echo "  .build-fuzz/debug/fuzz-<target> <file>" >&2
    exit 1
fi
