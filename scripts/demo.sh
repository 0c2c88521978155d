#!/usr/bin/env bash
# The README's "run the main job" command.
#
# Starts a throwaway PostgreSQL, migrates the MediaNest schema into it, creates a few sample media
# files (and one deliberately broken one) under a temporary storage root, registers them as
# media items, enqueues their processing, runs the worker until the queue is drained, and prints
# what it found. Everything is deleted afterwards.
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building"
swift build -c release --product medianest-worker
WORKER="$(swift_bin_path release)/medianest-worker"
pg_start
createdb medianest
export DATABASE_URL="host=$PGHOST port=$PGPORT user=medianest dbname=medianest"
export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"

log "migrate up"
"$WORKER" migrate up
log "migrate status"
"$WORKER" migrate status

if ! "$WORKER" help run >/dev/null 2>&1; then
    log "the worker has no 'run' command yet; stopping after the schema"
    exit 0
fi

STORAGE="$PG_DIR/storage"
mkdir -p "$STORAGE/uploads"
export MEDIANEST_STORAGE_ROOT="$STORAGE"
log "creating sample media in $STORAGE"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
ff -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 \
    -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest -metadata title="Test pattern" "$STORAGE/uploads/clip.mp4"
ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v libvpx-vp9 -b:v 200k "$STORAGE/uploads/clip.webm"
ff -f lavfi -i sine=frequency=220:sample_rate=44100 -t 2 -c:a libmp3lame -b:a 128k \
    -metadata title="A Sine" -metadata artist="MediaNest" -metadata album="Demo" "$STORAGE/uploads/song.mp3"
ff -f lavfi -i sine=frequency=330:sample_rate=44100 -t 2 -c:a flac "$STORAGE/uploads/tone.flac"
ff -f lavfi -i testsrc2=size=800x600 -frames:v 1 "$STORAGE/uploads/photo.jpg"
ff -f lavfi -i testsrc2=size=256x256 -frames:v 1 "$STORAGE/uploads/graphic.png"
head -c 20000 "$STORAGE/uploads/clip.mp4" >"$STORAGE/uploads/broken.mp4"   # truncated: no moov atom
printf 'just some text, not a picture\n' >"$STORAGE/uploads/notes.jpg"       # mislabelled

log "registering media items"
psql -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO users (id, email, password_hash, first_name, role)
VALUES ('00000000-0000-4000-8000-000000000001', 'demo@medianest.local', 'x', 'Demo', 'user');
SQL
register() { # filename mime
    local size
    size=$(stat -c %s "$STORAGE/uploads/$1")
    psql -q -At -v ON_ERROR_STOP=1 -v name="$1" -v mime="$2" -v size="$size" <<'SQL'
INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path, status)
VALUES ('00000000-0000-4000-8000-000000000001', :'name', :'name', :'mime', :'size', 'uploads/' || :'name', 'uploading')
RETURNING id;
SQL
}
for entry in "clip.mp4 video/mp4" "clip.webm video/webm" "song.mp3 audio/mpeg" "tone.flac audio/flac" \
    "photo.jpg image/jpeg" "graphic.png image/png" "broken.mp4 video/mp4" "notes.jpg image/jpeg"; do
    set -- $entry
    id=$(register "$1" "$2")
    "$WORKER" enqueue "$id" --types metadata >/dev/null
done

log "medianest-worker run --drain"
"$WORKER" run --drain --log-level warning

log "results"
psql -P pager=off <<'SQL'
SELECT m.original_filename AS file,
       m.status,
       m.metadata->>'mime_sniffed' AS sniffed_mime,
       round((m.metadata->>'duration')::numeric, 2) AS duration_s,
       (m.metadata->>'width') || 'x' || (m.metadata->>'height') AS display,
       left(m.checksum_md5, 12) || '…' AS md5,
       left(m.checksum_sha256, 12) || '…' AS sha256,
       coalesce(j.output_data->'error'->>'code', '') AS error
FROM media_items m
JOIN processing_jobs j ON j.media_item_id = m.id AND j.job_type = 'metadata'
ORDER BY m.original_filename;
SQL
psql -P pager=off -c "SELECT m.original_filename AS file, j.error_message FROM media_items m JOIN processing_jobs j ON j.media_item_id = m.id WHERE j.status = 'failed' ORDER BY 1"
"$WORKER" status
