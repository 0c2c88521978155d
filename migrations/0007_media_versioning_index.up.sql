-- medianest:no-transaction
-- 0007 the version-chain index of 0006, built without blocking writes.
--
-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block (the seed's example did that,
-- defect 4), so this file runs outside one, statement by statement (see migrations/README.md).
-- Each statement must be safe to run again after a failure part-way: a failed concurrent build
-- leaves an INVALID index behind, which IF NOT EXISTS would then skip, so the index is dropped
-- (if present) and built afresh.
-- UNIQUE: no two versions of one chain may share a number (backs up the locking in
-- media_items_assign_version). It also serves the parent_id foreign key.

DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_parent_version;

CREATE UNIQUE INDEX CONCURRENTLY idx_media_items_parent_version
    ON media_items (parent_id, version) WHERE parent_id IS NOT NULL;
