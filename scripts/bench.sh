#!/usr/bin/env bash
# `make bench`: measures each capability against the tool a user would pick instead, in the same
# run on the same machine, and prints one table with the ratios.
#
# Each scripts/bench/NAME.sh prints tab-separated rows:
#   capability  this-project  peer-name  peer-figure  ratio  target
# where "ratio" is how many times faster this project is (>1 is better) unless the row says otherwise.
# Run one with: make bench ONLY=hash, or several in one run: make bench ONLY="queue thumbnail-daemon"
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
ensure_packages
log "building release"
swift build -c release >/dev/null
export BIN_DIR="$(swift_bin_path release)"
export WORKER="$BIN_DIR/medianest-worker"
export BENCH_DIR="$(mktemp -d /tmp/medianest-bench.XXXXXX)"
trap 'pg_stop; rm -rf "$BENCH_DIR"' EXIT
pg_start
trap 'pg_stop; rm -rf "$BENCH_DIR"' EXIT

rows="$BENCH_DIR/rows.tsv"
: >"$rows"
for script in scripts/bench/*.sh; do
    name="$(basename "$script" .sh)"
    if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
    log "bench: $name"
    bash "$script" >>"$rows" || echo -e "$name\tFAILED\t\t\t\t" >>"$rows"
done

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "Machine: $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(. /etc/os-release; echo "$PRETTY_NAME"), $(swift --version 2>/dev/null | head -1 | sed 's/.*Swift version \([^ ]*\).*/Swift \1/')"
echo
python3 - "$rows" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
header = ["capability", "medianest-worker", "peer", "peer figure", "ratio", "target"]
table = [header] + [(r + [""] * 6)[:6] for r in rows]
widths = [max(len(row[i]) for row in table) for i in range(6)]
def line(row): return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for row in table[1:]: print(line(row))
PY
