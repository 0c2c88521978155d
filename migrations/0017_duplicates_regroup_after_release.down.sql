-- Reverts 0017: 0016's trigger function, which only tries the group lock once.
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
DROP FUNCTION IF EXISTS take_content_group_lock(integer);
