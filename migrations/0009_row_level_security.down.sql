-- The roles authenticated_users and admin_users are left in place on purpose: they are
-- cluster-wide and other databases of the cluster may use them (see the up migration).
DROP POLICY sharing_permissions_admin_policy ON sharing_permissions;
DROP POLICY sharing_permissions_participant_policy ON sharing_permissions;
ALTER TABLE sharing_permissions DISABLE ROW LEVEL SECURITY;

DROP POLICY media_items_admin_policy ON media_items;
DROP POLICY media_items_public_policy ON media_items;
DROP POLICY media_items_shared_policy ON media_items;
DROP POLICY media_items_owner_policy ON media_items;
ALTER TABLE media_items DISABLE ROW LEVEL SECURITY;

REVOKE SELECT, INSERT, UPDATE, DELETE ON
    users, user_sessions, media_items, collections, collection_items, sharing_permissions,
    media_metadata, processing_jobs, plex_items, integrations, webhooks, notifications,
    audit_logs, api_keys, cache_entries
    FROM admin_users;
REVOKE SELECT ON sharing_permissions FROM authenticated_users;
REVOKE SELECT, INSERT, UPDATE, DELETE ON media_items FROM authenticated_users;
DO $$
BEGIN
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM authenticated_users, admin_users', current_schema());
END;
$$;

DROP FUNCTION current_user_id();
