#!/usr/bin/env bash
# Transcode: `medianest-worker transcode` (libavcodec/libavfilter/libx264 in-process) against the
# ffmpeg CLI with the same settings, on 10 s of 1080p30 H.264 + AAC:
#   - to 720p H.264 (veryfast, CRF 23, yuv420p) + AAC 128 kb/s stereo, MP4 +faststart;
#     output size and SSIM/PSNR against the source downscaled to 720p (ffmpeg's ssim/psnr filters);
#   - the remux path (H.264/AAC in Matroska to MP4, no decode) against `ffmpeg -c copy`;
#   - peak RSS of one 1080p transcode (target < 400 MiB).
source "$(dirname "$0")/../bench-lib.sh"
dir="$BENCH_DIR/transcode"
mkdir -p "$dir"
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
# Natural-looking motion and detail (a moving test pattern with film grain), not flat colour.
ff -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=10,noise=alls=12:allf=t" -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
    -c:v libx264 -preset fast -crf 20 -pix_fmt yuv420p -c:a aac -b:a 192k -ac 2 "$dir/src.mp4"
ff -i "$dir/src.mp4" -c copy "$dir/src.mkv"
RUNS=${RUNS:-3}

ours_cmd="$WORKER transcode --mode always --codec h264 --crf 23 --preset veryfast --max-resolution 720 --output $dir/ours.mp4 $dir/src.mp4 >/dev/null"
cli_cmd="ffmpeg -hide_banner -loglevel error -nostdin -y -i $dir/src.mp4 -vf scale=-2:720 -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 -movflags +faststart $dir/cli.mp4"
ours=$(hyper_mean "$ours_cmd")
cli=$(hyper_mean "$cli_cmd")

# Quality against the source downscaled to 720p (same scaler for both).
quality() {
    local ssim psnr
    ssim=$(ffmpeg -hide_banner -nostdin -i "$1" -i "$dir/src.mp4" -lavfi "[1:v]scale=1280:720:flags=bicubic[ref];[0:v][ref]ssim" -f null - 2>&1 | sed -n 's/.*SSIM.* All:\([0-9.]*\).*/\1/p' | tail -1)
    psnr=$(ffmpeg -hide_banner -nostdin -i "$1" -i "$dir/src.mp4" -lavfi "[1:v]scale=1280:720:flags=bicubic[ref];[0:v][ref]psnr" -f null - 2>&1 | sed -n 's/.*PSNR.* average:\([0-9.inf]*\).*/\1/p' | tail -1)
    printf 'SSIM %s, PSNR %s dB' "$ssim" "$psnr"
}
size_mb() { python3 -c 'import os,sys; print("%.2f MB" % (os.path.getsize(sys.argv[1]) / 1e6))' "$1"; }
ours_q="$(size_mb "$dir/ours.mp4"), $(quality "$dir/ours.mp4")"
cli_q="$(size_mb "$dir/cli.mp4"), $(quality "$dir/cli.mp4")"

printf '10 s 1080p30 H.264 to 720p H.264 (veryfast, CRF 23, AAC)\t%s\tffmpeg CLI, same settings\t%s\t%s of its time\t<= 1.05x\n' \
    "$(fmt_s "$ours")" "$(fmt_s "$cli")" "$(python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1])/float(sys.argv[2])))' "$ours" "$cli")"
printf '  output size and quality vs source at 720p\t%s\tffmpeg CLI\t%s\t\tcomparable\n' "$ours_q" "$cli_q"

remux_ours=$(hyper_mean "rm -f $dir/remux.mp4; $WORKER transcode --output $dir/remux.mp4 $dir/src.mkv >/dev/null")
remux_cli=$(hyper_mean "ffmpeg -hide_banner -loglevel error -nostdin -y -i $dir/src.mkv -c copy -movflags +faststart $dir/remux-cli.mp4")
# The worker fsyncs the file and its directory before the rename (a crash never leaves a torn
# rendition); the CLI does not, so the second peer adds the same durability with sync(1).
remux_cli_sync=$(hyper_mean "ffmpeg -hide_banner -loglevel error -nostdin -y -i $dir/src.mkv -c copy -movflags +faststart $dir/remux-cli.mp4 && sync $dir/remux-cli.mp4 && sync -f $dir")
printf 'Remux 10 s 1080p H.264/AAC MKV to MP4 (+faststart)\t%s\tffmpeg -c copy\t%s\t%s faster\t\n' \
    "$(fmt_ms "$remux_ours")" "$(fmt_ms "$remux_cli")" "$(ratio "$remux_ours" "$remux_cli")"
printf 'Remux, durable (fsync file + directory)\t%s\tffmpeg -c copy + sync FILE + sync -f DIR\t%s\t%s faster\t\n' \
    "$(fmt_ms "$remux_ours")" "$(fmt_ms "$remux_cli_sync")" "$(ratio "$remux_ours" "$remux_cli_sync")"

rss_kib() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
ours_rss=$(rss_kib $WORKER transcode --mode always --max-resolution 1080 --output "$dir/rss.mp4" "$dir/src.mp4")
cli_rss=$(rss_kib ffmpeg -hide_banner -loglevel error -nostdin -y -i "$dir/src.mp4" -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 -movflags +faststart "$dir/rss-cli.mp4")
printf 'Peak RSS, one 1080p transcode (10 s 1080p30)\t%s MiB\tffmpeg CLI\t%s MiB\t\t< 400 MiB\n' \
    "$((ours_rss / 1024))" "$((cli_rss / 1024))"
rm -rf "$dir"
