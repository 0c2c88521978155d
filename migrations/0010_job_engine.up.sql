-- 0010 the job engine (MediaNestQueue): leases, retries, crash attribution, the claim indexes,
-- enqueue_media_processing(), the medianest_jobs NOTIFY and the worker registry.
-- docs/QUEUE.md explains every column and statement; this file only says why where it matters.
--
-- Runs in one transaction. The indexes are built without CONCURRENTLY: processing_jobs is small
-- compared with media_items (one row per job, finished rows are cheap), and a transactional
-- migration that either fully applies or not at all is worth a short write lock on it.

ALTER TABLE processing_jobs
    -- When a pending job may run: now() on enqueue, later after a transient failure (backoff).
    ADD COLUMN run_at           timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN max_attempts     integer     NOT NULL DEFAULT 5,
    -- Until when the claiming worker owns a running job; the heartbeat moves it forward. A
    -- running job whose lease passed is rescued by any worker.
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN heartbeat_at     timestamptz,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Crash attribution. lost_count counts every rescue after an expired lease; a rescued job is
    -- marked run_alone, and lost_alone_count counts the rescues that happened while it ran alone,
    -- which is the evidence that this job, not a neighbour, kills the worker.
    ADD COLUMN lost_count       integer     NOT NULL DEFAULT 0,
    ADD COLUMN lost_alone_count integer     NOT NULL DEFAULT 0,
    ADD COLUMN run_alone        boolean     NOT NULL DEFAULT false,
    ADD CONSTRAINT processing_jobs_max_attempts_positive CHECK (max_attempts >= 1),
    ADD CONSTRAINT processing_jobs_lost_counts_not_negative CHECK (lost_count >= 0 AND lost_alone_count >= 0),
    -- A running job always has an owner and a lease: the fencing conditions rely on it.
    ADD CONSTRAINT processing_jobs_running_is_owned
        CHECK (status <> 'running' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL));

CREATE TRIGGER processing_jobs_set_updated_at
    BEFORE UPDATE ON processing_jobs
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION set_updated_at();

-- The claim query walks one job type at a time (per-type slots) in exactly this order:
--   WHERE status = 'pending' AND NOT run_alone AND job_type = $t AND run_at <= now()
--   ORDER BY priority DESC, run_at, created_at LIMIT $n FOR UPDATE SKIP LOCKED
-- The seed's idx_processing_jobs_pending (created_at, priority) cannot serve that ORDER BY, so
-- every claim would sort all pending rows.
CREATE INDEX idx_processing_jobs_claim
    ON processing_jobs (job_type, priority DESC, run_at, created_at)
    WHERE status = 'pending' AND NOT run_alone;
-- Jobs rescued after a crash wait here until a worker can run one alone. Normally empty.
CREATE INDEX idx_processing_jobs_claim_alone
    ON processing_jobs (priority DESC, run_at, created_at)
    WHERE status = 'pending' AND run_alone;
-- Lease rescue: only running rows, ordered by expiry.
CREATE INDEX idx_processing_jobs_lease
    ON processing_jobs (lease_expires_at)
    WHERE status = 'running';
-- One live job per item and type: enqueueing is idempotent (ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX idx_processing_jobs_one_active
    ON processing_jobs (media_item_id, job_type)
    WHERE status IN ('pending', 'running');

-- Workers register here; the heartbeat keeps last_seen_at and expires_at fresh. `status` uses it
-- to name job types that no live worker serves.
CREATE TABLE processing_workers (
    id           varchar(255) PRIMARY KEY,
    host         varchar(255) NOT NULL,
    pid          integer      NOT NULL,
    types        text[]       NOT NULL,
    concurrency  integer      NOT NULL,
    started_at   timestamptz  NOT NULL DEFAULT now(),
    last_seen_at timestamptz  NOT NULL DEFAULT now(),
    -- A worker is live while expires_at is in the future (one lease after its last heartbeat).
    expires_at   timestamptz  NOT NULL
);
COMMENT ON TABLE processing_workers IS
    'Live medianest-worker processes (one row per process), refreshed by their heartbeat.';

-- NOTIFY once per enqueuing statement, not once per row: a statement-level trigger with a
-- transition table. The payload is the distinct job types (short, bounded by the type list), so
-- a specialised worker can ignore types it does not serve. Never job ids: a bulk enqueue would
-- overflow the 8000-byte payload limit and the notification queue.
CREATE FUNCTION processing_jobs_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    types text;
BEGIN
    SELECT string_agg(DISTINCT job_type, ',' ORDER BY job_type) INTO types
      FROM inserted WHERE status = 'pending';
    IF types IS NOT NULL THEN
        PERFORM pg_notify('medianest_jobs', types);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER processing_jobs_notify_inserted
    AFTER INSERT ON processing_jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION processing_jobs_notify_inserted();

-- The upload pipeline's one call: creates the item's jobs (idempotently), marks the item
-- 'processing' and returns the ids of its live jobs, existing or new, in the order of the types.
CREATE FUNCTION enqueue_media_processing(
    media_item_id uuid,
    job_types     text[] DEFAULT NULL,
    priority      integer DEFAULT 0
) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
-- The parameters keep the documented names; inside, bare names mean columns.
#variable_conflict use_column
DECLARE
    item_mime text;
    wanted    text[];
BEGIN
    -- The row lock serialises concurrent enqueues of one item, so ON CONFLICT below only ever
    -- meets committed rows and the RETURN QUERY sees them.
    SELECT m.mime_type INTO item_mime
      FROM media_items m WHERE m.id = enqueue_media_processing.media_item_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'enqueue_media_processing: no media item with id %', enqueue_media_processing.media_item_id
            USING ERRCODE = 'no_data_found', HINT = 'Insert the media_items row before enqueueing its processing.';
    END IF;

    wanted := coalesce(job_types, CASE
        WHEN item_mime LIKE 'image/%' THEN ARRAY['metadata', 'thumbnail', 'preview']
        WHEN item_mime LIKE 'video/%' THEN ARRAY['metadata', 'thumbnail', 'preview', 'transcode']
        WHEN item_mime LIKE 'audio/%' THEN ARRAY['metadata', 'thumbnail']
        -- Unknown kinds still get metadata: it sniffs the content and reports a clear error.
        ELSE ARRAY['metadata']
    END);
    IF cardinality(wanted) = 0 THEN
        RAISE EXCEPTION 'enqueue_media_processing: job_types is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO processing_jobs (media_item_id, job_type, priority)
    SELECT enqueue_media_processing.media_item_id, t.job_type, enqueue_media_processing.priority
      FROM (SELECT DISTINCT unnest(wanted) AS job_type) t
    ON CONFLICT (media_item_id, job_type) WHERE status IN ('pending', 'running') DO NOTHING;

    UPDATE media_items m SET status = 'processing'
     WHERE m.id = enqueue_media_processing.media_item_id AND m.status <> 'processing';

    RETURN QUERY
        SELECT j.id FROM processing_jobs j
         WHERE j.media_item_id = enqueue_media_processing.media_item_id
           AND j.job_type = ANY (wanted) AND j.status IN ('pending', 'running')
         ORDER BY array_position(wanted, j.job_type::text);
END;
$$;
COMMENT ON FUNCTION enqueue_media_processing(uuid, text[], integer) IS
    'Creates the processing jobs of a media item (by MIME type when job_types is NULL), idempotently; returns their ids.';

-- Moves a media item to 'ready' or 'error' once its jobs say so, with a notification for the
-- owner and an audit row. The engine calls it in the transaction that writes a job's final
-- state (after that write), so the item never disagrees with its jobs. Only the latest job of
-- each type counts: an item re-processed after a failure is judged by the new jobs.
-- Returns the item's status afterwards (NULL if the item is gone).
CREATE FUNCTION settle_media_item(item_id uuid) RETURNS media_status
LANGUAGE plpgsql AS $$
DECLARE
    item      media_items%ROWTYPE;
    active    integer;
    completed integer;
    failures  jsonb;
    reasons   text;
    shown     text;
BEGIN
    -- Locked so that two jobs of one item finishing at once settle it one after the other, the
    -- second seeing the first's job row.
    SELECT * INTO item FROM media_items WHERE id = item_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    SELECT count(*) FILTER (WHERE status IN ('pending', 'running')),
           count(*) FILTER (WHERE status = 'completed'),
           coalesce(jsonb_object_agg(job_type, jsonb_build_object(
                        'code', coalesce(output_data #>> '{error,code}', 'internal_error'),
                        'message', coalesce(output_data #>> '{error,message}', error_message, 'failed')))
                    FILTER (WHERE status = 'failed'), '{}'),
           string_agg(job_type || ': ' || coalesce(output_data #>> '{error,message}', error_message, 'failed'), '; '
                      ORDER BY job_type) FILTER (WHERE status = 'failed')
      INTO active, completed, failures, reasons
      FROM (SELECT DISTINCT ON (job_type) job_type, status, output_data, error_message
              FROM processing_jobs WHERE media_item_id = item_id
             ORDER BY job_type, created_at DESC, id) latest;

    shown := coalesce(nullif(item.original_filename, ''), item.filename);

    IF failures <> '{}' THEN
        UPDATE media_items SET status = 'error',
               processing_info = processing_info || jsonb_build_object('errors', failures)
         WHERE id = item_id;
        IF item.status <> 'error' THEN
            INSERT INTO notifications (user_id, type, category, title, message, data)
            VALUES (item.owner_id, 'error', 'media', left('Processing failed: ' || shown, 255),
                    'We could not process ' || shown || '. ' || reasons,
                    jsonb_build_object('media_item_id', item_id, 'errors', failures));
            INSERT INTO audit_logs (action, resource_type, resource_id, old_values, new_values, severity, context)
            VALUES ('media.failed', 'media_item', item_id,
                    jsonb_build_object('status', item.status),
                    jsonb_build_object('status', 'error', 'errors', failures),
                    'medium', jsonb_build_object('source', 'medianest-worker'));
        END IF;
        RETURN 'error';
    END IF;

    IF active = 0 AND completed > 0 AND item.status <> 'ready' THEN
        UPDATE media_items SET status = 'ready', processed_at = now(),
               processing_info = processing_info - 'errors'
         WHERE id = item_id;
        INSERT INTO notifications (user_id, type, category, title, message, data)
        VALUES (item.owner_id, 'success', 'media', left(shown || ' is ready', 255),
                shown || ' has been processed and is ready to view.',
                jsonb_build_object('media_item_id', item_id));
        INSERT INTO audit_logs (action, resource_type, resource_id, old_values, new_values, severity, context)
        VALUES ('media.processed', 'media_item', item_id,
                jsonb_build_object('status', item.status),
                jsonb_build_object('status', 'ready'),
                'low', jsonb_build_object('source', 'medianest-worker'));
        RETURN 'ready';
    END IF;
    RETURN item.status;
END;
$$;
COMMENT ON FUNCTION settle_media_item(uuid) IS
    'Sets a media item ready or error from its latest jobs, notifying the owner and auditing the change.';
