DROP TRIGGER media_items_promote_previous_version ON media_items;
DROP FUNCTION media_items_promote_previous_version();
DROP TRIGGER media_items_keep_version_fixed ON media_items;
DROP FUNCTION media_items_keep_version_fixed();
DROP TRIGGER media_items_assign_version ON media_items;
DROP FUNCTION media_items_assign_version();
DROP INDEX media_items_one_latest_per_chain;
ALTER TABLE media_items
    DROP CONSTRAINT media_items_root_is_version_one,
    DROP COLUMN is_latest_version;
