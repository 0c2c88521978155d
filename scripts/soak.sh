#!/usr/bin/env bash
# `make soak`: a long run of the real daemon that must stay flat.
#
#   1. build the release worker, start a throwaway PostgreSQL (common.sh) and migrate it;
#   2. generate a mixed library once with the CLIs, as the demo does: JPEGs (12 MP and 1080p),
#      a PNG with alpha, a WebP, an animated GIF, a HEIC (heif-enc), a 16-bit TIFF, the committed
#      DNG and AVIF fixtures, an H.264 phone video, an HEVC 10-bit clip, an MP3 with cover art, a FLAC,
#      and one truncated video that must fail with a stable code;
#   3. hand over to scripts/soak/driver.py, which runs `medianest-worker run` (maintenance and
#      metrics on), enqueues items of that mix continuously for SOAK_MINUTES (default 10) at a
#      bounded rate, samples the worker every 10 s, drains, waits for the idle worker to give its
#      memory back, stops it with SIGTERM and writes .build/soak/report.json.
#
# It fails (exit 1, with one sentence per broken rule) when RSS at the end is more than 1.2× RSS
# at the end of the first third, the descriptor count grows, a job is lost or an item is stuck.
# Every process it starts and the cluster are gone when it returns, also on failure or Ctrl-C.
#
# Knobs (environment): SOAK_MINUTES (10), SOAK_ITEMS_PER_MINUTE (30), SOAK_MAX_BACKLOG (6 items
# not yet settled), SOAK_CONCURRENCY (the worker's default), SOAK_IDLE_SECONDS (30, the idle wait
# at the end), SOAK_BUILD (release; debug for a quick try), SOAK_WORKER (a binary to use instead
# of building one).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
if [[ -n "${SOAK_WORKER:-}" ]]; then
    WORKER="$SOAK_WORKER"   # a binary built elsewhere (say, the commit before a change, to compare)
else
    build="${SOAK_BUILD:-release}"
    log "building ($build)"
    swift build -c "$build" --product medianest-worker
    WORKER="$(swift_bin_path "$build")/medianest-worker"
fi
OUT="$REPO_ROOT/.build/soak"
mkdir -p "$OUT"
rm -f "$OUT/report.json"

pg_start
createdb medianest
export PGDATABASE=medianest
export PGOPTIONS="-c client_min_messages=warning"
export DATABASE_URL="host=$PGHOST port=$PGPORT user=medianest dbname=medianest"
export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"
"$WORKER" migrate up >/dev/null

STORAGE="$PG_DIR/storage"
SOURCES="$PG_DIR/sources"
mkdir -p "$STORAGE" "$SOURCES"
log "generating the mixed library in $SOURCES"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
ff -f lavfi -i "testsrc2=size=4000x3000,noise=alls=18:allf=u" -frames:v 1 -q:v 2 "$SOURCES/photo-12mp.jpg"
ff -f lavfi -i "testsrc2=size=1920x1080,noise=alls=12:allf=u" -frames:v 1 -q:v 3 "$SOURCES/photo-1080p.jpg"
ff -f lavfi -i "testsrc2=size=1600x1200,format=rgba" -frames:v 1 "$SOURCES/alpha.png"
ff -f lavfi -i "testsrc2=size=1600x1200" -frames:v 1 -c:v libwebp -quality 85 "$SOURCES/image.webp"
ff -f lavfi -i "testsrc2=size=320x240:rate=10" -t 2 "$SOURCES/animated.gif"
ff -f lavfi -i "mandelbrot=size=1024x768" -frames:v 1 "$SOURCES/mandelbrot.png"
heif-enc -q 60 -o "$SOURCES/photo.heic" "$SOURCES/mandelbrot.png" >/dev/null
rm "$SOURCES/mandelbrot.png"
convert -size 1200x900 plasma:fractal -depth 16 "$SOURCES/scan-16bit.tiff"
cp Tests/MediaNestMediaTests/Fixtures/RAW/preview-orient6.dng "$SOURCES/camera.dng"
cp Tests/MediaNestMediaTests/Fixtures/HEIF/rotated.avif "$SOURCES/rotated.avif"
ff -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=523:sample_rate=48000 -t 3 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$SOURCES/phone-plain.mov"
ff -i "$SOURCES/phone-plain.mov" -c copy -metadata:s:v:0 rotate=270 "$SOURCES/phone.mov"
rm "$SOURCES/phone-plain.mov"
ff -f lavfi -i smptehdbars=size=640x360:rate=25 -t 2 -c:v libx265 -preset ultrafast -pix_fmt yuv420p10le \
    -x265-params log-level=error "$SOURCES/clip-hevc10.mkv"
ff -f lavfi -i testsrc2=size=600x600 -frames:v 1 "$SOURCES/cover.png"
ff -f lavfi -i "sine=frequency=330:sample_rate=44100" -i "$SOURCES/cover.png" -t 5 -map 0 -map 1 \
    -c:a libmp3lame -b:a 128k -c:v mjpeg -disposition:v attached_pic -id3v2_version 3 \
    -metadata title="Soak" -metadata artist="The MediaNest Band" "$SOURCES/song.mp3"
rm "$SOURCES/cover.png"
ff -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 5 -c:a flac "$SOURCES/a440.flac"
head -c 60000 "$SOURCES/phone.mov" >"$SOURCES/broken.mov"   # no moov atom: fails, never retried

log "soak: ${SOAK_MINUTES:-10} minutes"
# In the background with `wait`, so a signal to this script reaches the trap at once; the driver
# stops its worker on SIGTERM (and on any exit) before the cluster goes.
python3 scripts/soak/driver.py --worker "$WORKER" --storage "$STORAGE" --sources "$SOURCES" \
    --report "$OUT/report.json" --worker-log "$OUT/worker.log" &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null || true; wait "$driver" 2>/dev/null || true; pg_stop' EXIT
wait "$driver"
