#!/usr/bin/env bash
# 12 MP JPEG to a 320 px WebP (quality 80), per image over a batch of 50 distinct photos:
# `medianest-worker thumbnail` (one process, libavcodec in-process, JPEG lowres, the thumbnail
# job's own dispatcher) against `vipsthumbnail` (its own shrink-on-load; once as one process for
# the whole batch, once as a process per photo as a script would run it) and the ffmpeg CLI (a
# process per photo). Same inputs, same output size and format. Wall time is the headline; CPU
# time (user + system) is printed too, because on a shared machine wall time is noisy.
source "$(dirname "$0")/../bench-lib.sh"
COUNT="${THUMB_COUNT:-50}"
set_dir="$BENCH_DIR/thumb-set"
mkdir -p "$BENCH_DIR/out-ours" "$BENCH_DIR/out-vips" "$BENCH_DIR/out-vips1" "$BENCH_DIR/out-ffmpeg"
make_phone_jpegs "$set_dir" "$COUNT"
files=("$set_dir"/photo-*.jpg)
list="$BENCH_DIR/thumb-files.txt"
printf '%s\n' "${files[@]}" >"$list"
size_mb=$(du -cm "${files[@]}" | tail -1 | cut -f1)

read -r ours ours_cpu < <(hyper_wall_cpu "xargs -a $list $WORKER thumbnail --quiet --size 320 --format webp --quality 80 --output-dir $BENCH_DIR/out-ours")
read -r vips vips_cpu < <(hyper_wall_cpu "xargs -a $list vipsthumbnail --size 320 -o $BENCH_DIR/out-vips/%s.webp[Q=80]")
read -r vips1 vips1_cpu < <(RUNS=3 hyper_wall_cpu "while read -r f; do vipsthumbnail --size 320 -o $BENCH_DIR/out-vips1/%s.webp[Q=80] \"\$f\"; done <$list")
read -r peer_ff peer_ff_cpu < <(RUNS=3 hyper_wall_cpu "while read -r f; do ffmpeg -nostdin -v error -y -i \"\$f\" -vf scale=320:-1:flags=lanczos -c:v libwebp -quality 80 $BENCH_DIR/out-ffmpeg/\$(basename \"\$f\").webp; done <$list")

# Same output size from every tool.
sizes=$(for d in out-ours out-vips out-vips1 out-ffmpeg; do
    ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$(ls "$BENCH_DIR/$d"/*.webp | head -1)"
done | sort -u)
[[ "$sizes" == "320,240" ]] || { echo "output sizes differ: $sizes" >&2; exit 1; }

per() { python3 -c "print($1/$COUNT)"; }
cpu_note() { printf '%s (CPU %s)' "$(fmt_ms "$(per "$1")")" "$(fmt_ms "$(per "$2")")"; }
printf '12 MP JPEG to 320 px WebP, per image (%d photos, %d MB)\t%s\tvipsthumbnail --size 320, one process for the batch\t%s\t%s faster\t>= 4x\n' \
    "$COUNT" "$size_mb" "$(cpu_note "$ours" "$ours_cpu")" "$(cpu_note "$vips" "$vips_cpu")" "$(ratio "$(per "$ours")" "$(per "$vips")")"
printf '12 MP JPEG to 320 px WebP, per image\t%s\tvipsthumbnail --size 320, a process per photo\t%s\t%s faster\t>= 4x\n' \
    "$(cpu_note "$ours" "$ours_cpu")" "$(cpu_note "$vips1" "$vips1_cpu")" "$(ratio "$(per "$ours")" "$(per "$vips1")")"
printf '12 MP JPEG to 320 px WebP, per image\t%s\tffmpeg -i F -vf scale=320:-1 -c:v libwebp, a process per photo\t%s\t%s faster\t\n' \
    "$(cpu_note "$ours" "$ours_cpu")" "$(cpu_note "$peer_ff" "$peer_ff_cpu")" "$(ratio "$(per "$ours")" "$(per "$peer_ff")")"
