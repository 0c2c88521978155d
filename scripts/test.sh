#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, starts a private PostgreSQL,
# runs every test against it, and stops it again (also on failure).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building"
swift build --build-tests
export MEDIANEST_WORKER_BIN="$(swift_bin_path)/medianest-worker"
export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"
pg_start
log "testing"
output="$PG_DIR/swift-test.log"
status=0
swift test --skip-build "$@" 2>&1 | tee "$output" || status=$?
# One plain closing line with the totals, whatever the runner printed above it.
passed=$(grep -E '^✔ Test .* passed after' "$output" | grep -vc 'Test run with' || true)
failed=$(grep -E '^✘ Test .* failed after' "$output" | grep -vc 'Test run with' || true)
skipped=$(grep -cE '^➜ Test .* skipped' "$output" || true)
echo
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
