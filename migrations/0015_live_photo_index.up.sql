-- medianest:no-transaction
-- 0015 Live Photo pairing. When the metadata job of one half of a Live Photo completes, the
-- engine looks for the other half among the owner's items by its identifier
-- (metadata.live_photo.content_id; MediaNestQueue/LivePhotoLinking.swift, docs/METADATA.md).
-- Without an index that search reads every item of the owner. The index is partial (only items
-- that have a live_photo key) and its expression must be repeated exactly by the query:
--   WHERE metadata ? 'live_photo' AND owner_id = $1 AND metadata #>> '{live_photo,content_id}' = $2
-- Built CONCURRENTLY (uploads keep writing media_items), so outside a transaction; dropped first
-- so that a re-run replaces an INVALID leftover of a failed build (migrations/README.md).
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_live_photo;
CREATE INDEX CONCURRENTLY idx_media_items_live_photo
    ON media_items (owner_id, (metadata #>> '{live_photo,content_id}'))
    WHERE metadata ? 'live_photo';
