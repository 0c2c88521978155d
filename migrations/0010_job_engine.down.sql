-- Reverts 0010. Jobs keep their rows; the engine's columns and objects go.
DROP FUNCTION IF EXISTS settle_media_item(uuid);
DROP FUNCTION IF EXISTS enqueue_media_processing(uuid, text[], integer);
DROP TRIGGER IF EXISTS processing_jobs_notify_inserted ON processing_jobs;
DROP FUNCTION IF EXISTS processing_jobs_notify_inserted();
DROP TABLE IF EXISTS processing_workers;
DROP INDEX IF EXISTS idx_processing_jobs_one_active;
DROP INDEX IF EXISTS idx_processing_jobs_lease;
DROP INDEX IF EXISTS idx_processing_jobs_claim_alone;
DROP INDEX IF EXISTS idx_processing_jobs_claim;
DROP TRIGGER IF EXISTS processing_jobs_set_updated_at ON processing_jobs;
ALTER TABLE processing_jobs
    DROP CONSTRAINT IF EXISTS processing_jobs_running_is_owned,
    DROP CONSTRAINT IF EXISTS processing_jobs_lost_counts_not_negative,
    DROP CONSTRAINT IF EXISTS processing_jobs_max_attempts_positive,
    DROP COLUMN IF EXISTS run_alone,
    DROP COLUMN IF EXISTS lost_alone_count,
    DROP COLUMN IF EXISTS lost_count,
    DROP COLUMN IF EXISTS updated_at,
    DROP COLUMN IF EXISTS heartbeat_at,
    DROP COLUMN IF EXISTS lease_expires_at,
    DROP COLUMN IF EXISTS max_attempts,
    DROP COLUMN IF EXISTS run_at;
