-- medianest:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_live_photo;
