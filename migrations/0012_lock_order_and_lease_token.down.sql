-- Reverts 0012: 0011's one-statement settle_media_items and no lease token.

ALTER TABLE processing_jobs
    DROP CONSTRAINT IF EXISTS processing_jobs_running_has_lease,
    DROP COLUMN IF EXISTS lease_id;

CREATE OR REPLACE FUNCTION settle_media_items(item_ids uuid[]) RETURNS void
LANGUAGE sql AS $$
    WITH items AS (
        SELECT m.id, m.owner_id, m.status AS old_status,
               coalesce(nullif(m.original_filename, ''), m.filename) AS shown
          FROM media_items m
         WHERE m.id = ANY(item_ids)
         ORDER BY m.id
           FOR UPDATE
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
$$;
COMMENT ON FUNCTION settle_media_items(uuid[]) IS
    'Sets media items ready or error from their latest jobs, notifying owners and auditing changes; one statement for a batch.';
