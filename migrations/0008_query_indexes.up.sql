-- medianest:no-transaction
-- 0008 the seed's "Indexing Strategy", with the seed's index names, built CONCURRENTLY so that
-- running it against a live database does not block writes. Outside a transaction, statement by
-- statement (see migrations/README.md); each index is dropped first so that a re-run after a
-- failure part-way replaces an INVALID leftover of a failed concurrent build.

-- Primary indexes (performance-critical). Also serves the media_items.owner_id foreign key.
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_owner_created;
CREATE INDEX CONCURRENTLY idx_media_items_owner_created
    ON media_items (owner_id, created_at DESC);

DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_status_type;
CREATE INDEX CONCURRENTLY idx_media_items_status_type
    ON media_items (status, mime_type);

DROP INDEX CONCURRENTLY IF EXISTS idx_media_metadata_external_id;
CREATE INDEX CONCURRENTLY idx_media_metadata_external_id
    ON media_metadata (provider, external_id);

-- Full-text search. Every part is IMMUTABLE, as an index expression must be: the two-argument
-- to_tsvector(regconfig, text), coalesce, || and the jsonb -> text cast. A query uses the index
-- only when it repeats this expression exactly:
--   WHERE to_tsvector('english', coalesce(original_filename, '') || ' ' ||
--         coalesce(description, '') || ' ' || coalesce(tags::text, '')) @@ websearch_to_tsquery('english', $1)
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_search;
CREATE INDEX CONCURRENTLY idx_media_items_search
    ON media_items USING gin (to_tsvector('english',
        coalesce(original_filename, '') || ' ' ||
        coalesce(description, '') || ' ' ||
        coalesce(tags::text, '')));

-- Composite indexes for common queries.
DROP INDEX CONCURRENTLY IF EXISTS idx_collection_items_collection_position;
CREATE INDEX CONCURRENTLY idx_collection_items_collection_position
    ON collection_items (collection_id, position);

DROP INDEX CONCURRENTLY IF EXISTS idx_user_sessions_user_active_expires;
CREATE INDEX CONCURRENTLY idx_user_sessions_user_active_expires
    ON user_sessions (user_id, active, expires_at)
    WHERE active = true;

-- Partial indexes for specific use cases.
DROP INDEX CONCURRENTLY IF EXISTS idx_processing_jobs_pending;
CREATE INDEX CONCURRENTLY idx_processing_jobs_pending
    ON processing_jobs (created_at, priority)
    WHERE status IN ('pending', 'running');

DROP INDEX CONCURRENTLY IF EXISTS idx_webhooks_unprocessed;
CREATE INDEX CONCURRENTLY idx_webhooks_unprocessed
    ON webhooks (received_at)
    WHERE status IN ('received', 'processing');
