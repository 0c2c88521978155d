-- medianest:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_webhooks_unprocessed;
DROP INDEX CONCURRENTLY IF EXISTS idx_processing_jobs_pending;
DROP INDEX CONCURRENTLY IF EXISTS idx_user_sessions_user_active_expires;
DROP INDEX CONCURRENTLY IF EXISTS idx_collection_items_collection_position;
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_search;
DROP INDEX CONCURRENTLY IF EXISTS idx_media_metadata_external_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_status_type;
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_owner_created;
