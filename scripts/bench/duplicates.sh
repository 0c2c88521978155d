#!/usr/bin/env bash
# `medianest-worker duplicates` on a library of 100,000 photos of one owner: synthetic 64-bit
# perceptual hashes (random, with one item in ten a near copy of another: up to 4 bits flipped) and
# one item in fifty an exact copy (same SHA-256). Times the whole command (connect, both queries,
# the multi-index search, the JSON lines) with hyperfine. Target: under 1 s (issue 17).
source "$(dirname "$0")/../bench-lib.sh"
N="${DUPLICATES_ITEMS:-100000}"
db="bench_duplicates"
createdb "$db"
export PGDATABASE="$db"
export PGOPTIONS="-c client_min_messages=warning"
url="host=$PGHOST port=$PGPORT user=medianest dbname=$db"
"$WORKER" migrate up --database-url "$url" >/dev/null
owner="00000000-0000-4000-8000-00000000d001"
psql -q -o /dev/null -v ON_ERROR_STOP=1 -v n="$N" -v owner="$owner" <<'SQL'
INSERT INTO users (id, email, password_hash) VALUES (:'owner', 'duplicates@medianest.local', 'x');
-- Random 64-bit hashes from two random 32-bit halves; every tenth item copies an earlier one
-- with up to 8 random bits flipped; every fiftieth has the SHA-256 of an earlier item.
CREATE TEMP TABLE h AS
SELECT g, ((random() * 4294967295)::bigint << 32) # (random() * 4294967295)::bigint AS hash
  FROM generate_series(1, :n) g;
UPDATE h SET hash = o.hash # ((1::bigint << (random() * 62)::int) | (1::bigint << (random() * 62)::int)
                              | (1::bigint << (random() * 62)::int) | (1::bigint << (random() * 62)::int))
  FROM h o
 WHERE o.g = h.g / 2 AND h.g % 10 = 0;
INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, status, checksum_sha256,
                         perceptual_hash, created_at)
SELECT :'owner', 'p' || g || '.jpg', 'p' || g || '.jpg', 'image/jpeg', 'bench/p' || g || '.jpg', 'ready',
       encode(sha256(convert_to(CASE WHEN g % 50 = 0 THEN (g / 3)::text ELSE g::text END, 'UTF8')), 'hex'),
       hash, now() - make_interval(secs => :n - g)
  FROM h;
SELECT mark_exact_duplicates(array_agg(one_item))
  FROM (SELECT min(id::text)::uuid AS one_item FROM media_items
         GROUP BY owner_id, checksum_sha256 HAVING count(*) > 1) groups;
SQL
# As autovacuum leaves a settled library: the visibility map set (index-only scans).
psql -q -c 'VACUUM ANALYZE media_items'
groups=$("$WORKER" duplicates --json --owner "$owner" --database-url "$url" | wc -l)
RUNS=5
ours=$(hyper_mean "$WORKER duplicates --json --owner $owner --database-url '$url'")
# CPU of the command itself (user + system, mean of 3 runs): what a loaded machine cannot inflate.
cpu=$(python3 - "$WORKER" "$owner" "$url" <<'PY'
import resource, subprocess, sys
worker, owner, url = sys.argv[1:]
for _ in range(3):
    subprocess.run([worker, "duplicates", "--json", "--owner", owner, "--database-url", url], stdout=subprocess.DEVNULL, check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.0f ms" % ((usage.ru_utime + usage.ru_stime) / 3 * 1000))
PY
)
printf 'duplicates, %s items (%s groups)\t%s wall, %s CPU\t-\t-\t-\t< 1 s\n' "$N" "$groups" "$(fmt_ms "$ours")" "$cpu"
dropdb "$db"
