-- medianest:no-transaction
-- 0014 duplicates: exact copies flagged, one import per content, a perceptual hash per still.
--
-- Outside a transaction (the indexes are built CONCURRENTLY on a live library); every statement
-- is safe to run twice (see migrations/README.md). docs/DUPLICATES.md describes the design.
--
-- 1. Exact duplicates. Items of one owner with the same checksum_sha256 are one group; the
--    group's original is its earliest item (created_at, then id), and every other member has
--    metadata.duplicate_of = the original's id. mark_exact_duplicates() recomputes that for the
--    groups it is given; the engine calls it in every transaction that records a checksum, after
--    lock_media_items_for_content() took the groups' locks (see the function).
-- 2. Imports. An owner's library never holds two imported items (storage_path under imports/)
--    of one content, unless one of them is already flagged as a duplicate (an older library
--    that raced before this migration; the backfill below flags those first). `import` inserts
--    with ON CONFLICT DO NOTHING on this index, so two imports running at once add it once.
-- 3. Near duplicates. perceptual_hash: the 64-bit DCT hash of the decoded still (the thumbnail
--    job), a signed bigint holding the 64 bits; hamming_distance() compares two of them.

ALTER TABLE media_items ADD COLUMN IF NOT EXISTS perceptual_hash bigint;
COMMENT ON COLUMN media_items.perceptual_hash IS
    '64-bit DCT perceptual hash of the still (bit 63 = first coefficient); compare with hamming_distance().';

-- Finds an item's content group (and serves the import rule's conflicts).
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_owner_sha256;
CREATE INDEX CONCURRENTLY idx_media_items_owner_sha256
    ON media_items (owner_id, checksum_sha256) WHERE checksum_sha256 IS NOT NULL;

-- The number of bits in which two perceptual hashes differ. PostgreSQL 15's bit_count takes
-- bit and bytea, not bigint: the bigint's two's complement cast to bit(64) is its 64 bits.
CREATE OR REPLACE FUNCTION hamming_distance(a bigint, b bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT bit_count((a # b)::bit(64))::integer
$$;
COMMENT ON FUNCTION hamming_distance(bigint, bigint) IS
    'Bits in which two 64-bit perceptual hashes differ (0 = the same picture, 64 = opposite).';

-- Lock step of every transaction that records checksums: first the content locks, then the
-- items AND every item of their content groups, in id order.
--
-- Why both: two items of one content processed on two workers at once must agree on one
-- original. Under READ COMMITTED neither transaction sees the other's checksum before it
-- commits, so each must wait for the other: a transaction-level advisory lock per
-- (owner, checksum), class 1296983157 ('MNdu'), key hashtext(owner || '/' || checksum), taken in
-- key order (a hash collision only makes two groups wait for each other). It is taken BEFORE any
-- row lock: nothing waits for it while holding an item, so it closes no cycle with the engine's
-- lock order (docs/QUEUE.md). mark_exact_duplicates() then updates other members of the group (a
-- younger copy when an older one arrives late); those rows are locked here, together with the
-- transaction's own items and in the same id order, so a transaction that finishes a job of one
-- of them (it locks its items in id order) cannot deadlock with this one.
--
-- PL/pgSQL: each statement of a VOLATILE function takes a new snapshot, so the row-lock statement
-- sees every group member committed before the advisory locks were granted.
--
-- item_ids: every item the transaction finishes work on; content_item_ids and checksums (two
-- parallel arrays): those of them whose checksum it is about to record, and that checksum.
CREATE OR REPLACE FUNCTION lock_media_items_for_content(item_ids uuid[], content_item_ids uuid[], checksums text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    content record;
BEGIN
    FOR content IN
        SELECT DISTINCT hashtext(m.owner_id::text || '/' || c.checksum) AS key
          FROM unnest(content_item_ids, checksums) AS c(item_id, checksum)
          JOIN media_items m ON m.id = c.item_id
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1296983157, content.key);
    END LOOP;

    PERFORM 1
       FROM media_items m
      WHERE m.id = ANY(item_ids)
         OR m.id IN (SELECT g.id
                       FROM unnest(content_item_ids, checksums) AS c(item_id, checksum)
                       JOIN media_items o ON o.id = c.item_id
                       JOIN media_items g ON g.owner_id = o.owner_id AND g.checksum_sha256 = c.checksum)
      ORDER BY m.id
        FOR UPDATE OF m;
END;
$$;
COMMENT ON FUNCTION lock_media_items_for_content(uuid[], uuid[], text[]) IS
    'Takes the (owner, checksum) advisory locks in key order, then locks the items and their content groups in id order.';

-- Recomputes metadata.duplicate_of for the content groups of the items given (their owner and
-- their checksum_sha256 as it is now): the earliest member (created_at, then id) is the original
-- and has no duplicate_of; every other member points at it. Rows already right are not written.
-- Returns the number of items changed.
CREATE OR REPLACE FUNCTION mark_exact_duplicates(item_ids uuid[]) RETURNS integer
LANGUAGE sql AS $$
    WITH groups AS (
        SELECT DISTINCT i.owner_id, i.checksum_sha256 AS checksum
          FROM media_items i
         WHERE i.id = ANY(item_ids) AND i.checksum_sha256 IS NOT NULL
    ), members AS (
        SELECT m.id, m.metadata ->> 'duplicate_of' AS marked,
               first_value(m.id) OVER (PARTITION BY m.owner_id, m.checksum_sha256 ORDER BY m.created_at, m.id) AS original
          FROM media_items m
          JOIN groups g ON m.owner_id = g.owner_id AND m.checksum_sha256 = g.checksum
    ), changed AS (
        UPDATE media_items m
           SET metadata = CASE WHEN s.original = m.id THEN m.metadata - 'duplicate_of'
                               ELSE jsonb_set(m.metadata, '{duplicate_of}', to_jsonb(s.original::text)) END
          FROM members s
         WHERE m.id = s.id
           AND s.marked IS DISTINCT FROM (CASE WHEN s.original = s.id THEN NULL ELSE s.original::text END)
        RETURNING 1
    )
    SELECT count(*)::integer FROM changed
$$;
COMMENT ON FUNCTION mark_exact_duplicates(uuid[]) IS
    'Sets metadata.duplicate_of to the earliest item (created_at, id) in the (owner, checksum) group of each item given; the original has none.';

-- Backfill: the groups the library already has.
SELECT mark_exact_duplicates(array_agg(one_item))
  FROM (SELECT min(id::text)::uuid AS one_item FROM media_items
         WHERE checksum_sha256 IS NOT NULL
         GROUP BY owner_id, checksum_sha256 HAVING count(*) > 1) groups;

-- One imported item per content and owner (the duplicates flagged above stay outside it).
DROP INDEX CONCURRENTLY IF EXISTS media_items_one_import_per_content;
CREATE UNIQUE INDEX CONCURRENTLY media_items_one_import_per_content
    ON media_items (owner_id, checksum_sha256)
 WHERE storage_path LIKE 'imports/%' AND NOT (metadata ? 'duplicate_of');
