#!/usr/bin/env bash
# Memory: the peak RSS of each job type, one job at a time with the database-free commands
# (`probe`, `thumbnail`, `transcode`) under /usr/bin/time, on generated media; then one worker
# daemon on a mixed queue (three transcodes, a 24 MP PNG, JPEGs; every job type) without and with
# a memory budget. The figures behind JobMemoryEstimator and docs/OPERATIONS.md, "Memory".
# Needs a PostgreSQL (bench.sh starts one; DATABASE_URL).
source "$(dirname "$0")/../bench-lib.sh"
dir="$BENCH_DIR/memory"
mkdir -p "$dir/out" "$dir/root"
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
ff -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=4" -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=4" \
    -c:v libx264 -preset ultrafast -crf 23 -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 "$dir/v1080.mp4"
ff -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=4" -c:v libx264 -preset ultrafast -crf 23 -pix_fmt yuv420p "$dir/v720.mp4"
ff -f lavfi -i "testsrc2=size=3840x2160:rate=30:duration=3" -c:v libx264 -preset ultrafast -crf 23 -pix_fmt yuv420p "$dir/v2160.mp4"
convert -seed 7 -size 4000x3000 plasma:fractal "$dir/p12-16.png"          # ImageMagick's plasma is 16-bit
ff -i "$dir/p12-16.png" -vf format=yuvj420p -q:v 2 "$dir/p12.jpg"
convert "$dir/p12.jpg" -interlace JPEG "$dir/p12-progressive.jpg"
convert "$dir/p12-16.png" -resize '6000x4000!' -depth 8 "$dir/p24-8.png"
ff -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=60" -b:a 192k "$dir/a.mp3"

mib() { echo "$(( $1 / 1024 )) MiB"; }
peak() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
idle=$(peak "$WORKER" probe --no-checksums "$dir/a.mp3")
row() {  # label, command...
    local label="$1"; shift
    local kib; kib=$(peak "$@")
    local share=$((kib > idle ? kib - idle : 0))
    printf 'Peak RSS, %s\t%s\tjob share (less the idle command, %s)\t%s\t\t\n' "$label" "$(mib "$kib")" "$(mib "$idle")" "$(mib "$share")"
}
row "metadata (probe), 2160p H.264" "$WORKER" probe "$dir/v2160.mp4"
row "metadata (probe), 24 MP 8-bit PNG" "$WORKER" probe "$dir/p24-8.png"
row "thumbnail, 12 MP JPEG" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/p12.jpg"
row "thumbnail, 12 MP progressive JPEG" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/p12-progressive.jpg"
row "thumbnail, 24 MP 8-bit PNG" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/p24-8.png"
row "thumbnail, 12 MP 16-bit PNG" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/p12-16.png"
row "preview 1440 px, 24 MP 8-bit PNG" "$WORKER" thumbnail --jobs 1 --quiet --size 1440 --format jpeg --output-dir "$dir/out" "$dir/p24-8.png"
row "thumbnail, 2160p H.264" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/v2160.mp4"
row "thumbnail, MP3 (waveform)" "$WORKER" thumbnail --jobs 1 --quiet --output-dir "$dir/out" "$dir/a.mp3"
for threads in 1 2 8; do
    row "transcode 1080p to 1080p H.264, $threads threads" "$WORKER" transcode --mode always --threads "$threads" --output "$dir/out/t.mp4" "$dir/v1080.mp4"
done
row "transcode 720p, 2 threads" "$WORKER" transcode --mode always --threads 2 --output "$dir/out/t.mp4" "$dir/v720.mp4"
row "transcode 2160p to 1080p, 2 threads" "$WORKER" transcode --mode always --threads 2 --output "$dir/out/t.mp4" "$dir/v2160.mp4"

# One daemon on a mixed queue: 33 jobs, concurrency 4, up to 3 transcodes at once by type limit.
root="$dir/root"
cp "$dir/v1080.mp4" "$root/a.mp4"; cp "$dir/v1080.mp4" "$root/b.mp4"; cp "$dir/v2160.mp4" "$root/c.mp4"
for i in 1 2 3 4 5 6; do cp "$dir/p12.jpg" "$root/s$i.jpg"; done
cp "$dir/p24-8.png" "$root/big.png"
q() { psql -X -q -tA -d "$DATABASE_URL" -c "$1"; }
"$WORKER" migrate up --database-url "$DATABASE_URL" >/dev/null
mixed() {  # budget → peak KiB of the daemon
    q "DELETE FROM processing_jobs; DELETE FROM media_items;" >/dev/null
    local owner; owner=$(q "SELECT id FROM users LIMIT 1")
    [[ -n "$owner" ]] || owner=$(q "INSERT INTO users (email, password_hash) VALUES ('memory-bench@example.test', 'x') RETURNING id" | head -1)
    local f mime id
    for f in a.mp4 b.mp4 c.mp4 s1.jpg s2.jpg s3.jpg s4.jpg s5.jpg s6.jpg big.png; do
        case $f in *.mp4) mime=video/mp4 ;; *.png) mime=image/png ;; *) mime=image/jpeg ;; esac
        id=$(q "INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path) VALUES ('$owner', '$f', '$f', '$mime', 1, '$f') RETURNING id" | head -1)
        q "SELECT enqueue_media_processing('$id')" >/dev/null
    done
    /usr/bin/time -f '%M' -o "$dir/daemon-rss" "$WORKER" run --drain --database-url "$DATABASE_URL" --storage-root "$root" \
        --metrics-address off --log-level error --concurrency 4 --type-limits transcode=3,thumbnail=4,preview=4,metadata=4 \
        --transcode-mode always --memory-budget "$1" >/dev/null 2>&1
    [[ $(q "SELECT count(*) FROM processing_jobs WHERE status <> 'completed'") == 0 ]] || { echo "mixed queue: jobs left unfinished" >&2; exit 1; }
    cat "$dir/daemon-rss"
}
without=$(mixed none)
with=$(mixed 600M)
printf 'Peak RSS, one worker on a mixed queue (33 jobs, 3 transcodes), --memory-budget 600M\t%s\tno budget\t%s\t%s less\t<= 600 MiB + idle\n' \
    "$(mib "$with")" "$(mib "$without")" "$(python3 -c "import sys; print('%.1fx' % (int(sys.argv[1]) / int(sys.argv[2])))" "$without" "$with")"
rm -rf "$dir"
