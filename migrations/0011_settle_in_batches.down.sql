-- Restores 0010's one-item settle_media_item and drops the batch function.

CREATE OR REPLACE FUNCTION settle_media_item(item_id uuid) RETURNS media_status
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

DROP FUNCTION IF EXISTS settle_media_items(uuid[]);
