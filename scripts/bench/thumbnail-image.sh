#!/usr/bin/env bash
# 12 MP JPEG to a 320 px WebP (quality 80), per image over a batch of 50 distinct photos:
# `medianest-worker thumbnail` (one process, libavcodec in-process, JPEG lowres, the thumbnail
# job's own dispatcher) against `vipsthumbnail` (one process for the whole batch, its own
# shrink-on-load) and the ffmpeg CLI (one process per photo, as a script would run it).
# Same inputs, same output size and format.
source "$(dirname "$0")/../bench-lib.sh"
COUNT="${THUMB_COUNT:-50}"
set_dir="$BENCH_DIR/thumb-set"
mkdir -p "$set_dir" "$BENCH_DIR/out-ours" "$BENCH_DIR/out-vips" "$BENCH_DIR/out-ffmpeg"
# A photo-like 4000x3000 picture (detail and grain, so the JPEG is the size of a real photo),
# then COUNT variants with different grain so no two files are alike.
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=4000x3000,noise=alls=18:allf=u" -frames:v 1 -q:v 2 "$set_dir/base.png"
for i in $(seq -w 1 "$COUNT"); do
    ffmpeg -hide_banner -loglevel error -y -i "$set_dir/base.png" -vf "noise=alls=6:allf=u:all_seed=$i" -q:v 2 "$set_dir/photo-$i.jpg"
done
rm "$set_dir/base.png"
files=("$set_dir"/photo-*.jpg)
list="$BENCH_DIR/thumb-files.txt"
printf '%s\n' "${files[@]}" >"$list"
size_mb=$(du -cm "${files[@]}" | tail -1 | cut -f1)

ours=$(hyper_mean "xargs -a $list $WORKER thumbnail --quiet --size 320 --format webp --quality 80 --output-dir $BENCH_DIR/out-ours")
vips=$(hyper_mean "xargs -a $list vipsthumbnail --size 320 -o $BENCH_DIR/out-vips/%s.webp[Q=80]")
peer_ff=$(hyper_mean "while read -r f; do ffmpeg -v error -y -i \"\$f\" -vf scale=320:-1:flags=lanczos -c:v libwebp -quality 80 $BENCH_DIR/out-ffmpeg/\$(basename \"\$f\").webp; done <$list")

# Same output size from all three.
python3 - "$BENCH_DIR" <<'PY' >&2
import subprocess, sys, glob
for d in ("out-ours", "out-vips", "out-ffmpeg"):
    f = sorted(glob.glob(f"{sys.argv[1]}/{d}/*.webp"))[0]
    print(d, subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", f], capture_output=True, text=True).stdout.strip())
PY
per_ours=$(python3 -c "print($ours/$COUNT)")
per_vips=$(python3 -c "print($vips/$COUNT)")
per_ff=$(python3 -c "print($peer_ff/$COUNT)")
printf '12 MP JPEG to 320 px WebP, per image (%d photos, %d MB)\t%s\tvipsthumbnail --size 320 (one process)\t%s\t%s faster\t>= 4x\n' \
    "$COUNT" "$size_mb" "$(fmt_ms "$per_ours")" "$(fmt_ms "$per_vips")" "$(ratio "$per_ours" "$per_vips")"
printf '12 MP JPEG to 320 px WebP, per image (%d photos)\t%s\tffmpeg -i F -vf scale=320:-1 (a process per photo)\t%s\t%s faster\t\n' \
    "$COUNT" "$(fmt_ms "$per_ours")" "$(fmt_ms "$per_ff")" "$(ratio "$per_ours" "$per_ff")"
