#!/usr/bin/env bash
# Video thumbnail of a 1080p H.264 file, 320 px WebP: `medianest-worker thumbnail` (in-process:
# seek to a keyframe near 10 %, decode a keyframe or a few, score, scale, encode) against what a
# script would run per file: `ffmpeg -ss T -i FILE -frames:v 1 -vf scale=320:-2 out.webp`, with T
# at 10 % of the duration like ours. Both are measured per file over the same batch of files.
source "$(dirname "$0")/../bench-lib.sh"
dir="$BENCH_DIR/thumbnail-video"
out="$dir/out"
mkdir -p "$dir" "$out"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=60 \
    -c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p "$dir/clip.mp4"
count=20
for i in $(seq -w 1 "$count"); do ln -f "$dir/clip.mp4" "$dir/clip-$i.mp4"; done
rm -f "$dir/clip.mp4"
files=("$dir"/clip-*.mp4)
label="1080p H.264 video thumbnail, 320 px WebP (per file, batch of $count)"
peer_name='ffmpeg -ss T -i … -frames:v 1 -vf scale=320:-2 out.webp'
peer=$(hyper_mean "for f in ${files[*]}; do ffmpeg -v error -y -ss 6 -i \$f -frames:v 1 -vf scale=320:-2 $out/peer.webp; done")
per_peer=$(python3 -c "print($peer/$count)")
if ! "$WORKER" thumbnail --help >/dev/null 2>&1; then
    # The command arrives with the image thumbnail work; until then the row shows the peer alone.
    printf '%s\tn/a (no thumbnail command)\t%s\t%s\t\t>= 5x\n' "$label" "$peer_name" "$(fmt_ms "$per_peer")"
    exit 0
fi
ours=$(hyper_mean "$WORKER thumbnail --size 320 --format webp --output-dir $out ${files[*]}")
per_ours=$(python3 -c "print($ours/$count)")
printf '%s\t%s\t%s\t%s\t%s faster\t>= 5x\n' "$label" "$(fmt_ms "$per_ours")" "$peer_name" "$(fmt_ms "$per_peer")" "$(ratio "$per_ours" "$per_peer")"
