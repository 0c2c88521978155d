#!/usr/bin/env bash
# Import of 10,000 small photos (distinct 2-3 KiB JPEGs in 100 folders) into an empty library:
# `medianest-worker import` (hard links, SHA-256 + MD5, libmagic, batched inserts, one
# enqueue_media_processing per item) against the shell pipeline an operator would write:
#   cp -al (hard links) + find | xargs sha256sum + find | xargs file --mime-type + one psql COPY
#   + one INSERT … SELECT + enqueue_media_processing for every row,
# all batched (a per-file loop of cp + psql would be ~100x slower, and unfair). A second row
# gives `cp -al` alone, the floor for placing the files.
source "$(dirname "$0")/../bench-lib.sh"
src="$BENCH_DIR/import-src"
store="$BENCH_DIR/import-store"
db="bench_import"
mkdir -p "$src"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=64x48 -frames:v 1 "$BENCH_DIR/tiny.jpg"
python3 - "$BENCH_DIR/tiny.jpg" "$src" <<'PY'
import os, sys
jpeg = open(sys.argv[1], "rb").read()
for i in range(10000):
    d = os.path.join(sys.argv[2], "album-%02d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    # Bytes after the JPEG's end marker: the picture is unchanged, the checksum unique.
    open(os.path.join(d, "IMG_%05d.jpg" % i), "wb").write(jpeg + b"medianest-bench-%d" % i)
PY
createdb "$db"
url="host=$PGHOST port=$PGPORT user=medianest dbname=$db"
MEDIANEST_MIGRATIONS_DIR="$(cd "$(dirname "$0")/../.." && pwd)/migrations" "$WORKER" migrate up --database-url "$url" >/dev/null 2>&1
psql -q -d "$db" -c "INSERT INTO users (email) VALUES ('bench@example.org')"
reset="rm -rf $store && mkdir -p $store && psql -q -d $db -c 'TRUNCATE media_items CASCADE'"

cat >"$BENCH_DIR/peer-import.sh" <<PEER
set -euo pipefail
cd "$src"
cp -al . "$store/imports"
find . -type f -print0 | xargs -0 -n 2000 sha256sum | sed 's|  \./|\t|' >"$BENCH_DIR/sums.tsv"
find . -type f -print0 | xargs -0 -n 2000 file --mime-type -F '	' | sed 's|^\./||; s|	 |	|' >"$BENCH_DIR/mimes.tsv"
psql -q -d "$db" -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE s (sha text, path text);
CREATE TEMP TABLE t (path text, mime text);
\\\\copy s FROM '$BENCH_DIR/sums.tsv'
\\\\copy t FROM '$BENCH_DIR/mimes.tsv'
WITH i AS (
  INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, checksum_sha256)
  SELECT (SELECT id FROM users WHERE email = 'bench@example.org'), regexp_replace(s.path, '.*/', ''), regexp_replace(s.path, '.*/', ''),
         t.mime, 'imports/' || s.path, s.sha
    FROM s JOIN t USING (path)
  RETURNING id)
SELECT count(*) FROM i, LATERAL enqueue_media_processing(i.id);
SQL
PEER

export RUNS=3
ours=$(hyper_mean --prepare "$reset" "$WORKER import --owner bench@example.org --storage-root $store --database-url '$url' $src")
# Check the last run really imported everything.
items=$(psql -At -d "$db" -c "SELECT count(*) FROM media_items")
jobs=$(psql -At -d "$db" -c "SELECT count(*) FROM processing_jobs")
[[ "$items" == 10000 && "$jobs" == 30000 ]] || { echo "import bench: expected 10000 items and 30000 jobs, got $items and $jobs" >&2; exit 1; }
peer=$(hyper_mean --prepare "$reset" "bash $BENCH_DIR/peer-import.sh")
items=$(psql -At -d "$db" -c "SELECT count(*) FROM media_items")
[[ "$items" == 10000 ]] || { echo "import bench: the peer script made $items items" >&2; exit 1; }
floor=$(hyper_mean --prepare "rm -rf $store && mkdir -p $store" "cp -al $src $store/imports")
printf 'import 10,000 small photos (link, hash, sniff, rows, jobs)\t%s\tcp -al + xargs sha256sum + xargs file + psql COPY/INSERT/enqueue (no MD5, no sync)\t%s\t%s\t< 60 s\n' \
    "$(fmt_s "$ours")" "$(fmt_s "$peer")" "$(ratio "$ours" "$peer")"
printf 'import 10,000 small photos\t%s\tcp -al alone (hard links only, no database)\t%s\t%s of its time\t\n' \
    "$(fmt_s "$ours")" "$(fmt_s "$floor")" "$(python3 -c "print('%.1fx' % ($ours/$floor))")"
