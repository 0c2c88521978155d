-- 0002 users and what hangs off a user only: sessions, API keys, notifications.

CREATE TABLE users (
    id                 uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    email              varchar(320) NOT NULL,
    -- NULL for accounts that sign in through an external identity provider only.
    password_hash      varchar(255),
    first_name         varchar(255),
    last_name          varchar(255),
    avatar_url         varchar(2048),
    role               user_role    NOT NULL DEFAULT 'user',
    preferences        jsonb        NOT NULL DEFAULT '{}',
    created_at         timestamptz  NOT NULL DEFAULT now(),
    updated_at         timestamptz  NOT NULL DEFAULT now(),
    last_login         timestamptz,
    email_verified     boolean      NOT NULL DEFAULT false,
    verification_token varchar(255),
    active             boolean      NOT NULL DEFAULT true,
    metadata           jsonb        NOT NULL DEFAULT '{}',
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_not_blank CHECK (btrim(email) <> ''),
    CONSTRAINT users_preferences_is_object CHECK (jsonb_typeof(preferences) = 'object')
);
-- The ERD's UK on email, case-insensitively: Alice@x.org and alice@x.org are one account.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE UNIQUE INDEX users_verification_token_key ON users (verification_token)
    WHERE verification_token IS NOT NULL;
CREATE TRIGGER users_set_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE user_sessions (
    id                 uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: a session is meaningless without its user.
    user_id            uuid          NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash         varchar(255)  NOT NULL,
    refresh_token_hash varchar(255),
    ip_address         inet,
    user_agent         varchar(1024),
    created_at         timestamptz   NOT NULL DEFAULT now(),
    expires_at         timestamptz   NOT NULL,
    active             boolean       NOT NULL DEFAULT true,
    metadata           jsonb         NOT NULL DEFAULT '{}',
    CONSTRAINT user_sessions_token_hash_key UNIQUE (token_hash),
    CONSTRAINT user_sessions_refresh_token_hash_key UNIQUE (refresh_token_hash)
);
-- For the FK (cascade from users) and "all sessions of a user"; the seed's
-- idx_user_sessions_user_active_expires (0008) is partial and covers active sessions only.
CREATE INDEX idx_user_sessions_user_id ON user_sessions (user_id);

CREATE TABLE api_keys (
    id           uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: a key acts as its user; it must not outlive them.
    user_id      uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         varchar(255) NOT NULL,
    key_hash     varchar(255) NOT NULL,
    -- The first characters of the key, shown in UIs and used to find the row to verify.
    prefix       varchar(32)  NOT NULL,
    scopes       jsonb        NOT NULL DEFAULT '[]',
    created_at   timestamptz  NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    active       boolean      NOT NULL DEFAULT true,
    last_ip      inet,
    usage_count  integer      NOT NULL DEFAULT 0,
    metadata     jsonb        NOT NULL DEFAULT '{}',
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_scopes_is_array CHECK (jsonb_typeof(scopes) = 'array'),
    CONSTRAINT api_keys_usage_count_not_negative CHECK (usage_count >= 0)
);
CREATE INDEX idx_api_keys_user_id ON api_keys (user_id);
CREATE INDEX idx_api_keys_prefix ON api_keys (prefix);

CREATE TABLE notifications (
    id              uuid            PRIMARY KEY DEFAULT gen_random_uuid(),
    -- CASCADE: notifications are addressed to one user and are worthless without them.
    user_id         uuid            NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type            varchar(16)     NOT NULL DEFAULT 'info',
    category        varchar(16)     NOT NULL DEFAULT 'system',
    title           varchar(255)    NOT NULL,
    message         text,
    data            jsonb           NOT NULL DEFAULT '{}',
    read            boolean         NOT NULL DEFAULT false,
    delivery_method delivery_method NOT NULL DEFAULT 'websocket',
    created_at      timestamptz     NOT NULL DEFAULT now(),
    read_at         timestamptz,
    expires_at      timestamptz,
    action_url      varchar(2048),
    metadata        jsonb           NOT NULL DEFAULT '{}',
    CONSTRAINT notifications_type_check
        CHECK (type IN ('info', 'success', 'warning', 'error')),
    CONSTRAINT notifications_category_check
        CHECK (category IN ('media', 'system', 'integration', 'user'))
);
CREATE INDEX idx_notifications_user_created ON notifications (user_id, created_at DESC);
CREATE INDEX idx_notifications_user_unread ON notifications (user_id, created_at DESC)
    WHERE read = false;
