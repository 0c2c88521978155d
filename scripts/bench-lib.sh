# Helpers for scripts/bench/*.sh. Source it.
set -euo pipefail

# mean_seconds NAME COMMAND...: runs hyperfine and prints the mean wall time in seconds.
hyper_mean() {
    local json="$BENCH_DIR/hyperfine-$RANDOM.json"
    local runs="${RUNS:-5}"
    hyperfine --style none --warmup 1 --runs "$runs" --export-json "$json" "$@" >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.6f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$json"
}

ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print("%.2fx" % (b/a) if a>0 else "n/a")' "$1" "$2"; }
fmt_s() { python3 -c 'import sys; print("%.2f s" % float(sys.argv[1]))' "$1"; }
fmt_ms() { python3 -c 'import sys; print("%.2f ms" % (float(sys.argv[1])*1000))' "$1"; }

# make_phone_jpegs DIR COUNT: COUNT distinct 12 MP phone-like JPEGs in DIR (photo-NN.jpg), made
# once per bench run and shared by the rows that read them: a photo-like 4000x3000 picture
# (fractal detail, soft edges, grain), then COUNT variants with different grain, 4:2:0 at about
# quality 95, about 2.5 MB each, like a phone's 12 MP JPEG.
make_phone_jpegs() {
    local dir="$1" count="$2" i
    mkdir -p "$dir"
    if [[ -f "$dir/.complete-$count" ]]; then return 0; fi
    convert -seed 7 -size 4000x3000 plasma:fractal -blur 0x1 -attenuate 0.25 +noise Gaussian "$dir/base.png"
    for i in $(seq -w 1 "$count"); do
        ffmpeg -nostdin -hide_banner -loglevel error -y -i "$dir/base.png" -vf "noise=alls=6:allf=u:all_seed=$i,format=yuvj420p" -q:v 2 "$dir/photo-$i.jpg"
    done
    rm "$dir/base.png"
    touch "$dir/.complete-$count"
}

# hyper_wall_cpu COMMAND: "wall-mean cpu-mean" in seconds (cpu = user + system of the command).
hyper_wall_cpu() {
    local json="$BENCH_DIR/hyperfine-$RANDOM.json"
    hyperfine --style none --warmup 1 --runs "${RUNS:-5}" --export-json "$json" "$1" >/dev/null 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.6f %.6f" % (r["mean"], r["user"] + r["system"]))' "$json"
}
