#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, starts a private PostgreSQL,
# runs every test against it, and stops it again (also on failure).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building"
swift build --build-tests
export MEDIANEST_WORKER_BIN="$(swift_bin_path)/medianest-worker"
pg_start
log "testing"
swift test --skip-build "$@"
