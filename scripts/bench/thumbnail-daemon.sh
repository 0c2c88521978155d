#!/usr/bin/env bash
# Thumbnails per second end to end through the daemon with PostgreSQL: `medianest-worker run
# --drain --types thumbnail,preview` over a mixed batch of image items (12 MP and 1080p JPEGs, PNGs
# with alpha, WebPs), each item's thumbnail and preview jobs queued, claimed together, decoded once,
# both outputs encoded and written atomically, both jobs completed and the item updated
# (thumbnail_path, preview_path, settled, notified). Also the worker's peak RSS. Image items only
# for now; video and audio items join when their decoders are wired.
# THUMB_DAEMON_TYPES=thumbnail queues and serves thumbnail jobs only (each renders alone, at 320 px).
source "$(dirname "$0")/../bench-lib.sh"
PER_KIND="${THUMB_DAEMON_PER_KIND:-50}"
TYPES="${THUMB_DAEMON_TYPES:-thumbnail,preview}"
db="bench_thumbs"
createdb "$db"
export PGDATABASE="$db"
export PGOPTIONS="-c client_min_messages=warning"
url="host=$PGHOST port=$PGPORT user=medianest dbname=$db"
"$WORKER" migrate up --database-url "$url" >/dev/null
storage="$BENCH_DIR/thumb-storage"
mkdir -p "$storage/src"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
ff -f lavfi -i "testsrc2=size=4000x3000,noise=alls=18:allf=u" -frames:v 1 -q:v 2 "$storage/src/a.jpg"
ff -f lavfi -i "testsrc2=size=1920x1080,noise=alls=12:allf=u" -frames:v 1 -q:v 3 "$storage/src/b.jpg"
ff -f lavfi -i "testsrc2=size=1600x1200,format=rgba" -frames:v 1 "$storage/src/c.png"
ff -f lavfi -i "testsrc2=size=1600x1200" -frames:v 1 -c:v libwebp -quality 85 "$storage/src/d.webp"
# Distinct files (a copy each), so no item shares a file with another.
for kind in a.jpg b.jpg c.png d.webp; do
    for i in $(seq 1 "$PER_KIND"); do cp "$storage/src/$kind" "$storage/$i-$kind"; done
done
rm -r "$storage/src"
total=$((PER_KIND * 4))

load() {
    rm -rf "$storage/.derived"
    psql -q -v ON_ERROR_STOP=1 -v dir="$storage" <<'SQL'
TRUNCATE processing_jobs, notifications, media_items CASCADE;
DELETE FROM audit_logs;
INSERT INTO users (id, email, password_hash) VALUES ('00000000-0000-4000-8000-00000000b002', 'thumbs@medianest.local', 'x')
ON CONFLICT DO NOTHING;
SQL
    # File names are digits, a dash and a letter: safe to inline.
    values=$(ls "$storage" | grep -v '^\.' | sed "s/.*/('&')/" | paste -sd,)
    psql -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, status)
SELECT '00000000-0000-4000-8000-00000000b002', name, name,
       CASE WHEN name LIKE '%.png' THEN 'image/png' WHEN name LIKE '%.webp' THEN 'image/webp' ELSE 'image/jpeg' END, name, 'processing'
  FROM (VALUES $values) AS v(name);
INSERT INTO processing_jobs (media_item_id, job_type, input_data)
SELECT m.id, t, '{}' FROM media_items m, unnest(string_to_array('$TYPES', ',')) AS t;
VACUUM ANALYZE processing_jobs;
SQL
}

best=0
rss=0
for run in 1 2 3; do
    load
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$BENCH_DIR/thumb-rss" "$WORKER" run --drain --database-url "$url" --storage-root "$storage" \
        --types "$TYPES" --log-level error >/dev/null 2>&1
    end=$(date +%s.%N)
    done_count=$(psql -At -c "SELECT count(*) FROM processing_jobs WHERE status = 'completed'")
    with_path=$(psql -At -c "SELECT count(*) FROM media_items WHERE thumbnail_path IS NOT NULL AND status = 'ready'
                                AND (preview_path IS NOT NULL OR '$TYPES' NOT LIKE '%preview%')")
    jobs=$((total * $(tr ',' '\n' <<<"$TYPES" | wc -l)))
    [[ "$done_count" == "$jobs" && "$with_path" == "$total" ]] || {
        echo "daemon completed $done_count of $jobs jobs, $with_path of $total items ready with their paths" >&2
        psql -At -c "SELECT error_message FROM processing_jobs WHERE status <> 'completed' LIMIT 3" >&2
        exit 1
    }
    best=$(python3 -c "print(max($best, $total / ($end - $start)))")
    rss=$(python3 -c "print(max($rss, int(open('$BENCH_DIR/thumb-rss').read().split()[-1])))")
done
if [[ "$TYPES" == *preview* ]]; then
    what="each item's thumbnail and preview jobs claimed together, both made from one decode"
else
    what="thumbnail jobs only, each decoded at its own size"
fi
printf 'Thumbnail jobs/s end to end through the daemon (%d mixed images: 12 MP and 1080p JPEG, PNG+alpha, WebP; %s), %d cores\t%.1f thumbnails/s, peak RSS %d MiB\t\t\t\t\n' \
    "$total" "$what" "$(nproc)" "$best" "$((rss / 1024))"
