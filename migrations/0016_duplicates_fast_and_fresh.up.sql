-- medianest:no-transaction
-- 0016 duplicates: a covering index for the near-duplicate search, and exact-duplicate flags that
-- stay right when an item's checksum changes or an item is deleted.
--
-- Outside a transaction (the index is built CONCURRENTLY on a live library); every statement is
-- safe to run twice (migrations/README.md). docs/DUPLICATES.md describes the design.
--
-- 1. idx_media_items_similar: `medianest-worker duplicates` reads every candidate's
--    (owner_id, id, perceptual_hash) in (owner_id, created_at, id) order. With this partial,
--    covering index that is one index-only scan, in order, without reading the rows (whose
--    metadata jsonb is large) and without a sort: a quarter of the server's time of 0014's plan.
--    Its predicate must be repeated exactly by the query (DuplicateFinder.swift).
-- 2. mark_content_duplicates(owners, checksums): 0014's recomputation for (owner, checksum)
--    groups named directly; mark_exact_duplicates(items) now calls it.
-- 3. lock_media_items_for_content(): also takes the group lock, and locks the rows, of the
--    content an item is LEAVING (its current checksum, when the one about to be recorded differs),
--    so that the trigger below may re-point that group.
-- 4. Triggers media_items_regroup_duplicates(_on_delete), after a checksum_sha256 change or a DELETE: the
--    group the item left (and, for a change, the one it joined) is recomputed. A deleted original
--    hands over to the next earliest copy; a copy left alone loses its flag.

DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_similar;
CREATE INDEX CONCURRENTLY idx_media_items_similar
    ON media_items (owner_id, created_at, id) INCLUDE (perceptual_hash)
 WHERE perceptual_hash IS NOT NULL AND NOT (metadata ? 'duplicate_of');

-- Recomputes metadata.duplicate_of in the (owner, checksum) groups given (parallel arrays): the
-- earliest member (created_at, then id) is the original and has no duplicate_of; every other
-- member points at it; a group of one has no flag. Rows already right are not written. The
-- caller holds the groups' locks (advisory, then the rows: see lock_media_items_for_content).
-- Returns the number of items changed.
CREATE OR REPLACE FUNCTION mark_content_duplicates(owner_ids uuid[], checksums text[]) RETURNS integer
LANGUAGE sql AS $$
    WITH groups AS (
        SELECT DISTINCT g.owner_id, g.checksum
          FROM unnest(owner_ids, checksums) AS g(owner_id, checksum)
         WHERE g.owner_id IS NOT NULL AND g.checksum IS NOT NULL
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
COMMENT ON FUNCTION mark_content_duplicates(uuid[], text[]) IS
    'Sets metadata.duplicate_of to the earliest item (created_at, id) in each (owner, checksum) group given; the original, and an item alone, have none.';

CREATE OR REPLACE FUNCTION mark_exact_duplicates(item_ids uuid[]) RETURNS integer
LANGUAGE sql AS $$
    SELECT mark_content_duplicates(array_agg(i.owner_id), array_agg(i.checksum_sha256::text))
      FROM media_items i
     WHERE i.id = ANY(item_ids) AND i.checksum_sha256 IS NOT NULL
$$;
COMMENT ON FUNCTION mark_exact_duplicates(uuid[]) IS
    'Sets metadata.duplicate_of to the earliest item (created_at, id) in the (owner, checksum) group of each item given; the original has none.';

-- 0014's lock step, plus the groups the content items are leaving. Statement 1 reads the items'
-- current checksums without locking them and takes the advisory locks of both contents, old and
-- new, in key order; statement 2 (a snapshot taken after those were granted) locks the items and
-- the members of every one of those groups, in id order. Same signature and result as 0014, so a
-- worker of the previous release keeps working against this schema.
CREATE OR REPLACE FUNCTION lock_media_items_for_content(item_ids uuid[], content_item_ids uuid[], checksums text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    content record;
BEGIN
    FOR content IN
        SELECT DISTINCT k.key
          FROM unnest(content_item_ids, checksums) AS c(item_id, checksum)
          JOIN media_items m ON m.id = c.item_id
         CROSS JOIN LATERAL (VALUES (hashtext(m.owner_id::text || '/' || c.checksum)),
                                    (hashtext(m.owner_id::text || '/' || m.checksum_sha256))) AS k(key)
         WHERE k.key IS NOT NULL
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
                       JOIN media_items g ON g.owner_id = o.owner_id
                                         AND (g.checksum_sha256 = c.checksum OR g.checksum_sha256 = o.checksum_sha256))
      ORDER BY m.id
        FOR UPDATE OF m;
END;
$$;
COMMENT ON FUNCTION lock_media_items_for_content(uuid[], uuid[], text[]) IS
    'Takes the (owner, checksum) advisory locks of the contents recorded and left, in key order, then locks the items and those groups in id order.';

-- After an item's checksum changes or the item is deleted: the group it left, and the one it
-- joined, are recomputed. Only when this transaction can have the group's lock at once
-- (pg_try_advisory_xact_lock; the engine's transactions already hold it, advisory locks are
-- re-entrant): a transaction that holds it is recording a checksum of that group, and it
-- recomputes the group in a statement that starts after this row's change commits (its row-lock
-- step waits for this row, or it holds the row and this change waited for it). Waiting for the
-- lock here, while holding this row, could close a cycle with such a transaction.
CREATE OR REPLACE FUNCTION media_items_regroup_duplicates() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    owners uuid[] := '{}';
    contents text[] := '{}';
BEGIN
    IF OLD.checksum_sha256 IS NOT NULL
       AND pg_try_advisory_xact_lock(1296983157, hashtext(OLD.owner_id::text || '/' || OLD.checksum_sha256)) THEN
        owners := owners || OLD.owner_id;
        contents := contents || OLD.checksum_sha256::text;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.checksum_sha256 IS NOT NULL
       AND pg_try_advisory_xact_lock(1296983157, hashtext(NEW.owner_id::text || '/' || NEW.checksum_sha256)) THEN
        owners := owners || NEW.owner_id;
        contents := contents || NEW.checksum_sha256::text;
    END IF;
    IF cardinality(owners) > 0 THEN
        PERFORM mark_content_duplicates(owners, contents);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION media_items_regroup_duplicates() IS
    'AFTER UPDATE OF checksum_sha256 / DELETE on media_items: recomputes the exact-duplicate groups the item left and joined.';

-- Two triggers on one function: a DELETE trigger's WHEN cannot name NEW.
DROP TRIGGER IF EXISTS media_items_regroup_duplicates ON media_items;
CREATE TRIGGER media_items_regroup_duplicates
    AFTER UPDATE OF checksum_sha256 ON media_items
    FOR EACH ROW
    WHEN (OLD.checksum_sha256 IS DISTINCT FROM NEW.checksum_sha256)
    EXECUTE FUNCTION media_items_regroup_duplicates();
DROP TRIGGER IF EXISTS media_items_regroup_duplicates_on_delete ON media_items;
CREATE TRIGGER media_items_regroup_duplicates_on_delete
    AFTER DELETE ON media_items
    FOR EACH ROW
    WHEN (OLD.checksum_sha256 IS NOT NULL)
    EXECUTE FUNCTION media_items_regroup_duplicates();
