#!/usr/bin/env bash
# `make chaos`: break the worker on purpose, on loopback, and prove nothing is lost.
#
# Starts a private PostgreSQL (scripts/common.sh), builds medianest-worker, migrates a template
# database, then runs scripts/chaos.py: one scenario per row (kill -9 storm, PostgreSQL fast and
# immediate restarts, zombie worker, partition, disk full, read-only storage root, SIGTERM
# during transcodes, cancel during a long decode, clock skew), each on a fresh database cloned
# from the template and a fresh storage root, with real media jobs on generated media. It ends
# with one table and exits 1 when any row has lost, duplicated, stuck or stray files.
# Definitions of every column: docs/CHAOS.md.
#
# Knobs (environment): CHAOS_SCENARIOS=storm,pg_fast,... (a subset, in that order),
# CHAOS_BUILD=debug|release (default debug), CHAOS_KEEP=1 (keep the work directory),
# CHAOS_STORM_IMAGES / CHAOS_STORM_VIDEOS / CHAOS_KILLS / CHAOS_KILL_EVERY, CHAOS_LONG_SECONDS
# (the long video of the zombie, partition, SIGTERM and cancel scenarios), CHAOS_LEASE,
# CHAOS_WORKER=/path/to/medianest-worker (skip the build and run that binary).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
if [[ -n "${CHAOS_WORKER:-}" ]]; then
    WORKER="$CHAOS_WORKER"   # a binary built elsewhere (say, of an older commit, to see a bug come back)
else
    build="${CHAOS_BUILD:-debug}"
    log "building medianest-worker ($build)"
    swift build -c "$build" --product medianest-worker
    WORKER="$(swift_bin_path "$build")/medianest-worker"
fi
pg_start
createdb chaos_template
"$WORKER" migrate up --database-url "host=$PGHOST port=$PGPORT user=medianest dbname=chaos_template" \
    --migrations-dir "$REPO_ROOT/migrations" >/dev/null
export CHAOS_WORKER="$WORKER" CHAOS_PG_BIN="$PG_BIN" CHAOS_PG_OWNER="$PG_OWNER" CHAOS_PG_DIR="$PG_DIR"
# Not exec: pg_stop (the EXIT trap) must run after the orchestrator, whatever it did.
status=0
python3 "$REPO_ROOT/scripts/chaos.py" || status=$?
exit "$status"
