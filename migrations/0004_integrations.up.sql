-- 0004 external integrations (Plex, Overseerr, Uptime Kuma), their webhooks, the Plex catalogue
-- mirror, and the cache.

CREATE TABLE integrations (
    id             uuid               PRIMARY KEY DEFAULT gen_random_uuid(),
    name           varchar(255)       NOT NULL,
    type           varchar(32)        NOT NULL,
    config         jsonb              NOT NULL DEFAULT '{}',
    enabled        boolean            NOT NULL DEFAULT true,
    status         integration_status NOT NULL DEFAULT 'disconnected',
    last_sync      timestamptz,
    last_error     text,
    created_at     timestamptz        NOT NULL DEFAULT now(),
    updated_at     timestamptz        NOT NULL DEFAULT now(),
    api_key_hash   varchar(255),
    webhook_secret varchar(255),
    sync_stats     jsonb              NOT NULL DEFAULT '{}',
    retry_count    integer            NOT NULL DEFAULT 0,
    CONSTRAINT integrations_name_key UNIQUE (name),
    CONSTRAINT integrations_type_check CHECK (type IN ('plex', 'overseerr', 'uptime_kuma')),
    CONSTRAINT integrations_retry_count_not_negative CHECK (retry_count >= 0)
);
CREATE TRIGGER integrations_set_updated_at
    BEFORE UPDATE ON integrations
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE plex_items (
    id                 uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SET NULL: the Plex catalogue entry still exists on the Plex server when our copy goes; the
    -- next sync may match it again.
    media_item_id      uuid          REFERENCES media_items (id) ON DELETE SET NULL,
    -- Not in the ERD's column list, but the ERD says integrations ||--o{ plex_items "manages":
    -- every mirrored item was synced by exactly one Plex integration, and the sync needs a
    -- conflict target per server (plex_items_integration_plex_id_key). CASCADE: removing the
    -- integration removes its mirror of that server's catalogue.
    integration_id     uuid          NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    plex_id            varchar(255)  NOT NULL,
    library_section_id varchar(255),
    plex_type          varchar(16)   NOT NULL,
    plex_key           varchar(1024),
    plex_rating_key    varchar(255),
    plex_metadata      jsonb         NOT NULL DEFAULT '{}',
    last_synced        timestamptz,
    active             boolean       NOT NULL DEFAULT true,
    plex_server_id     varchar(255),
    plex_guid          varchar(1024),
    plex_added_at      timestamptz,
    plex_updated_at    timestamptz,
    CONSTRAINT plex_items_plex_type_check
        CHECK (plex_type IN ('movie', 'show', 'season', 'episode', 'track', 'album')),
    CONSTRAINT plex_items_integration_plex_id_key UNIQUE (integration_id, plex_id)
);
CREATE INDEX idx_plex_items_media_item_id ON plex_items (media_item_id) WHERE media_item_id IS NOT NULL;

CREATE TABLE webhooks (
    id             uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: a delivery is an operational record of its integration, kept for processing and
    -- debugging; it is not audit data (that is audit_logs).
    integration_id uuid           NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    event_type     varchar(255)   NOT NULL,
    payload        jsonb          NOT NULL DEFAULT '{}',
    signature      varchar(1024),
    source_ip      inet,
    status         webhook_status NOT NULL DEFAULT 'received',
    error_message  text,
    received_at    timestamptz    NOT NULL DEFAULT now(),
    processed_at   timestamptz,
    retry_count    integer        NOT NULL DEFAULT 0,
    metadata       jsonb          NOT NULL DEFAULT '{}',
    CONSTRAINT webhooks_retry_count_not_negative CHECK (retry_count >= 0)
);
CREATE INDEX idx_webhooks_integration_received ON webhooks (integration_id, received_at DESC);

CREATE TABLE cache_entries (
    key        varchar(512) PRIMARY KEY,
    value      text         NOT NULL,
    -- NULL: never expires.
    expires_at timestamptz,
    created_at timestamptz  NOT NULL DEFAULT now(),
    namespace  varchar(255) NOT NULL DEFAULT 'default',
    metadata   jsonb        NOT NULL DEFAULT '{}',
    size_bytes integer      NOT NULL DEFAULT 0,
    CONSTRAINT cache_entries_size_bytes_not_negative CHECK (size_bytes >= 0)
);
CREATE INDEX idx_cache_entries_expires_at ON cache_entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX idx_cache_entries_namespace ON cache_entries (namespace);
