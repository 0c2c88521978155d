-- 0003 the media library: media items, collections, sharing, provider metadata, processing jobs.

CREATE TABLE media_items (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    -- RESTRICT: a media item is a file on storage. Cascading a user deletion would drop the rows
    -- and orphan the files with nothing left pointing at them; deleting a user's library is an
    -- explicit application step (delete files, then rows), after which the user can go.
    -- Deactivation (users.active = false) is the everyday path.
    owner_id          uuid          NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    filename          varchar(255)  NOT NULL,
    original_filename varchar(1024) NOT NULL,
    mime_type         varchar(255)  NOT NULL,
    -- NULL while the size is not known yet (an upload in progress).
    file_size         bigint,
    storage_path      varchar(4096) NOT NULL,
    thumbnail_path    varchar(4096),
    preview_path      varchar(4096),
    status            media_status  NOT NULL DEFAULT 'uploading',
    metadata          jsonb         NOT NULL DEFAULT '{}',
    processing_info   jsonb         NOT NULL DEFAULT '{}',
    checksum_md5      varchar(32),
    checksum_sha256   varchar(64),
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    description       text,
    tags              jsonb         NOT NULL DEFAULT '[]',
    visibility        visibility    NOT NULL DEFAULT 'private',
    download_count    integer       NOT NULL DEFAULT 0,
    -- The version chain (see 0006): parent_id is the chain's root, NULL on the root itself.
    -- RESTRICT: deleting the original while newer versions point at it would either cascade
    -- away every version's row (orphaning their files) or leave a chain without a root. Delete
    -- the versions first, then the original.
    parent_id         uuid          REFERENCES media_items (id) ON DELETE RESTRICT,
    version           integer       NOT NULL DEFAULT 1,
    CONSTRAINT media_items_file_size_not_negative CHECK (file_size >= 0),
    CONSTRAINT media_items_download_count_not_negative CHECK (download_count >= 0),
    CONSTRAINT media_items_tags_is_array CHECK (jsonb_typeof(tags) = 'array'),
    CONSTRAINT media_items_version_positive CHECK (version >= 1),
    CONSTRAINT media_items_not_own_parent CHECK (parent_id <> id)
);
CREATE TRIGGER media_items_set_updated_at
    BEFORE UPDATE ON media_items
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION set_updated_at();
-- owner_id is covered by idx_media_items_owner_created and parent_id by
-- idx_media_items_parent_version (both 0007/0008, built CONCURRENTLY).

CREATE TABLE collections (
    id               uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: a collection is only a grouping (no files of its own besides an optional cover
    -- that points into the library), so it goes with its owner.
    owner_id         uuid          NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             varchar(255)  NOT NULL,
    description      text,
    slug             varchar(255)  NOT NULL,
    settings         jsonb         NOT NULL DEFAULT '{}',
    visibility       visibility    NOT NULL DEFAULT 'private',
    cover_image_path varchar(4096),
    -- Maintained by the collection_items triggers below.
    item_count       integer       NOT NULL DEFAULT 0,
    created_at       timestamptz   NOT NULL DEFAULT now(),
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    metadata         jsonb         NOT NULL DEFAULT '{}',
    featured         boolean       NOT NULL DEFAULT false,
    sort_order       integer       NOT NULL DEFAULT 0,
    CONSTRAINT collections_slug_key UNIQUE (slug),
    CONSTRAINT collections_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9_-]*$'),
    CONSTRAINT collections_item_count_not_negative CHECK (item_count >= 0)
);
CREATE INDEX idx_collections_owner_id ON collections (owner_id);
CREATE TRIGGER collections_set_updated_at
    BEFORE UPDATE ON collections
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE collection_items (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: membership rows die with either side.
    collection_id uuid        NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    media_item_id uuid        NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    position      integer     NOT NULL DEFAULT 0,
    added_at      timestamptz NOT NULL DEFAULT now(),
    -- SET NULL: the item stays in the collection when whoever added it is deleted.
    added_by      uuid        REFERENCES users (id) ON DELETE SET NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT collection_items_collection_media_key UNIQUE (collection_id, media_item_id)
);
CREATE INDEX idx_collection_items_media_item_id ON collection_items (media_item_id);
CREATE INDEX idx_collection_items_added_by ON collection_items (added_by) WHERE added_by IS NOT NULL;

-- Keeps collections.item_count equal to the number of collection_items rows. The UPDATE takes
-- the collection's row lock, so concurrent adds serialise on it and the count stays exact.
CREATE FUNCTION collection_items_maintain_item_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE collections SET item_count = item_count + 1 WHERE id = NEW.collection_id;
    ELSIF TG_OP = 'DELETE' THEN
        -- No row when the collection itself is being deleted (cascade): nothing to do.
        UPDATE collections SET item_count = item_count - 1 WHERE id = OLD.collection_id;
    ELSIF NEW.collection_id IS DISTINCT FROM OLD.collection_id THEN
        UPDATE collections SET item_count = item_count - 1 WHERE id = OLD.collection_id;
        UPDATE collections SET item_count = item_count + 1 WHERE id = NEW.collection_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER collection_items_maintain_item_count
    AFTER INSERT OR DELETE OR UPDATE OF collection_id ON collection_items
    FOR EACH ROW EXECUTE FUNCTION collection_items_maintain_item_count();

CREATE TABLE sharing_permissions (
    id              uuid            PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Polymorphic: the id of a media_items, collections or users row, as resource_type says.
    -- A FK cannot point at three tables, so there is none; the delete_sharing_permissions
    -- triggers below remove the rows of a deleted resource instead.
    resource_id     uuid            NOT NULL,
    resource_type   varchar(16)     NOT NULL,
    -- CASCADE: a grant to a deleted user grants nothing. NULL for link shares (access_token).
    shared_with     uuid            REFERENCES users (id) ON DELETE CASCADE,
    -- CASCADE: a grant is only as good as the person who gave it; revoking is the safe side.
    shared_by       uuid            NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission_type permission_type NOT NULL DEFAULT 'view',
    created_at      timestamptz     NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    active          boolean         NOT NULL DEFAULT true,
    access_token    varchar(255),
    metadata        jsonb           NOT NULL DEFAULT '{}',
    CONSTRAINT sharing_permissions_resource_type_check
        CHECK (resource_type IN ('media_item', 'collection', 'user')),
    CONSTRAINT sharing_permissions_has_grantee
        CHECK (shared_with IS NOT NULL OR access_token IS NOT NULL),
    CONSTRAINT sharing_permissions_access_token_key UNIQUE (access_token)
);
-- The RLS share policy (0009) looks rows up by grantee and resource.
CREATE INDEX idx_sharing_permissions_grantee_resource
    ON sharing_permissions (shared_with, resource_type, resource_id) WHERE active;
CREATE INDEX idx_sharing_permissions_resource ON sharing_permissions (resource_type, resource_id);
CREATE INDEX idx_sharing_permissions_shared_with ON sharing_permissions (shared_with);
CREATE INDEX idx_sharing_permissions_shared_by ON sharing_permissions (shared_by);

-- Stands in for the FK that the polymorphic resource_id cannot have: when a resource goes, so do
-- the grants on it. TG_ARGV[0] is the resource_type of the table the trigger is attached to.
-- SECURITY DEFINER: a user deleting their own media item (as authenticated_users, see 0009) has
-- no DELETE privilege on sharing_permissions, yet the grants on that item must go with it.
CREATE FUNCTION delete_sharing_permissions_of_resource() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM sharing_permissions
     WHERE resource_type = TG_ARGV[0] AND resource_id = OLD.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER media_items_delete_sharing_permissions
    AFTER DELETE ON media_items
    FOR EACH ROW EXECUTE FUNCTION delete_sharing_permissions_of_resource('media_item');
CREATE TRIGGER collections_delete_sharing_permissions
    AFTER DELETE ON collections
    FOR EACH ROW EXECUTE FUNCTION delete_sharing_permissions_of_resource('collection');
CREATE TRIGGER users_delete_sharing_permissions
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION delete_sharing_permissions_of_resource('user');

CREATE TABLE media_metadata (
    id               uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: provider metadata describes the item and has no meaning without it.
    media_item_id    uuid             NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    provider         varchar(16)      NOT NULL,
    -- NULL for provider 'local', which has no external id.
    external_id      varchar(255),
    data             jsonb            NOT NULL DEFAULT '{}',
    fetched_at       timestamptz      NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    confidence_score double precision,
    verified         boolean          NOT NULL DEFAULT false,
    -- A BCP 47 tag such as en or pt-BR.
    language         varchar(35),
    raw_response     jsonb,
    CONSTRAINT media_metadata_provider_check
        CHECK (provider IN ('tmdb', 'tvdb', 'imdb', 'local')),
    CONSTRAINT media_metadata_confidence_score_range
        CHECK (confidence_score BETWEEN 0 AND 1)
);
CREATE INDEX idx_media_metadata_media_item_id ON media_metadata (media_item_id);

CREATE TABLE processing_jobs (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: a job for a deleted item can never run; the worker treats a vanished job as
    -- cancelled.
    media_item_id uuid         NOT NULL REFERENCES media_items (id) ON DELETE CASCADE,
    job_type      varchar(32)  NOT NULL,
    status        job_status   NOT NULL DEFAULT 'pending',
    input_data    jsonb        NOT NULL DEFAULT '{}',
    output_data   jsonb        NOT NULL DEFAULT '{}',
    error_message text,
    attempts      integer      NOT NULL DEFAULT 0,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    priority      integer      NOT NULL DEFAULT 0,
    worker_id     varchar(255),
    progress_info jsonb        NOT NULL DEFAULT '{}',
    -- Named so the job engine's migrations (0010+) can replace it when job types are added.
    CONSTRAINT processing_jobs_job_type_check
        CHECK (job_type IN ('thumbnail', 'preview', 'metadata', 'transcode')),
    CONSTRAINT processing_jobs_attempts_not_negative CHECK (attempts >= 0)
);
CREATE INDEX idx_processing_jobs_media_item_id ON processing_jobs (media_item_id);
