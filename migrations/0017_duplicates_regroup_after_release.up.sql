-- 0017 duplicates: a delete or checksum change that waited for a recording transaction's row no
-- longer skips the regrouping because that transaction's group lock is still visible.
--
-- 0016's triggers take the (owner, checksum) group lock with pg_try_advisory_xact_lock and, when
-- another transaction holds it, leave the regrouping to that transaction: it is recording a
-- checksum of the group and recomputes it after this change. That is true while the holder is
-- still running. It is not true while the holder is ending: PostgreSQL releases a transaction's
-- ordinary locks (its row locks and transaction id) before its advisory locks (ProcReleaseLocks),
-- so a DELETE that waited for the recording's row lock wakes up while the recording's group lock
-- is still held for a moment. The recording has already recomputed the group (with the deleted
-- item as its original) and committed; the trigger skipped; both copies pointed at the deleted
-- item (a CI failure of ExactDuplicateTests.aDeleteAndARecordingAtOnceAgree).
--
-- take_content_group_lock(key) tells the two holders apart. After a failed try it reads the
-- holder's virtual transaction id from pg_locks, then, in a later statement, whether that
-- transaction still holds the lock on its own vxid, which every transaction holds from its start
-- until its end and releases before its advisory locks. A running holder will recompute the group
-- after this change (docs/DUPLICATES.md): the function returns false. A holder that has ended (or
-- holds a session-level lock outside any transaction) releases the lock without recomputing
-- anything: the function sleeps a millisecond and tries again. It never blocks on the advisory
-- lock itself, which could close a cycle with a recording queued for it that waits for this row.

CREATE OR REPLACE FUNCTION take_content_group_lock(key integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    holder text;
BEGIN
    LOOP
        IF pg_try_advisory_xact_lock(1296983157, key) THEN
            RETURN true;
        END IF;
        -- Two statements, in this order: a vxid lock seen after the group lock was seen proves
        -- that the holder's transaction had not begun to end when the group lock was read.
        SELECT l.virtualtransaction INTO holder
          FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = 1296983157 AND l.objid = key::oid AND l.objsubid = 2 AND l.granted
         LIMIT 1;
        IF holder IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_locks v WHERE v.locktype = 'virtualxid' AND v.virtualxid = holder AND v.granted) THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END;
$$;
COMMENT ON FUNCTION take_content_group_lock(integer) IS
    'Takes an (owner, checksum) group lock for a regrouping trigger, or returns false when a running transaction holds it (that one recomputes the group); waits out a holder that is ending.';

CREATE OR REPLACE FUNCTION media_items_regroup_duplicates() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    owners uuid[] := '{}';
    contents text[] := '{}';
BEGIN
    IF OLD.checksum_sha256 IS NOT NULL
       AND take_content_group_lock(hashtext(OLD.owner_id::text || '/' || OLD.checksum_sha256)) THEN
        owners := owners || OLD.owner_id;
        contents := contents || OLD.checksum_sha256::text;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.checksum_sha256 IS NOT NULL
       AND take_content_group_lock(hashtext(NEW.owner_id::text || '/' || NEW.checksum_sha256)) THEN
        owners := owners || NEW.owner_id;
        contents := contents || NEW.checksum_sha256::text;
    END IF;
    IF cardinality(owners) > 0 THEN
        PERFORM mark_content_duplicates(owners, contents);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION media_items_regroup_duplicates() IS
    'AFTER UPDATE OF checksum_sha256 / DELETE on media_items: recomputes the exact-duplicate groups the item left and joined.';
