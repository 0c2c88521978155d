import Foundation
import MediaNestCore
public import MediaNestDB

/// An operator request that cannot be carried out, with a message for the person who made it.
public struct QueueAdminError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A job as `enqueue` reports it.
public struct EnqueuedJob: Sendable, Hashable {
    public var id: String
    public var type: JobType
    public var status: String
}

/// The operator's queue commands: enqueue, retry, cancel (`status` reads ``QueueStateReader``).
///
/// Each method blocks on the connection; the CLI calls them from a synchronous command.
public enum QueueAdmin {
    /// Checks that `text` is a uuid, so that a typo gets a clear message rather than SQLSTATE 22P02.
    /// - Throws: ``QueueAdminError``.
    public static func requireUUID(_ text: String, what: String) throws(QueueAdminError) -> String {
        guard let uuid = UUID(uuidString: text) else {
            throw QueueAdminError("\(what) \"\(text)\" is not a valid UUID (expected something like 3f2b1c9e-8a4d-4e6f-9b1a-2c3d4e5f6a7b).")
        }
        return uuid.uuidString.lowercased()
    }

    /// Calls `enqueue_media_processing` and reports the item's live jobs.
    /// - Parameters:
    ///   - mediaItemID: The item.
    ///   - types: The job types, or `nil` for the item's MIME type's usual set.
    ///   - priority: Higher runs first.
    /// - Throws: ``QueueAdminError`` for a malformed or unknown id, ``DatabaseError`` otherwise.
    public static func enqueue(mediaItemID: String, types: [JobType]?, priority: Int, on connection: PGConnection) throws -> [EnqueuedJob] {
        let id = try requireUUID(mediaItemID, what: "media item id")
        let ids: PGResult
        do {
            ids = try connection.query("SELECT array_agg(e.id::text ORDER BY e.n) AS ids FROM enqueue_media_processing($1::uuid, $2::text[], $3::int) WITH ORDINALITY AS e(id, n)",
                                       [id, types?.map(\.rawValue), priority])
        } catch {
            switch error.sqlState {
            case "P0002": throw QueueAdminError("There is no media item with id \(id).")
            case "23514":
                throw QueueAdminError("Unknown job type in \(types?.map(\.rawValue).joined(separator: ",") ?? "the request"); known types: \(JobType.all.map(\.rawValue).joined(separator: ", ")).")
            default: throw error
            }
        }
        // A second statement: the first one's snapshot cannot see the rows its function inserted.
        let jobIDs = try ids[0].decode("ids", as: [String]?.self) ?? []
        let rows = try connection.query("""
            SELECT j.id::text AS id, j.job_type, j.status::text AS status
              FROM unnest($1::text[]::uuid[]) WITH ORDINALITY AS e(id, n) JOIN processing_jobs j ON j.id = e.id
             ORDER BY e.n
            """, [jobIDs])
        var jobs: [EnqueuedJob] = []
        for row in rows {
            jobs.append(EnqueuedJob(id: try row.decode("id"), type: JobType(try row.decode("job_type", as: String.self)), status: try row.decode("status")))
        }
        return jobs
    }

    /// Puts a failed or cancelled job back to pending with its attempts reset, and wakes workers.
    /// - Returns: The job's type and media item.
    /// - Throws: ``QueueAdminError`` for a malformed or unknown id, a job in another state, or a
    ///   job whose item already has a live job of that type.
    public static func retry(jobID: String, on connection: PGConnection) throws -> EnqueuedJob {
        let id = try requireUUID(jobID, what: "job id")
        return try connection.transaction { connection in
            // The item first, then the job (the engine's lock order); a job's item never changes,
            // so it can be read before anything is locked.
            try lockItemOfJob(id, on: connection)
            guard let current = try connection.query("SELECT status::text AS status, job_type FROM processing_jobs WHERE id = $1::uuid FOR UPDATE", [id]).first else {
                throw QueueAdminError("There is no job with id \(id).")
            }
            let status = try current.decode("status", as: String.self)
            guard status == "failed" || status == "cancelled" else {
                throw QueueAdminError("Job \(id) is \(status); only failed or cancelled jobs can be retried.")
            }
            do {
                let rows = try connection.query(resetSQL(where: "j.id = $1::uuid"), [id])
                try connection.execute("SELECT pg_notify($1, $2)", [JobStore.channel, try current.decode("job_type", as: String.self)])
                return EnqueuedJob(id: id, type: JobType(try rows[0].decode("job_type", as: String.self)), status: "pending")
            } catch let error as DatabaseError where error.sqlState == "23505" {
                throw QueueAdminError("Job \(id) cannot be retried: its media item already has a pending or running job of the same type.")
            }
        }
    }

    /// Retries every failed job (optionally of one type) that is the latest of its item and type
    /// and has no live twin.
    /// - Returns: The jobs put back to pending.
    /// - Throws: ``DatabaseError``.
    public static func retryFailed(type: JobType?, on connection: PGConnection) throws -> [EnqueuedJob] {
        try connection.transaction { connection in
            // The items first, then their jobs (the engine's lock order). Only jobs of the items
            // locked here are reset: one that failed after this read waits for the next retry.
            let items = try connection.query("""
                SELECT DISTINCT media_item_id::text AS id FROM processing_jobs
                 WHERE status = 'failed' AND ($1::text IS NULL OR job_type = $1::text)
                """, [type?.rawValue]).map { row throws(DatabaseError) in try row.decode("id", as: String.self) }
            guard !items.isEmpty else { return [] }
            try JobStore.lockItems(items, on: connection)
            let rows = try connection.query(resetSQL(where: """
                j.id IN (SELECT DISTINCT ON (f.media_item_id, f.job_type) f.id FROM processing_jobs f
                          WHERE f.status = 'failed' AND ($1::text IS NULL OR f.job_type = $1::text)
                            AND f.media_item_id = ANY ($2::text[]::uuid[])
                            AND NOT EXISTS (SELECT 1 FROM processing_jobs o WHERE o.media_item_id = f.media_item_id
                                               AND o.job_type = f.job_type AND o.status IN ('pending', 'running'))
                          ORDER BY f.media_item_id, f.job_type, f.created_at DESC)
                """), [type?.rawValue, items])
            let jobs = try rows.map { row throws(DatabaseError) in
                EnqueuedJob(id: try row.decode("id"), type: JobType(try row.decode("job_type", as: String.self)), status: "pending")
            }
            if !jobs.isEmpty {
                try connection.execute("SELECT pg_notify($1, $2)", [JobStore.channel, Set(jobs.map(\.type.rawValue)).sorted().joined(separator: ",")])
            }
            return jobs
        }
    }

    private static func resetSQL(where condition: String) -> String {
        """
        WITH reset AS (
            UPDATE processing_jobs j
               SET status = 'pending', attempts = 0, lost_count = 0, lost_alone_count = 0, run_alone = false,
                   run_at = now(), worker_id = NULL, lease_expires_at = NULL, started_at = NULL, completed_at = NULL,
                   error_message = NULL, output_data = '{}', progress_info = '{}'
             WHERE \(condition)
            RETURNING j.id, j.job_type, j.media_item_id
        ), item AS (
            UPDATE media_items m SET status = 'processing'
             WHERE m.id IN (SELECT media_item_id FROM reset) AND m.status IN ('error', 'ready')
        )
        SELECT id::text AS id, job_type FROM reset
        """
    }

    /// Locks the media item of a job (the first step of the engine's lock order); nothing when
    /// there is no such job.
    private static func lockItemOfJob(_ jobID: String, on connection: PGConnection) throws(DatabaseError) {
        let item = try connection.query("SELECT media_item_id::text AS id FROM processing_jobs WHERE id = $1::uuid", [jobID])
            .first.map { row throws(DatabaseError) in try row.decode("id", as: String.self) }
        if let item { try JobStore.lockItems([item], on: connection) }
    }

    /// What `cancel` did.
    public enum CancelResult: Sendable, Hashable {
        /// The job was pending and is now cancelled.
        case cancelledPending
        /// The job was running on `workerID`; it is cancelled in the row and its worker stops it
        /// within one heartbeat.
        case cancelledRunning(workerID: String)
    }

    /// Cancels a pending or running job.
    /// - Throws: ``QueueAdminError`` for a malformed or unknown id or a job that already finished.
    public static func cancel(jobID: String, on connection: PGConnection) throws -> CancelResult {
        let id = try requireUUID(jobID, what: "job id")
        return try connection.transaction { connection in
            try lockItemOfJob(id, on: connection)
            guard let current = try connection.query("""
                SELECT status::text AS status, worker_id, media_item_id::text AS media_item_id
                  FROM processing_jobs WHERE id = $1::uuid FOR UPDATE
                """, [id]).first else {
                throw QueueAdminError("There is no job with id \(id).")
            }
            let status = try current.decode("status", as: String.self)
            guard status == "pending" || status == "running" else {
                throw QueueAdminError("Job \(id) is already \(status); there is nothing to cancel.")
            }
            try connection.execute("""
                UPDATE processing_jobs
                   SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL,
                       error_message = 'Cancelled by an operator.'
                 WHERE id = $1::uuid
                """, [id])
            try connection.execute("SELECT settle_media_items(ARRAY[$1::uuid])", [try current.decode("media_item_id", as: String.self)])
            if status == "running" {
                return .cancelledRunning(workerID: try current.decode("worker_id", as: String?.self) ?? "?")
            }
            return .cancelledPending
        }
    }
}
