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
