-- medianest:no-transaction
-- Reverts 0016: no regrouping triggers, 0014's lock step and marking, no covering index.
DROP TRIGGER IF EXISTS media_items_regroup_duplicates_on_delete ON media_items;
DROP TRIGGER IF EXISTS media_items_regroup_duplicates ON media_items;
DROP FUNCTION IF EXISTS media_items_regroup_duplicates();
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
DROP FUNCTION IF EXISTS mark_content_duplicates(uuid[], text[]);
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_similar;
