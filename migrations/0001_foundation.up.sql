-- 0001 foundation: the enum types of the ERD and the shared updated_at trigger function.
--
-- The ERD's `enum` columns become PostgreSQL enum types (one per value list; media_items and
-- collections share `visibility`). Its quoted varchar value lists are CHECK constraints on the
-- tables instead (see 0002..0004), because those lists are expected to grow with new providers
-- and job types, and a CHECK is cheaper to change than an enum.
-- gen_random_uuid() is in core since PostgreSQL 13: no extension is needed.

CREATE TYPE user_role AS ENUM ('guest', 'user', 'admin', 'super_admin');
CREATE TYPE media_status AS ENUM ('uploading', 'processing', 'ready', 'error');
CREATE TYPE visibility AS ENUM ('private', 'shared', 'public');
CREATE TYPE permission_type AS ENUM ('view', 'download', 'edit', 'admin');
CREATE TYPE job_status AS ENUM ('pending', 'running', 'completed', 'failed', 'cancelled');
CREATE TYPE integration_status AS ENUM ('connected', 'disconnected', 'error');
CREATE TYPE webhook_status AS ENUM ('received', 'processing', 'processed', 'failed');
CREATE TYPE delivery_method AS ENUM ('websocket', 'email', 'push');
CREATE TYPE audit_severity AS ENUM ('low', 'medium', 'high', 'critical');

-- Maintains updated_at. Attached as BEFORE UPDATE ... WHEN (OLD IS DISTINCT FROM NEW), so a
-- no-op UPDATE does not move the timestamp.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION set_updated_at() IS 'BEFORE UPDATE trigger: sets updated_at to now().';
