-- 0006 media versioning: the intent of the seed's "Example Migration: Adding Media Versioning",
-- without its four defects (each has a test in Tests/MediaNestMigrationsTests):
--   1. its trigger fired on UPDATE and itself UPDATEd media_items, so it re-entered itself until
--      "stack depth limit exceeded". Here the chain is maintained by a BEFORE INSERT trigger
--      only; its UPDATE fires no INSERT trigger, so there is no recursion.
--   2. it recomputed `version` on every UPDATE. Here version (and parent_id) are fixed at INSERT;
--      a later UPDATE that tries to change them is refused.
--   3. it cleared is_latest_version only on rows sharing NEW.parent_id, so the original (whose
--      parent_id is NULL) stayed "latest" next to the new version. Here the whole chain, root
--      included, is cleared.
--   4. it ran CREATE INDEX CONCURRENTLY inside BEGIN/COMMIT, which PostgreSQL refuses. The index
--      is built in 0007, a no-transaction migration.
--
-- The model. A version chain is rooted at the original item (parent_id NULL, version 1). Every
-- later version points parent_id at the ROOT, not at its predecessor, so the chain is one level
-- deep: "the chain of X" is `id = root OR parent_id = root`, no recursive query is needed, and
-- the latest version is simply the member with the highest version, which is the single member
-- with is_latest_version = true (enforced by a unique index). Inserting with parent_id naming a
-- non-root version is accepted and re-pointed at that version's root.
-- Version numbers are max(version in chain) + 1 at insert time, computed while holding the root's
-- row lock, so concurrent inserts into one chain serialise and never share a number (the unique
-- index idx_media_items_parent_version of 0007 backs this up).

ALTER TABLE media_items
    ADD COLUMN is_latest_version boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT media_items_root_is_version_one CHECK ((parent_id IS NULL) = (version = 1));

-- At most one latest version per chain (the root's id identifies the chain).
CREATE UNIQUE INDEX media_items_one_latest_per_chain
    ON media_items ((coalesce(parent_id, id))) WHERE is_latest_version;

CREATE FUNCTION media_items_assign_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    named_parent_root uuid;
    root_id           uuid;
    root_owner_id     uuid;
BEGIN
    IF NEW.parent_id IS NULL THEN
        NEW.version := 1;
        NEW.is_latest_version := true;
        RETURN NEW;
    END IF;

    -- parent_id is immutable after insert, so reading it without a lock is safe; locking only
    -- the root keeps the lock order the same for every inserter (no deadlocks).
    SELECT parent_id INTO named_parent_root FROM media_items WHERE id = NEW.parent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'media item %: parent % does not exist', NEW.id, NEW.parent_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    NEW.parent_id := coalesce(named_parent_root, NEW.parent_id);

    SELECT id, owner_id INTO root_id, root_owner_id
      FROM media_items WHERE id = NEW.parent_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'media item %: parent % does not exist', NEW.id, NEW.parent_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.owner_id IS DISTINCT FROM root_owner_id THEN
        RAISE EXCEPTION 'media item %: a new version must have the owner of the original (%)',
                        NEW.id, root_owner_id
            USING ERRCODE = 'check_violation';
    END IF;

    -- A fresh snapshot after the lock (READ COMMITTED): sees versions committed meanwhile.
    SELECT max(version) + 1 INTO NEW.version
      FROM media_items WHERE id = root_id OR parent_id = root_id;

    UPDATE media_items SET is_latest_version = false
     WHERE (id = root_id OR parent_id = root_id) AND is_latest_version;
    NEW.is_latest_version := true;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION media_items_assign_version() IS
    'BEFORE INSERT on media_items: numbers a new version and makes it the only latest one of its chain.';

CREATE TRIGGER media_items_assign_version
    BEFORE INSERT ON media_items
    FOR EACH ROW EXECUTE FUNCTION media_items_assign_version();

CREATE FUNCTION media_items_keep_version_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.version IS DISTINCT FROM OLD.version THEN
        RAISE EXCEPTION 'media item %: parent_id and version are fixed when the item is inserted; insert a new version instead',
                        OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER media_items_keep_version_fixed
    BEFORE UPDATE OF parent_id, version ON media_items
    FOR EACH ROW EXECUTE FUNCTION media_items_keep_version_fixed();

-- When the latest version is deleted, the highest remaining member of the chain becomes latest.
CREATE FUNCTION media_items_promote_previous_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chain_root uuid := coalesce(OLD.parent_id, OLD.id);
BEGIN
    IF NOT OLD.is_latest_version OR OLD.parent_id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM media_items WHERE id = chain_root FOR UPDATE;
    UPDATE media_items SET is_latest_version = true
     WHERE id = (SELECT id FROM media_items
                  WHERE id = chain_root OR parent_id = chain_root
                  ORDER BY version DESC LIMIT 1)
       AND NOT is_latest_version
       AND NOT EXISTS (SELECT 1 FROM media_items
                        WHERE (id = chain_root OR parent_id = chain_root) AND is_latest_version);
    RETURN NULL;
END;
$$;
CREATE TRIGGER media_items_promote_previous_version
    AFTER DELETE ON media_items
    FOR EACH ROW EXECUTE FUNCTION media_items_promote_previous_version();
