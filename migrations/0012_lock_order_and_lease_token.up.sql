-- 0012 one lock order, a token per claim.
--
-- 1. settle_media_items(uuid[]) of 0011 locked the items and read their jobs in ONE statement.
--    Under READ COMMITTED a statement's snapshot is taken before it waits for a row lock, so a
--    settler that waited for another settler of the same item judged the item from jobs as they
--    were before that other transaction committed: two jobs of one item finishing at once could
--    each see the other one still running, and the item stayed 'processing' forever. It is now
--    PL/pgSQL with two statements: the first locks the items (in id order, so settlers cannot
--    deadlock), the second judges them. PL/pgSQL takes a new snapshot for every statement of a
--    VOLATILE function, so the judging statement sees every job committed before the lock was
--    granted, whoever the caller is and whatever it locked before. The judgement itself is 0011's,
--    unchanged.
--
--    The engine (MediaNestQueue) also takes the item locks in a statement of their own at the
--    start of every transaction that finishes work (complete, fail, cancel, retry, rescue), before
--    it touches a job row: the same order as enqueue_media_processing (item, then its jobs), so a
--    re-enqueue racing a completion cannot deadlock. docs/QUEUE.md describes the order.
--
-- 2. processing_jobs.lease_id: a fresh uuid on every claim. Every write of a run (heartbeat,
--    complete, fail, release) is fenced on (id, lease_id, status = 'running'). The previous fence,
--    (worker_id, attempts), is not unique per claim: rescue and release give an attempt back and
--    retry resets attempts, so the same worker could hold the same pair for two runs of one job.
--    Running rows get a lease now so that the new constraint holds; stop workers older than this
--    migration before applying it (their claims do not set lease_id and the constraint refuses
--    them, so they claim nothing; their in-flight jobs are rescued as usual).

ALTER TABLE processing_jobs ADD COLUMN lease_id uuid;
COMMENT ON COLUMN processing_jobs.lease_id IS
    'Token of the current (or last) claim; every write of a run is fenced on it.';
UPDATE processing_jobs SET lease_id = gen_random_uuid() WHERE status = 'running';
ALTER TABLE processing_jobs
    ADD CONSTRAINT processing_jobs_running_has_lease CHECK (status <> 'running' OR lease_id IS NOT NULL);

CREATE OR REPLACE FUNCTION settle_media_items(item_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Statement 1: lock. It may wait for another transaction that finishes a job of one of
    -- these items; its snapshot does not matter, it reads nothing.
    PERFORM 1 FROM media_items m WHERE m.id = ANY(item_ids) ORDER BY m.id FOR UPDATE;

    -- Statement 2: judge, with a snapshot taken after every lock above was granted.
    WITH items AS (
        SELECT m.id, m.owner_id, m.status AS old_status,
               -- The name goes into notification titles and messages that clients render and
               -- log: control characters (a newline that forges a second line, ESC sequences,
               -- bidi overrides) are replaced, as JobError does for error messages.
               regexp_replace(coalesce(nullif(m.original_filename, ''), m.filename),
                              '[\x01-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]', '?', 'g') AS shown
          FROM media_items m
         WHERE m.id = ANY(item_ids)
    ), latest AS (
        SELECT DISTINCT ON (j.media_item_id, j.job_type)
               j.media_item_id, j.job_type, j.status, j.output_data, j.error_message
          FROM processing_jobs j
         WHERE j.media_item_id = ANY(item_ids)
         ORDER BY j.media_item_id, j.job_type, j.created_at DESC, j.id
    ), judged AS (
        SELECT i.id, i.owner_id, i.old_status, i.shown,
               count(l.job_type) FILTER (WHERE l.status IN ('pending', 'running')) AS active,
               count(l.job_type) FILTER (WHERE l.status = 'completed') AS completed,
               coalesce(jsonb_object_agg(l.job_type, jsonb_build_object(
                            'code', coalesce(l.output_data #>> '{error,code}', 'internal_error'),
                            'message', coalesce(l.output_data #>> '{error,message}', l.error_message, 'failed')))
                        FILTER (WHERE l.status = 'failed'), '{}') AS failures,
               string_agg(l.job_type || ': ' || coalesce(l.output_data #>> '{error,message}', l.error_message, 'failed'), '; '
                          ORDER BY l.job_type) FILTER (WHERE l.status = 'failed') AS reasons
          FROM items i
          LEFT JOIN latest l ON l.media_item_id = i.id
         GROUP BY i.id, i.owner_id, i.old_status, i.shown
    ), decided AS (
        SELECT judged.*,
               CASE WHEN failures <> '{}' THEN 'error'
                    WHEN active = 0 AND completed > 0 THEN 'ready'
               END AS new_status
          FROM judged
    ), updated AS (
        UPDATE media_items m
           SET status = d.new_status::media_status,
               processed_at = CASE WHEN d.new_status = 'ready' THEN now() ELSE m.processed_at END,
               processing_info = CASE WHEN d.new_status = 'error'
                                      THEN m.processing_info || jsonb_build_object('errors', d.failures)
                                      ELSE m.processing_info - 'errors' END
          FROM decided d
         WHERE m.id = d.id
           AND (d.new_status = 'error' OR (d.new_status = 'ready' AND d.old_status <> 'ready'))
        RETURNING m.id
    ), changed AS (
        SELECT * FROM decided WHERE new_status IS NOT NULL AND old_status::text <> new_status
    ), notified AS (
        INSERT INTO notifications (user_id, type, category, title, message, data)
        SELECT owner_id, new_status_type, 'media', title, message, data
          FROM (SELECT owner_id,
                       CASE new_status WHEN 'error' THEN 'error' ELSE 'success' END AS new_status_type,
                       CASE new_status WHEN 'error' THEN left('Processing failed: ' || shown, 255)
                                       ELSE left(shown || ' is ready', 255) END AS title,
                       CASE new_status WHEN 'error' THEN 'We could not process ' || shown || '. ' || reasons
                                       ELSE shown || ' has been processed and is ready to view.' END AS message,
                       CASE new_status WHEN 'error' THEN jsonb_build_object('media_item_id', id, 'errors', failures)
                                       ELSE jsonb_build_object('media_item_id', id) END AS data
                  FROM changed) n
        RETURNING 1
    )
    INSERT INTO audit_logs (action, resource_type, resource_id, old_values, new_values, severity, context)
    SELECT CASE new_status WHEN 'error' THEN 'media.failed' ELSE 'media.processed' END,
           'media_item', id,
           jsonb_build_object('status', old_status),
           CASE new_status WHEN 'error' THEN jsonb_build_object('status', 'error', 'errors', failures)
                           ELSE jsonb_build_object('status', 'ready') END,
           (CASE new_status WHEN 'error' THEN 'medium' ELSE 'low' END)::audit_severity,
           jsonb_build_object('source', 'medianest-worker')
      FROM changed;
END;
$$;
COMMENT ON FUNCTION settle_media_items(uuid[]) IS
    'Sets media items ready or error from their latest jobs, notifying owners and auditing changes; locks the items, then judges them in a second statement.';
