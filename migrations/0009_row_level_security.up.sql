-- 0009 row level security on media_items, as in the seed, plus what it needs to work.
--
-- Roles. authenticated_users and admin_users are NOLOGIN group roles: the web API's login role is
-- made a member of them and does SET ROLE per request, after
--   SELECT set_config('medianest.user_id', '<users.id>', true);   -- true: for this transaction
-- Roles are cluster-wide, not per database: this migration creates them only if missing (and
-- tolerates another database's migration creating them at the same moment), and the down
-- migration does NOT drop them, because other databases of the cluster may use them. It revokes
-- every privilege it granted, so after a full down the roles own and hold nothing here.
--
-- Who is subject to RLS. The table owner (the role that runs these migrations, which is also the
-- role the worker daemon connects as) bypasses RLS, as a daemon processing every user's media
-- must. RLS is not FORCEd. Only sessions running as authenticated_users / admin_users are
-- filtered.
--
-- Policies on media_items (permissive, so a row is visible if any applies):
--   owner  (seed)  FOR ALL, authenticated_users: own rows; WITH CHECK keeps writes to own rows.
--   shared (seed)  FOR SELECT, authenticated_users: rows shared with the user through an active,
--                  unexpired sharing_permissions row of resource_type 'media_item'.
--   public (ours)  FOR SELECT, authenticated_users: visibility = 'public'. The seed does not say;
--                  without it 'public' would mean nothing under RLS, so public items are readable
--                  (not writable) by every authenticated user.
--   admin  (seed)  FOR ALL, admin_users: everything.
-- The shared policy reads sharing_permissions as the querying role, so that role needs SELECT on
-- it; RLS on sharing_permissions keeps that to the rows the user gives or receives (otherwise every
-- user could list every share of everyone).
-- Other tables get no grants for authenticated_users yet: each needs its own policies first.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['authenticated_users', 'admin_users'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created concurrently by a migration of another database
            END;
        END IF;
    END LOOP;
END;
$$;

-- The application user of the current transaction or session, or NULL when none is set (then the
-- owner policy matches nothing). An invalid uuid is an error rather than silently nobody.
CREATE FUNCTION current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('medianest.user_id', true), '')::uuid
$$;
COMMENT ON FUNCTION current_user_id() IS
    'The users.id in the setting medianest.user_id, or NULL when it is unset or empty.';

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO authenticated_users, admin_users', current_schema());
END;
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON media_items TO authenticated_users;
GRANT SELECT ON sharing_permissions TO authenticated_users;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    users, user_sessions, media_items, collections, collection_items, sharing_permissions,
    media_metadata, processing_jobs, plex_items, integrations, webhooks, notifications,
    audit_logs, api_keys, cache_entries
    TO admin_users;

ALTER TABLE media_items ENABLE ROW LEVEL SECURITY;

CREATE POLICY media_items_owner_policy ON media_items
    FOR ALL TO authenticated_users
    USING (owner_id = current_user_id())
    WITH CHECK (owner_id = current_user_id());

CREATE POLICY media_items_shared_policy ON media_items
    FOR SELECT TO authenticated_users
    USING (
        id IN (
            SELECT resource_id
              FROM sharing_permissions
             WHERE resource_type = 'media_item'
               AND shared_with = current_user_id()
               AND active
               AND (expires_at IS NULL OR expires_at > now())
        )
    );

CREATE POLICY media_items_public_policy ON media_items
    FOR SELECT TO authenticated_users
    USING (visibility = 'public');

CREATE POLICY media_items_admin_policy ON media_items
    FOR ALL TO admin_users
    USING (true)
    WITH CHECK (true);

ALTER TABLE sharing_permissions ENABLE ROW LEVEL SECURITY;

CREATE POLICY sharing_permissions_participant_policy ON sharing_permissions
    FOR SELECT TO authenticated_users
    USING (shared_with = current_user_id() OR shared_by = current_user_id());

CREATE POLICY sharing_permissions_admin_policy ON sharing_permissions
    FOR ALL TO admin_users
    USING (true)
    WITH CHECK (true);
