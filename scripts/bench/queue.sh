#!/usr/bin/env bash
# Queue throughput: jobs/s end to end through the daemon (medianest-testworker with its no-op
# handler, `run --drain`), against pgbench running the plain single-job SKIP LOCKED
# claim + complete script on the same database and the same jobs, in the same run. Two
# workloads: every job on its own media item (the worst case for the daemon, which settles the
# item, notifies its owner and audits the change for every job), and the job set that
# enqueue_media_processing creates for uploaded videos (four jobs per item). Last, the idle
# cost: transactions per minute an idle worker causes.
source "$(dirname "$0")/../bench-lib.sh"
JOBS="${QUEUE_JOBS:-20000}"
SLOTS="${QUEUE_SLOTS:-64}"
TESTWORKER="$BIN_DIR/medianest-testworker"
db="bench_queue"
createdb "$db"
export PGDATABASE="$db"
export PGOPTIONS="-c client_min_messages=warning"
url="host=$PGHOST port=$PGPORT user=medianest dbname=$db"
"$WORKER" migrate up --database-url "$url" >/dev/null

# load_jobs single|video: $JOBS pending jobs with input {} (the no-op handler completes them at once).
load_jobs() {
    psql -q -v ON_ERROR_STOP=1 -v n="$JOBS" -v kind="$1" <<'SQL'
TRUNCATE processing_jobs, notifications, media_items CASCADE;
DELETE FROM audit_logs;
INSERT INTO users (id, email, password_hash) VALUES ('00000000-0000-4000-8000-00000000b001', 'bench@medianest.local', 'x')
ON CONFLICT DO NOTHING;
SELECT CASE WHEN :'kind' = 'single' THEN :n ELSE :n / 4 END AS items \gset
INSERT INTO media_items (id, owner_id, filename, original_filename, mime_type, storage_path)
SELECT gen_random_uuid(), '00000000-0000-4000-8000-00000000b001', 'f' || g, 'f' || g,
       CASE WHEN :'kind' = 'single' THEN 'image/jpeg' ELSE 'video/mp4' END, 'bench/f' || g
FROM generate_series(1, :items) g;
INSERT INTO processing_jobs (media_item_id, job_type, input_data)
SELECT id, t, '{}' FROM media_items,
       unnest(CASE WHEN :'kind' = 'single' THEN ARRAY['metadata'] ELSE ARRAY['metadata', 'thumbnail', 'preview', 'transcode'] END) t;
UPDATE media_items SET status = 'processing';
VACUUM ANALYZE processing_jobs;
VACUUM ANALYZE media_items;
SQL
}

# The daemon: one process, $SLOTS slots for every type, no-op handler; claims and completions
# are batched. Best of 3. Prints jobs/s.
daemon_rate() {
    local kind=$1 best=0 run start end done_count rate
    shift
    for run in 1 2 3; do
        load_jobs "$kind"
        start=$(date +%s.%N)
        "$TESTWORKER" run --drain --database-url "$url" --log-level error --concurrency "$SLOTS" \
            --type-limits "metadata=$SLOTS,thumbnail=$SLOTS,preview=$SLOTS,transcode=$SLOTS" "$@" >/dev/null 2>&1
        end=$(date +%s.%N)
        done_count=$(psql -At -c "SELECT count(*) FROM processing_jobs WHERE status = 'completed'")
        [[ "$done_count" == "$JOBS" ]] || { echo "daemon completed $done_count of $JOBS" >&2; exit 1; }
        # The end-to-end work really happened: every item is ready, notified and audited once.
        unsettled=$(psql -At -c "SELECT count(*) FROM media_items WHERE status <> 'ready'")
        notified=$(psql -At -c "SELECT count(*) FROM notifications")
        items=$(psql -At -c "SELECT count(*) FROM media_items")
        [[ "$unsettled" == 0 && "$notified" == "$items" ]] || { echo "daemon left $unsettled items unsettled, $notified notifications for $items items" >&2; exit 1; }
        best=$(python3 -c "print(max($best, $JOBS / ($end - $start)))")
    done
    echo "$best"
}

# pgbench: the textbook single-job claim + complete, one job per transaction, one round trip
# per statement. It gets a partial index that serves its ORDER BY exactly (created for its runs
# only, so the daemon does not pay for maintaining it). Best client count of 4, 8 and 16, two
# runs each. Prints "jobs/s clients".
script="$BENCH_DIR/claim-complete.sql"
cat >"$script" <<'SQL'
BEGIN;
WITH next AS (
    SELECT id FROM processing_jobs
     WHERE status = 'pending' AND NOT run_alone AND run_at <= now()
     ORDER BY priority DESC, run_at, created_at
     LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE processing_jobs j
   SET status = 'running', attempts = j.attempts + 1, started_at = now(), worker_id = 'pgbench',
       lease_id = gen_random_uuid(), lease_expires_at = now() + interval '30 seconds'
  FROM next WHERE j.id = next.id
RETURNING j.id AS job_id \gset
UPDATE processing_jobs SET status = 'completed', completed_at = now(), output_data = '{}'
 WHERE id = :job_id AND status = 'running' AND worker_id = 'pgbench';
COMMIT;
SQL
pgbench_rate() {
    local kind=$1 best=0 best_clients=0 clients run out tps
    psql -q -c "CREATE INDEX bench_pgbench_claim ON processing_jobs (priority DESC, run_at, created_at) WHERE status = 'pending' AND NOT run_alone"
    for clients in 4 8 16; do
        for run in 1 2; do
            load_jobs "$kind"
            out=$(pgbench -n -M prepared -c "$clients" -j 2 -t $((JOBS / clients)) -f "$script" "$db" 2>&1) || { echo "$out" | grep -v "^progress" | head -20 >&2; exit 1; }
            tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
            [[ -n "$tps" ]] || { echo "$out" >&2; exit 1; }
            if python3 -c "import sys; sys.exit(0 if $tps > $best else 1)"; then best=$tps; best_clients=$clients; fi
        done
    done
    psql -q -c "DROP INDEX bench_pgbench_claim"
    echo "$best $best_clients"
}

# row KIND LABEL [worker flags...]: the daemon against pgbench on the same jobs.
row() {
    local kind=$1 label=$2 ours peer clients
    shift 2
    ours=$(daemon_rate "$kind" "$@")
    read -r peer clients < <(pgbench_rate "$kind")
    printf 'Queue: jobs/s end to end, %s (%d no-op jobs, %d slots)\t%.0f jobs/s\tpgbench single-job SKIP LOCKED claim+complete (best: %d clients)\t%.0f jobs/s\t%sx\t%s\n' \
        "$label" "$JOBS" "$SLOTS" "$ours" "$clients" "$peer" "$(python3 -c "print('%.2f' % ($ours / $peer))")" "${TARGET:->= 1.0x}"
}
# The default: two connections (the LISTEN session claims, the other one writes).
row single "one job per item"
row video "four jobs per video item"
# PgBouncer's mode: one connection for claims and writes, which then take turns on one backend.
TARGET="(no target)" row single "one job per item, --no-listen (1 connection)" --no-listen

# Idle cost: transactions per minute an idle worker causes while LISTEN works, from the server's
# transaction counter for this database over IDLE_SECONDS (default 120 s, so that the 30 s
# cadences are sampled several times), minus the measuring reads themselves. pg_stat_database
# is flushed by backends at most every PGSTAT_MIN_INTERVAL (1 s) and when they go idle, so a
# short settle before each read lets the counters catch up.
IDLE_SECONDS="${IDLE_SECONDS:-120}"
psql -q -c "TRUNCATE processing_jobs, notifications CASCADE" >/dev/null
# Autovacuum's own transactions in this database (after the loads above) would count too.
psql -q -c "VACUUM ANALYZE" >/dev/null
"$TESTWORKER" run --database-url "$url" --log-level error >/dev/null 2>&1 &
idle_pid=$!
sleep 20
counter() { psql -At -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"; }
before=$(counter)
sleep "$IDLE_SECONDS"
after=$(counter)
kill -TERM "$idle_pid"; wait "$idle_pid" || true
# Each counter() call is one transaction of its own, counted in "after".
per_minute=$(python3 -c "print('%.0f' % (($after - $before - 1) * 60 / $IDLE_SECONDS))")
printf 'Queue: idle worker load, LISTEN active\t%s transactions/min\t(30 s poll, 30 s registry, rescue every lease/2)\t\t\t<= 20/min\n' "$per_minute"
