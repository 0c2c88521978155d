#!/usr/bin/env bash
# The README's "run the main job" command: a new user's first run.
#
#   1. start a throwaway PostgreSQL and migrate the MediaNest schema into it;
#   2. create a small sample library (a photo with EXIF rotation, a HEIC photo, a rotated phone
#      video, an HEVC 10-bit clip, a song with cover art, a FLAC without, one broken file, and a
#      photo with a smaller recompressed copy of it, a Live Photo: a HEIC and its MOV, and a
#      Google-style motion photo: a JPEG with its clip appended);
#   3. `medianest-worker import` it (and once more, to show that nothing is added twice);
#   4. run the daemon (`run --drain`) with the live view (`status --watch`) in the foreground
#      until the daemon has nothing left that it can run;
#   5. print the summary table and write the static HTML gallery, whose path is printed last.
#
# Job types this build has no handler for stay pending; --drain stops when nothing *it* can run
# is left, so the demo always ends by itself. The database and the storage root are deleted
# afterwards; the gallery (with copies of its files) stays in $MEDIANEST_DEMO_GALLERY
# (default .build/demo-gallery).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building"
swift build -c release --product medianest-worker
WORKER="$(swift_bin_path release)/medianest-worker"
GALLERY="${MEDIANEST_DEMO_GALLERY:-$REPO_ROOT/.build/demo-gallery}"
pg_start
createdb medianest
export PGDATABASE=medianest
export DATABASE_URL="host=$PGHOST port=$PGPORT user=medianest dbname=medianest"
export MEDIANEST_MIGRATIONS_DIR="$REPO_ROOT/migrations"

log "migrate up"
"$WORKER" migrate up

STORAGE="$PG_DIR/storage"
LIBRARY="$PG_DIR/My Pictures"
mkdir -p "$STORAGE" "$LIBRARY/2024 Holiday" "$LIBRARY/Music"
export MEDIANEST_STORAGE_ROOT="$STORAGE"
log "creating a sample library in $LIBRARY"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
# A portrait photo as phones store it: landscape pixels plus EXIF Orientation 6 (rotate 90° CW).
ff -f lavfi -i testsrc2=size=1600x1200 -frames:v 1 -q:v 3 "$PG_DIR/landscape.jpg"
python3 - "$PG_DIR/landscape.jpg" "$LIBRARY/2024 Holiday/IMG_0001.jpg" <<'PY'
import struct, sys
# Big-endian TIFF: IFD0 {Make, Model, Orientation=6, ExifIFD -> {DateTimeOriginal}}.
def ifd(entries, offset):
    data, extra = struct.pack(">H", len(entries)), b""
    start = offset + 2 + 12 * len(entries) + 4
    for tag, typ, value in sorted(entries):
        if typ == 2:
            raw, count = value.encode() + b"\0", len(value) + 1
        elif typ == 3:
            raw, count = struct.pack(">H", value), 1
        else:
            raw, count = struct.pack(">I", value), 1
        if len(raw) <= 4:
            data += struct.pack(">HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            data += struct.pack(">HHII", tag, typ, count, start + len(extra))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    return data + b"\0\0\0\0" + extra
ifd0 = [(0x010F, 2, "MediaNest"), (0x0110, 2, "Demo Phone"), (0x0112, 3, 6), (0x8769, 4, 0)]
size0 = len(ifd(ifd0, 8))
ifd0[3] = (0x8769, 4, 8 + size0)
tiff = b"MM\0\x2a" + struct.pack(">I", 8) + ifd(ifd0, 8) + ifd([(0x9003, 2, "2024:07:14 18:30:00")], 8 + size0)
app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
jpeg = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(jpeg[:2] + app1 + jpeg[2:])
PY
if command -v heif-enc >/dev/null; then
    ff -f lavfi -i "mandelbrot=size=1024x768" -frames:v 1 "$PG_DIR/mandelbrot.png"
    heif-enc -q 60 -o "$LIBRARY/2024 Holiday/IMG_0002.heic" "$PG_DIR/mandelbrot.png" >/dev/null
else
    log "heif-enc not found (apt-get install libheif-examples): no HEIC photo in the sample"
fi
# A Display P3 photo, as iPhones take them: libvips converts a test picture to Display P3 and
# embeds the profile; the thumbnail and preview are converted back to sRGB (docs/THUMBNAILS.md).
if command -v vips >/dev/null; then
    ff -f lavfi -i "testsrc2=size=1024x768" -frames:v 1 "$PG_DIR/colours.png"
    vips icc_transform "$PG_DIR/colours.png" "$LIBRARY/2024 Holiday/IMG_0005 Display P3.jpg[Q=90]" p3 --input-profile srgb
fi
# A phone video: H.264/AAC in QuickTime, recorded sideways (display matrix: 90° clockwise;
# FFmpeg 5.1's mov muxer writes "rotate" counter-clockwise, hence 270).
ff -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=523:sample_rate=48000 -t 4 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$PG_DIR/phone.mov"
ff -i "$PG_DIR/phone.mov" -c copy -metadata:s:v:0 rotate=270 "$LIBRARY/2024 Holiday/IMG_0003.MOV"
ff -f lavfi -i smptehdbars=size=1280x720:rate=25 -t 3 -c:v libx265 -preset ultrafast -pix_fmt yuv420p10le \
    -x265-params log-level=error "$LIBRARY/2024 Holiday/drone 10-bit HEVC.mkv"
ff -f lavfi -i testsrc2=size=600x600 -frames:v 1 "$PG_DIR/cover.png"
ff -f lavfi -i "sine=frequency=330:sample_rate=44100" -i "$PG_DIR/cover.png" -t 5 -map 0 -map 1 \
    -c:a libmp3lame -b:a 128k -c:v mjpeg -disposition:v attached_pic -id3v2_version 3 \
    -metadata title="Sine of the Times" -metadata artist="The MediaNest Band" -metadata album="First Run" \
    "$LIBRARY/Music/01 Sine of the Times.mp3"
ff -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 5 -c:a flac -metadata title="A440" "$LIBRARY/Music/02 A440.flac"
head -c 60000 "$LIBRARY/2024 Holiday/IMG_0003.MOV" >"$LIBRARY/2024 Holiday/IMG_0004 (broken).MOV"   # no moov atom
# A duplicate pair: a photo and the copy a messaging app sent back (half the size, recompressed).
# Not the same bytes, so import keeps both; `duplicates` and the gallery group them as similar.
mkdir -p "$LIBRARY/Shared"
ff -f lavfi -i "mandelbrot=size=1600x1200:start_x=-0.7453:start_y=0.1127:start_scale=0.02:end_scale=0.02:maxiter=400" -frames:v 1 \
    -vf "gblur=sigma=1.2,noise=alls=6:allf=u" -q:v 3 "$LIBRARY/2024 Holiday/IMG_0005.jpg"
ff -i "$LIBRARY/2024 Holiday/IMG_0005.jpg" -vf scale=800:600 -q:v 12 "$LIBRARY/Shared/IMG_0005 (sent).jpg"
# A motion photo as a Pixel writes it: a JPEG whose XMP lists a Container:Directory (the primary
# image, then a video/mp4 item of the clip's length), and the MP4 appended after the JPEG. The
# metadata job extracts the clip; the gallery plays it over the photo on hover.
ff -f lavfi -i "mandelbrot=size=640x480:rate=15:start_x=-0.7436:start_y=0.1318:start_scale=0.3:end_scale=0.02:end_pts=30" -t 2 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -movflags +faststart "$PG_DIR/motion.mp4"
ff -ss 1 -i "$PG_DIR/motion.mp4" -frames:v 1 -q:v 3 "$PG_DIR/motion.jpg"
python3 - "$PG_DIR/motion.jpg" "$PG_DIR/motion.mp4" "$LIBRARY/2024 Holiday/PXL_0007.MP.jpg" <<'PY'
import sys
jpeg, mp4 = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"'
       ' xmlns:Container="http://ns.google.com/photos/1.0/container/"'
       ' xmlns:Item="http://ns.google.com/photos/1.0/container/item/"'
       ' GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" GCamera:MotionPhotoPresentationTimestampUs="1000000">'
       '<Container:Directory><rdf:Seq>'
       '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary" Item:Length="0" Item:Padding="0"/></rdf:li>'
       f'<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length="{len(mp4)}" Item:Padding="0"/></rdf:li>'
       '</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>')
body = b"http://ns.adobe.com/xap/1.0/\0" + xmp.encode()
app1 = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
open(sys.argv[3], "wb").write(jpeg[:2] + app1 + jpeg[2:] + mp4)
PY
# A Live Photo as an iPhone uploads it: a still whose Apple MakerNote carries a ContentIdentifier
# and a short MOV with the same identifier in the QuickTime key com.apple.quicktime.content.identifier.
# The metadata jobs link the two; the gallery shows them as one tile that plays on hover.
LIVE_ID="$(python3 -c 'import uuid; print(str(uuid.uuid4()).upper())')"
# The motion: 3 s zooming into a Misiurewicz point, H.264 in QuickTime, no sound (the gallery
# plays it muted anyway); the still is its middle frame, as the camera keeps it.
ff -f lavfi -i "mandelbrot=size=640x480:rate=15:start_x=-0.1011:start_y=0.9563:start_scale=1.5:end_scale=0.05:end_pts=45" -t 3 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p \
    -metadata "com.apple.quicktime.content.identifier=$LIVE_ID" -movflags use_metadata_tags "$LIBRARY/2024 Holiday/IMG_0006.MOV"
ff -ss 1.5 -i "$LIBRARY/2024 Holiday/IMG_0006.MOV" -frames:v 1 -q:v 3 "$PG_DIR/live.jpg"
python3 - "$PG_DIR/live.jpg" "$PG_DIR/IMG_0006.JPG" "$LIVE_ID" <<'PY'
import struct, sys
# Big-endian TIFF: IFD0 {Make, Model, ExifIFD -> {DateTimeOriginal, MakerNote}}. The MakerNote is
# Apple's: "Apple iOS\0", version 1, "MM", then an IFD (offsets from the note's first byte)
# holding ContentIdentifier (0x0011), as ExifBlockBuilder.appleMakerNote writes it for the tests.
def ifd(entries, offset):
    data, extra = struct.pack(">H", len(entries)), b""
    start = offset + 2 + 12 * len(entries) + 4
    for tag, typ, value in sorted(entries):
        if typ == 2:
            raw, count = value.encode() + b"\0", len(value) + 1
        elif typ == 7:
            raw, count = value, len(value)
        else:
            raw, count = struct.pack(">I", value), 1
        if len(raw) <= 4:
            data += struct.pack(">HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            data += struct.pack(">HHII", tag, typ, count, start + len(extra))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    return data + b"\0\0\0\0" + extra
header = b"Apple iOS\0\0\x01MM"
maker_note = header + ifd([(0x0011, 2, sys.argv[3])], len(header))
ifd0 = [(0x010F, 2, "Apple"), (0x0110, 2, "iPhone 15"), (0x8769, 4, 0)]
size0 = len(ifd(ifd0, 8))
ifd0[2] = (0x8769, 4, 8 + size0)
tiff = b"MM\0\x2a" + struct.pack(">I", 8) + ifd(ifd0, 8) + ifd([(0x9003, 2, "2024:07:15 09:12:00"), (0x927C, 7, maker_note)], 8 + size0)
app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
jpeg = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(jpeg[:2] + app1 + jpeg[2:])
PY
# The still as iPhones store it, a HEIC (heif-enc keeps the Exif), else the JPEG itself.
if command -v heif-enc >/dev/null; then
    heif-enc -q 70 -o "$LIBRARY/2024 Holiday/IMG_0006.HEIC" "$PG_DIR/IMG_0006.JPG" >/dev/null
else
    cp "$PG_DIR/IMG_0006.JPG" "$LIBRARY/2024 Holiday/IMG_0006.JPG"
fi
ls -l "$LIBRARY"/*

log "medianest-worker import"
"$WORKER" import --owner demo@medianest.local "$LIBRARY"
log "importing the same folder again adds nothing"
"$WORKER" import --owner demo@medianest.local "$LIBRARY"

log "medianest-worker run --drain, with status --watch in the foreground"
"$WORKER" run --drain --log-level warning 2>"$PG_DIR/worker.log" &
worker_pid=$!
# The live view redraws in place on a terminal. Into a pipe it would print a whole snapshot every
# second (each with the broken file's sentence), so a log gets the summary below instead.
watch_pid=""
if [[ -t 1 ]]; then
    "$WORKER" status --watch --interval 1 &
    watch_pid=$!
else
    echo "(not a terminal: no live view; the summary follows once the queue has drained)"
fi
worker_status=0
wait "$worker_pid" || worker_status=$?
if [[ -n "$watch_pid" ]]; then
    sleep 1   # one more refresh, so the view shows the final state
    kill -INT "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" || true
fi
if ((worker_status != 0)); then
    cat "$PG_DIR/worker.log" >&2
    echo "the worker exited with status $worker_status" >&2
    exit 1
fi

log "results"
psql -q -P pager=off <<'SQL'
SELECT m.original_filename AS item,
       coalesce(m.metadata->>'kind', split_part(m.mime_type, '/', 1)) AS kind,
       m.status,
       CASE WHEN m.thumbnail_path IS NULL THEN '-' ELSE 'yes' END AS thumbnail,
       coalesce(round((m.metadata->>'duration')::numeric, 1) || ' s', '') AS duration,
       left(m.checksum_sha256, 12) AS sha256,
       coalesce((SELECT string_agg(f.code || ' (' || f.jobs || ')', '; ' ORDER BY f.code)
                   FROM (SELECT coalesce(j.output_data #>> '{error,code}', 'failed') AS code,
                                string_agg(j.job_type, ', ' ORDER BY j.job_type) AS jobs
                           FROM processing_jobs j WHERE j.media_item_id = m.id AND j.status = 'failed' GROUP BY 1) f), '') AS error
  FROM media_items m
 ORDER BY 2, 1;
SQL
psql -q -At -P pager=off <<'SQL'
SELECT 'Waiting for a handler this build does not have: ' || string_agg(job_type || ' ' || n, ', ' ORDER BY job_type)
  FROM (SELECT job_type, count(*) AS n FROM processing_jobs WHERE status = 'pending' GROUP BY 1) p
HAVING count(*) > 0;
-- One line per item and reason: a broken file fails all its jobs with the same sentence.
SELECT m.original_filename || ': ' || coalesce(j.output_data #>> '{error,message}', j.error_message)
       || ' (' || string_agg(j.job_type, ', ' ORDER BY j.job_type) || ')'
  FROM processing_jobs j JOIN media_items m ON m.id = j.media_item_id WHERE j.status = 'failed'
 GROUP BY m.id, m.original_filename, coalesce(j.output_data #>> '{error,message}', j.error_message) ORDER BY 1;
-- The Live Photos the metadata jobs linked (each half names the other).
SELECT 'Live Photo: ' || s.original_filename || ' + ' || v.original_filename || ' (one tile in the gallery, plays on hover)'
  FROM media_items s JOIN media_items v ON v.id::text = s.metadata #>> '{live_photo,video_id}'
 WHERE v.metadata #>> '{live_photo,still_id}' = s.id::text AND v.metadata #>> '{live_photo,role}' = 'motion'
 ORDER BY 1;
-- The motion photos whose clip the metadata job extracted.
SELECT 'Motion photo: ' || original_filename || ' (' || (metadata #>> '{motion_photo,duration}') || ' s '
       || (metadata #>> '{motion_photo,codec}') || ' clip; plays on hover in the gallery)'
  FROM media_items WHERE metadata #>> '{motion_photo,file}' IS NOT NULL ORDER BY 1;
SQL

log "duplicates"
"$WORKER" duplicates

log "gallery"
rm -rf "$GALLERY"
"$WORKER" gallery --output "$GALLERY"
echo
echo "Open file://$GALLERY/index.html in a browser."
