-- medianest:no-transaction
-- Reverts 0014: no import rule, no duplicate flags, no perceptual hashes.
DROP INDEX CONCURRENTLY IF EXISTS media_items_one_import_per_content;
DROP FUNCTION IF EXISTS mark_exact_duplicates(uuid[]);
DROP FUNCTION IF EXISTS lock_media_items_for_content(uuid[], uuid[], text[]);
DROP FUNCTION IF EXISTS hamming_distance(bigint, bigint);
DROP INDEX CONCURRENTLY IF EXISTS idx_media_items_owner_sha256;
UPDATE media_items SET metadata = metadata - 'duplicate_of' WHERE metadata ? 'duplicate_of';
ALTER TABLE media_items DROP COLUMN IF EXISTS perceptual_hash;
