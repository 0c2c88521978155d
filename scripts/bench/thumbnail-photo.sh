#!/usr/bin/env bash
# Per photo, everything the thumbnail job does: a batch of 12 MP phone-like JPEGs, each made into
# the 320 px WebP thumbnail (quality 80) and the 1440 px JPEG preview (quality 80), with the
# ThumbHash, the colour handling (these photos are untagged: sRGB, no conversion) and the
# perceptual hash. Ours: `medianest-worker thumbnail --preview-size 1440`, one process for the
# batch, running the jobs' own code (StillRendering.decode once at 1440, then StillOutputs.make).
# The peer, in the same run: `vipsthumbnail` making the same two outputs, one batch process per
# size (it has no way to make two sizes from one decode). Wall time is the headline; CPU (user +
# system) is printed too because wall time is noisy on a shared machine. Beside our CPU per photo:
# libjpeg-turbo's decode alone at the scale our decode used (`djpeg -scale M/8`, a process per
# photo, output thrown away), the floor of what any JPEG path pays.
source "$(dirname "$0")/../bench-lib.sh"
COUNT="${THUMB_COUNT:-50}"
THUMB_Q=80
PREVIEW_Q=80
set_dir="$BENCH_DIR/thumb-set"
ours_dir="$BENCH_DIR/photo-ours"
vips_dir="$BENCH_DIR/photo-vips"
mkdir -p "$ours_dir" "$vips_dir"
make_phone_jpegs "$set_dir" "$COUNT"
files=("$set_dir"/photo-*.jpg)
list="$BENCH_DIR/photo-files.txt"
printf '%s\n' "${files[@]}" >"$list"
size_mb=$(du -cm "${files[@]}" | tail -1 | cut -f1)

ours_cmd="xargs -a $list $WORKER thumbnail --quiet --size 320 --format webp --quality $THUMB_Q --preview-size 1440 --preview-format jpeg --preview-quality $PREVIEW_Q --output-dir $ours_dir"
vips_cmd="xargs -a $list vipsthumbnail --size 320 -o $vips_dir/%s-t.webp[Q=$THUMB_Q] && xargs -a $list vipsthumbnail --size 1440 -o $vips_dir/%s-p.jpg[Q=$PREVIEW_Q]"

# The scale TurboJPEG decoded at, as our decode reports it (the same for every photo of the set).
scale=$("$WORKER" thumbnail --size 320 --preview-size 1440 --output-dir "$ours_dir" "${files[0]}" \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline()).get("jpeg_scale", ""))')
[[ "$scale" =~ ^[0-9]+/[0-9]+$ ]] || { echo "no TurboJPEG scale in the thumbnail command's output (got '$scale')" >&2; exit 1; }

read -r ours ours_cpu < <(hyper_wall_cpu "$ours_cmd")
read -r vips vips_cpu < <(hyper_wall_cpu "sh -c '$vips_cmd'")
read -r _ decode_cpu < <(RUNS=3 hyper_wall_cpu "while read -r f; do djpeg -scale $scale -outfile /dev/null \"\$f\"; done <$list")

# Same outputs from both: sizes, and the bytes they take (the same quality setting, two encoders).
probe_size() { ffprobe -v quiet -show_entries stream=width,height -of csv=p=0 "$1"; }
first="$(basename "${files[0]}")"
for pair in "$ours_dir/$first.webp $vips_dir/${first%.jpg}-t.webp 320,240" "$ours_dir/$first.preview.jpg $vips_dir/${first%.jpg}-p.jpg 1440,1080"; do
    read -r a b want <<<"$pair"
    [[ "$(probe_size "$a")" == "$want" && "$(probe_size "$b")" == "$want" ]] || {
        echo "output sizes differ: $a $(probe_size "$a"), $b $(probe_size "$b"), want $want" >&2; exit 1; }
done
kib() { du -cb "$@" | tail -1 | python3 -c "import sys; print('%.0f KiB' % (int(sys.stdin.read().split()[0]) / 1024 / $COUNT))"; }
sizes="outputs per photo: ours $(kib "$ours_dir"/*.webp) + $(kib "$ours_dir"/*.preview.jpg), vips $(kib "$vips_dir"/*-t.webp) + $(kib "$vips_dir"/*-p.jpg)"

per() { python3 -c "print($1/$COUNT)"; }
# The ratio as the issue states it: our time / vips's time (lower is better).
time_ratio() { python3 -c 'import sys; print("%.2fx of vips" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
printf '12 MP JPEG to 320 px WebP + 1440 px JPEG + ThumbHash + colour + pHash, per photo (%d photos, %d MB)\t%s (CPU %s; TurboJPEG decode alone at %s: CPU %s)\tvipsthumbnail --size 320 and --size 1440, a batch process per size (%s)\t%s (CPU %s)\t%s (CPU %s)\t<= 0.4x\n' \
    "$COUNT" "$size_mb" "$(fmt_ms "$(per "$ours")")" "$(fmt_ms "$(per "$ours_cpu")")" "$scale" "$(fmt_ms "$(per "$decode_cpu")")" \
    "$sizes" "$(fmt_ms "$(per "$vips")")" "$(fmt_ms "$(per "$vips_cpu")")" "$(time_ratio "$ours" "$vips")" "$(time_ratio "$ours_cpu" "$vips_cpu")"
