#!/usr/bin/env bash
# Probe + MIME per file over a mixed set: `medianest-worker probe` (one process, libavformat and
# libmagic in-process) against what a shell script would do per file:
# `ffprobe -show_format -show_streams` + `file --mime-type`.
source "$(dirname "$0")/../bench-lib.sh"
set_dir="$BENCH_DIR/probe-set"
mkdir -p "$set_dir"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
ff -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=sample_rate=48000 -t 3 -c:v libx264 -preset ultrafast -c:a aac -shortest "$set_dir/a.mp4"
ff -f lavfi -i testsrc2=size=640x360:rate=30 -t 2 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 "$set_dir/b.webm"
ff -f lavfi -i testsrc2=size=640x360:rate=30 -t 2 -c:v libx264 -preset ultrafast "$set_dir/c.mkv"
ff -f lavfi -i sine=sample_rate=44100 -t 3 -c:a libmp3lame "$set_dir/d.mp3"
ff -f lavfi -i sine=sample_rate=44100 -t 3 -c:a flac "$set_dir/e.flac"
ff -f lavfi -i testsrc2=size=1920x1080 -frames:v 1 "$set_dir/f.jpg"
ff -f lavfi -i testsrc2=size=800x600 -frames:v 1 "$set_dir/g.png"
ff -f lavfi -i testsrc2=size=800x600 -frames:v 1 "$set_dir/h.webp"
# 10 copies of each: 80 files.
for i in $(seq 1 9); do for f in "$set_dir"/?.*; do cp "$f" "$set_dir/${i}_$(basename "$f")"; done; done
files=("$set_dir"/*)
count=${#files[@]}
list="$BENCH_DIR/probe-files.txt"
printf '%s\n' "${files[@]}" >"$list"
ours=$(hyper_mean "xargs -a $list $WORKER probe --no-checksums >/dev/null")
peer=$(hyper_mean "while read -r f; do ffprobe -v error -show_format -show_streams \"\$f\" >/dev/null; file --mime-type \"\$f\" >/dev/null; done <$list")
per_ours=$(python3 -c "print($ours/$count)")
per_peer=$(python3 -c "print($peer/$count)")
printf 'Probe + MIME per file (%d mixed files)\t%s\tffprobe -show_format -show_streams + file --mime-type\t%s\t%s faster\t>= 10x\n' \
    "$count" "$(fmt_ms "$per_ours")" "$(fmt_ms "$per_peer")" "$(ratio "$per_ours" "$per_peer")"
