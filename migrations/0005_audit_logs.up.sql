-- 0005 audit_logs, partitioned by calendar month (UTC) on created_at.
--
-- A partitioned table's primary key must contain the partition key, hence (id, created_at).
-- Partitions are named audit_logs_YYYYMM and made by create_audit_log_partition(); this migration
-- makes the current month and the next three. Whatever runs the monthly maintenance (the job
-- engine or cron) should call it ahead of time, e.g.
--   SELECT create_audit_log_partition((now() + interval '2 months')::date);
-- A DEFAULT partition catches everything else, so an insert never fails for want of a partition.

CREATE TABLE audit_logs (
    id             uuid           NOT NULL DEFAULT gen_random_uuid(),
    -- SET NULL: the audit trail must survive the deletion of the user it is about.
    user_id        uuid           REFERENCES users (id) ON DELETE SET NULL,
    action         varchar(255)   NOT NULL,
    resource_type  varchar(64),
    resource_id    uuid,
    old_values     jsonb,
    new_values     jsonb,
    ip_address     inet,
    user_agent     varchar(1024),
    created_at     timestamptz    NOT NULL DEFAULT now(),
    correlation_id varchar(255),
    context        jsonb          NOT NULL DEFAULT '{}',
    severity       audit_severity NOT NULL DEFAULT 'low',
    CONSTRAINT audit_logs_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX idx_audit_logs_user_created ON audit_logs (user_id, created_at DESC);
CREATE INDEX idx_audit_logs_resource ON audit_logs (resource_type, resource_id, created_at DESC);
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at DESC);
CREATE INDEX idx_audit_logs_correlation_id ON audit_logs (correlation_id)
    WHERE correlation_id IS NOT NULL;

CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT;

-- Creates the partition audit_logs_YYYYMM for the UTC calendar month containing `month` and
-- returns its name. Idempotent, and safe to call concurrently. If rows of that month already
-- landed in audit_logs_default (because the partition was made late), they are moved into the
-- new partition: attaching a partition whose range has rows in the default one would fail.
CREATE FUNCTION create_audit_log_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    first_day      date := make_date(extract(year FROM month)::int, extract(month FROM month)::int, 1);
    range_start    timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    range_end      timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    partition_name text := 'audit_logs_' || to_char(first_day, 'YYYYMM');
BEGIN
    IF month IS NULL THEN
        RAISE EXCEPTION 'create_audit_log_partition: month must not be NULL';
    END IF;
    -- Serialises creators of the same month; the loser then finds the table below.
    PERFORM pg_advisory_xact_lock(hashtext('medianest.audit_logs'), hashtext(partition_name));
    IF to_regclass(quote_ident(partition_name)) IS NOT NULL THEN
        RETURN partition_name;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM audit_logs_default
                    WHERE created_at >= range_start AND created_at < range_end) THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_logs FOR VALUES FROM (%L) TO (%L)',
                       partition_name, range_start, range_end);
    ELSE
        EXECUTE format('CREATE TABLE %I (LIKE audit_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       partition_name);
        EXECUTE format('WITH moved AS (DELETE FROM audit_logs_default
                                        WHERE created_at >= %L AND created_at < %L RETURNING *)
                        INSERT INTO %I SELECT * FROM moved',
                       range_start, range_end, partition_name);
        EXECUTE format('ALTER TABLE audit_logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition_name, range_start, range_end);
    END IF;
    RETURN partition_name;
END;
$$;
COMMENT ON FUNCTION create_audit_log_partition(date) IS
    'Creates audit_logs_YYYYMM for the UTC month containing the argument (idempotent); returns its name.';

DO $$
BEGIN
    FOR ahead IN 0..3 LOOP
        PERFORM create_audit_log_partition(
            ((now() AT TIME ZONE 'UTC')::date + make_interval(months => ahead))::date);
    END LOOP;
END;
$$;
