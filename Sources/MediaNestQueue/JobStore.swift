import Foundation
public import MediaNestCore
public import MediaNestDB

/// A job a worker claimed, with the media item its handler needs.
public struct ClaimedWork: Sendable, Hashable {
    public var job: ClaimedJob
    /// `nil` when the item vanished between enqueue and claim (the job then fails at once).
    public var mediaItem: MediaItemRecord?
    /// The job was rescued after a crash and must run with nothing beside it.
    public var runAlone: Bool

    public init(job: ClaimedJob, mediaItem: MediaItemRecord?, runAlone: Bool) {
        self.job = job
        self.mediaItem = mediaItem
        self.runAlone = runAlone
    }
}

/// What one execution runs: a single claimed job, or the jobs of one media item that were claimed
/// together to run as one (its thumbnail and preview, from one decode; see
/// ``JobStore/claimUnits(slots:limit:together:on:)``).
///
/// Each job keeps its own claim token (``ClaimedJob/leaseID``): the heartbeat extends, and every
/// write fences, each one on its own, so a cancel or a lost lease of one touches only that one.
public struct ClaimedUnit: Sendable, Hashable {
    /// The jobs, never empty, all of one media item when there are several; the first is the
    /// one the claim picked by priority (the unit's *lead*), the others came along with it, by type.
    public var works: [ClaimedWork]

    public init(_ works: [ClaimedWork]) {
        precondition(!works.isEmpty, "a claimed unit holds at least one job")
        self.works = works
    }

    /// The job the claim picked; the others came with it.
    public var lead: ClaimedWork { works[0] }
}

/// What became of a failed run.
public enum FailureDisposition: Sendable, Hashable {
    /// Back to pending; it may run again at `runAt`.
    case retrying(runAt: Date)
    /// Failed for good (permanent error, or out of attempts).
    case failed
    /// This run no longer owned the job (fenced); nothing was written.
    case dropped
}

/// One in-flight job as the heartbeat reports it.
public struct HeartbeatEntry: Sendable, Hashable {
    public var jobID: String
    /// ``ClaimedJob/leaseID`` of the run: the heartbeat only extends the lease of that claim.
    public var leaseID: String
    /// The latest progress, or `nil` to leave `progress_info` as it is.
    public var progress: JSONValue?

    public init(jobID: String, leaseID: String, progress: JSONValue?) {
        self.jobID = jobID
        self.leaseID = leaseID
        self.progress = progress
    }
}

/// What a rescue pass did.
public struct RescueReport: Sendable, Hashable {
    /// Jobs put back to pending (to run alone).
    public var requeued: [String] = []
    /// Jobs failed as poison (`worker_lost`).
    public var poisoned: [String] = []
    public init() {}
}

/// The job engine's SQL: claim, heartbeat, complete, fail, release and rescue.
///
/// Every method blocks on the given connection; call it from a thread of your own or through
/// ``PGConnectionRunner``, never from Swift's cooperative pool. Every write a run makes is
/// *fenced*: it only applies while the row is `running` under the run's claim token
/// (``ClaimedJob/leaseID``, new on every claim). A worker that lost its lease therefore cannot
/// overwrite the result of the run that took the job over, even when that run is its own again;
/// its write affects no row and is reported as dropped.
///
/// Lock order: every transaction that finishes work locks the media items first (in id order,
/// in a statement of their own), then their jobs, then judges the items; the same order as
/// `enqueue_media_processing`. See docs/QUEUE.md.
public struct JobStore: Sendable {
    /// `processing_jobs.worker_id` of this worker (see ``WorkerIdentity``).
    public var workerID: String
    /// How long a claim or heartbeat keeps a job owned.
    public var lease: Duration
    /// When failed runs come back.
    public var retryPolicy: RetryPolicy
    /// How many times a job may be lost while running alone before it fails as poison.
    public var maxLostAlone: Int
    /// `lock_timeout` for the transactions that record a run (``complete(_:outcome:on:)``,
    /// ``completeBatch(_:on:)``, ``fail(_:error:itemUpdate:on:)``), or `nil` to wait as long as
    /// it takes. A write stuck behind a row lock then fails with `55P03`, which the result
    /// writer retries, instead of holding up every write behind it. It is set with
    /// `set_config(…, true)`, for the transaction only, so it never outlives it: behind
    /// PgBouncer in transaction mode a session setting would stay on a server connection that
    /// other clients then get, and be missing from the one this worker gets next.
    public var lockTimeout: Duration?

    /// The NOTIFY channel enqueues, retries and releases signal on.
    public static let channel = "medianest_jobs"

    /// The transaction-level advisory lock a rescue pass holds, so that one worker at a time
    /// rescues: `0x4D4E726573637565`, the ASCII bytes of "MNrescue" (the migrator's lock is
    /// "MNmigrat").
    public static let rescueLockKey: Int64 = 0x4D4E_7265_7363_7565

    /// Creates a store.
    /// - Parameters:
    ///   - workerID: This worker's id.
    ///   - lease: Lease length (default 30 s).
    ///   - retryPolicy: Backoff and attempts.
    ///   - maxLostAlone: Losses while running alone before a job is poison (default 2).
    public init(workerID: String, lease: Duration = .seconds(30), retryPolicy: RetryPolicy = RetryPolicy(), maxLostAlone: Int = 2) {
        self.workerID = workerID
        self.lease = lease
        self.retryPolicy = retryPolicy
        self.maxLostAlone = max(1, maxLostAlone)
    }

    // MARK: Claim

    private static let claimedColumns = """
        SELECT c.id, c.media_item_id, c.job_type, c.attempts, c.max_attempts, c.priority, c.input_data, c.run_alone,
               c.lease_id::text AS lease_id,
               m.id AS item_id, m.owner_id, m.filename, m.original_filename, m.mime_type, m.file_size, m.storage_path, m.metadata
          FROM claimed c LEFT JOIN media_items m ON m.id = c.media_item_id
         ORDER BY c.priority DESC, c.run_at, c.created_at
        """

    private static let claimUpdate = """
        claimed AS (
            UPDATE processing_jobs j
               SET status = 'running', attempts = j.attempts + 1, started_at = now(), completed_at = NULL,
                   worker_id = $1, lease_id = gen_random_uuid(),
                   lease_expires_at = now() + make_interval(secs => $2::float8), heartbeat_at = now(),
                   progress_info = '{}'
              FROM picked WHERE j.id = picked.id
            RETURNING j.*
        )
        """

    /// Claims up to `slots[type]` jobs of each type, `limit` in all, in one statement.
    ///
    /// Per type, the oldest runnable pending jobs by `priority DESC, run_at, created_at` are
    /// locked with `FOR UPDATE SKIP LOCKED` (so concurrent workers never wait for or take the
    /// same row) and set running with a lease. Jobs marked to run alone are left out; see
    /// ``claimRunAlone(types:on:)``. No lock outlives the statement.
    /// - Parameters:
    ///   - slots: Free slots per job type; types with zero are skipped.
    ///   - limit: Free slots in all.
    ///   - connection: The connection to use.
    /// - Returns: The claimed jobs, highest priority first.
    /// - Throws: ``DatabaseError``.
    public func claim(slots: [JobType: Int], limit: Int, on connection: PGConnection) throws(DatabaseError) -> [ClaimedWork] {
        let wanted = slots.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        guard limit > 0, !wanted.isEmpty else { return [] }
        let sql = """
            WITH wanted AS (
                SELECT * FROM unnest($3::text[], $4::text[]::int[]) AS w(job_type, slots)
            ), picked AS (
                SELECT c.id FROM wanted w CROSS JOIN LATERAL (
                    SELECT j.id, j.priority, j.run_at, j.created_at FROM processing_jobs j
                     WHERE j.status = 'pending' AND NOT j.run_alone AND j.job_type = w.job_type AND j.run_at <= now()
                     ORDER BY j.priority DESC, j.run_at, j.created_at
                     LIMIT least(w.slots, $5::int)
                       FOR UPDATE SKIP LOCKED) c
                 ORDER BY c.priority DESC, c.run_at, c.created_at
                 LIMIT $5::int
            ), \(JobStore.claimUpdate)
            \(JobStore.claimedColumns)
            """
        let rows = try connection.query(sql, [workerID, lease.seconds, wanted.map(\.key.rawValue), wanted.map { String(min($0.value, limit)) }, limit])
        return try rows.map(JobStore.decodeClaim)
    }

    /// Claims like ``claim(slots:limit:on:)``, and with every claimed job whose type is in
    /// `together`, also the media item's other pending jobs of those types: one *unit* that runs
    /// as one execution (the item's thumbnail and preview from one decode).
    ///
    /// One statement, no lock outlives it. The jobs that come along are locked
    /// `FOR UPDATE SKIP LOCKED` like the picked ones, so the claim never waits for them: a job of
    /// the item that another transaction holds (another worker's claim being made, an operator's
    /// `cancel` or `retry`) is left out and the unit is smaller. Under READ COMMITTED a row that
    /// another claim set running after this statement's snapshot is re-checked when it is locked
    /// and skipped, so no job is taken twice. Only jobs that could be claimed on their own come
    /// along: pending, runnable (`run_at` passed) and not marked to run alone, so a job retried
    /// with a backoff, or rescued after a crash, runs alone. Claims still touch job rows only and
    /// never an item row, so they stay outside the engine's lock order (docs/QUEUE.md).
    ///
    /// A job that comes along takes no slot of its own: the unit runs on one thread, as its lead.
    /// - Parameters:
    ///   - slots: Free slots per job type, as for ``claim(slots:limit:on:)``.
    ///   - limit: Free slots in all: how many units at most.
    ///   - together: The job types whose pending jobs of one item are claimed together; fewer
    ///     than two types claims each job alone.
    ///   - connection: The connection to use.
    /// - Returns: The units, in the claim's priority order; the jobs of a unit ordered lead first,
    ///   then by type.
    /// - Throws: ``DatabaseError``.
    public func claimUnits(slots: [JobType: Int], limit: Int, together: Set<JobType>, on connection: PGConnection) throws(DatabaseError) -> [ClaimedUnit] {
        let wanted = slots.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        guard limit > 0, !wanted.isEmpty else { return [] }
        let joint = together.count >= 2 ? together.map(\.rawValue).sorted() : []
        // Nothing to claim together: the plain claim, whose plan is the queue bench's.
        guard !joint.isEmpty else { return try claim(slots: slots, limit: limit, on: connection).map { ClaimedUnit([$0]) } }
        let sql = """
            WITH wanted AS (
                SELECT * FROM unnest($3::text[], $4::text[]::int[]) AS w(job_type, slots)
            ), candidate AS (
                SELECT c.* FROM wanted w CROSS JOIN LATERAL (
                    SELECT j.id, j.media_item_id, j.job_type, j.priority, j.run_at, j.created_at FROM processing_jobs j
                     WHERE j.status = 'pending' AND NOT j.run_alone AND j.job_type = w.job_type AND j.run_at <= now()
                     ORDER BY j.priority DESC, j.run_at, j.created_at
                     LIMIT least(w.slots, $5::int)
                       FOR UPDATE SKIP LOCKED) c
            ), lead AS (
                -- One lead per unit: of the candidates of one item's joint types, the first by
                -- priority; the other comes along below (it is locked by this statement already).
                SELECT * FROM (
                    SELECT DISTINCT ON (unit) c.id, c.media_item_id, c.job_type, c.priority, c.run_at, c.created_at
                      FROM candidate c, LATERAL (SELECT CASE WHEN c.job_type = ANY($6::text[]) THEN c.media_item_id ELSE c.id END AS unit) u
                     ORDER BY unit, c.priority DESC, c.run_at, c.created_at, c.job_type) d
                 ORDER BY d.priority DESC, d.run_at, d.created_at
                 LIMIT $5::int
            ), along AS (
                -- The item's other pending jobs of the joint types, locked without waiting (a
                -- candidate of this statement is locked by it already and comes out too).
                SELECT s.id FROM lead l CROSS JOIN LATERAL (
                    SELECT s.id FROM processing_jobs s
                     WHERE s.media_item_id = l.media_item_id AND s.job_type = ANY($6::text[]) AND s.job_type <> l.job_type
                       AND s.status = 'pending' AND NOT s.run_alone AND s.run_at <= now()
                       FOR UPDATE SKIP LOCKED) s
                 WHERE l.job_type = ANY($6::text[])
            ), picked AS (
                SELECT id FROM lead UNION SELECT id FROM along
            ), \(JobStore.claimUpdate)
            \(JobStore.claimedColumns.replacingOccurrences(of: "SELECT c.id,", with: "SELECT c.id, c.id IN (SELECT id FROM lead) AS is_lead,"))
            """
        let rows = try connection.query(sql, [workerID, lease.seconds, wanted.map(\.key.rawValue), wanted.map { String(min($0.value, limit)) },
                                              limit, joint])
        var claimed: [(work: ClaimedWork, isLead: Bool)] = []
        for row in rows {
            claimed.append((try JobStore.decodeClaim(row), try row.decode("is_lead", as: Bool.self)))
        }
        return JobStore.units(of: claimed, together: Set(joint.map { JobType($0) }))
    }

    /// Groups claimed jobs into units, in claim order: a lead of a type in `together` opens its
    /// item's unit (or joins it, when the item's other job was picked as a lead too); the jobs
    /// that came along join their item's unit; every other job is a unit of its own.
    static func units(of claimed: [(work: ClaimedWork, isLead: Bool)], together: Set<JobType>) -> [ClaimedUnit] {
        var units: [[ClaimedWork]] = []
        var unitOfItem: [String: Int] = [:]
        for (work, isLead) in claimed where isLead {
            if together.contains(work.job.type), let index = unitOfItem[work.job.mediaItemID] {
                units[index].append(work)
            } else {
                if together.contains(work.job.type) { unitOfItem[work.job.mediaItemID] = units.count }
                units.append([work])
            }
        }
        for (work, isLead) in claimed where !isLead {
            if let index = unitOfItem[work.job.mediaItemID] {
                units[index].append(work)
            } else {
                // Not reachable (a job comes along only with a lead of its item); kept runnable.
                units.append([work])
            }
        }
        return units.map { works in
            ClaimedUnit([works[0]] + works.dropFirst().sorted { $0.job.type < $1.job.type })
        }
    }

    /// Claims one job that must run alone (rescued after a crash), if any of `types` waits.
    ///
    /// Call it only when nothing else runs in this worker, and claim nothing else until it ends.
    /// - Throws: ``DatabaseError``.
    public func claimRunAlone(types: [JobType], on connection: PGConnection) throws(DatabaseError) -> ClaimedWork? {
        guard !types.isEmpty else { return nil }
        let sql = """
            WITH picked AS (
                SELECT j.id FROM processing_jobs j
                 WHERE j.status = 'pending' AND j.run_alone AND j.job_type = ANY ($3::text[]) AND j.run_at <= now()
                 ORDER BY j.priority DESC, j.run_at, j.created_at
                 LIMIT 1 FOR UPDATE SKIP LOCKED
            ), \(JobStore.claimUpdate)
            \(JobStore.claimedColumns)
            """
        return try connection.query(sql, [workerID, lease.seconds, types.map(\.rawValue)]).map(JobStore.decodeClaim).first
    }

    /// Whether a job that must run alone is waiting for one of `types`.
    ///
    /// A busy worker that sees one stops claiming until it is idle, so that such jobs are not
    /// starved by a steady stream of ordinary ones.
    public func runAloneJobWaiting(types: [JobType], on connection: PGConnection) throws(DatabaseError) -> Bool {
        guard !types.isEmpty else { return false }
        return try connection.query("""
            SELECT EXISTS (SELECT 1 FROM processing_jobs
                            WHERE status = 'pending' AND run_alone AND job_type = ANY ($1::text[]) AND run_at <= now()) AS waiting
            """, [types.map(\.rawValue)])[0].decode("waiting", as: Bool.self)
    }

    /// Whether any job of `types` could be claimed now (pending with `run_at` passed).
    public func runnableJobExists(types: [JobType], on connection: PGConnection) throws(DatabaseError) -> Bool {
        guard !types.isEmpty else { return false }
        return try connection.query("""
            SELECT EXISTS (SELECT 1 FROM processing_jobs
                            WHERE status = 'pending' AND job_type = ANY ($1::text[]) AND run_at <= now()) AS runnable
            """, [types.map(\.rawValue)])[0].decode("runnable", as: Bool.self)
    }

    private static func decodeClaim(_ row: PGRow) throws(DatabaseError) -> ClaimedWork {
        let job = ClaimedJob(
            id: try row.decode("id", as: String.self),
            mediaItemID: try row.decode("media_item_id", as: String.self),
            type: JobType(try row.decode("job_type", as: String.self)),
            attempt: try row.decode("attempts", as: Int.self),
            maxAttempts: try row.decode("max_attempts", as: Int.self),
            priority: try row.decode("priority", as: Int.self),
            input: try row.decode("input_data", as: JSONValue?.self) ?? [:],
            leaseID: try row.decode("lease_id", as: String.self))
        var item: MediaItemRecord?
        if try row.decode("item_id", as: String?.self) != nil {
            item = MediaItemRecord(
                id: try row.decode("item_id", as: String.self),
                ownerID: try row.decode("owner_id", as: String.self),
                filename: try row.decode("filename", as: String.self),
                originalFilename: try row.decode("original_filename", as: String?.self),
                mimeType: try row.decode("mime_type", as: String.self),
                fileSize: try row.decode("file_size", as: Int64?.self),
                storagePath: try row.decode("storage_path", as: String.self),
                metadata: try row.decode("metadata", as: JSONValue?.self) ?? [:])
        }
        return ClaimedWork(job: job, mediaItem: item, runAlone: try row.decode("run_alone", as: Bool.self))
    }

    // MARK: Worker registry

    /// Registers this worker as live in `processing_workers` until `ttl` from now (an upsert).
    ///
    /// `status` lists live workers and the job types no live worker serves from this table. Call
    /// it at start and then regularly (about every 30 s with a `ttl` of about 90 s, so that one
    /// late refresh does not make a live worker look dead); the heartbeat does not touch it.
    /// - Parameters:
    ///   - types: The types this worker serves.
    ///   - concurrency: The worker's global limit.
    ///   - ttl: How long the registration holds without another call.
    ///   - connection: The connection to use.
    /// - Throws: ``DatabaseError``.
    public func registerWorker(types: [JobType], concurrency: Int, ttl: Duration, on connection: PGConnection) throws(DatabaseError) {
        let identity = WorkerIdentity.parse(workerID)
        try connection.execute("""
            INSERT INTO processing_workers AS w (id, host, pid, types, concurrency, expires_at)
            VALUES ($1, $2, $3::int, $4::text[], $5::int, now() + make_interval(secs => $6::float8))
            ON CONFLICT (id) DO UPDATE
               SET last_seen_at = now(), expires_at = excluded.expires_at, types = excluded.types,
                   concurrency = excluded.concurrency
            """, [workerID, identity.host, Int(identity.pid), types.map(\.rawValue), concurrency, ttl.seconds])
    }

    /// Removes this worker from `processing_workers` (on a clean exit).
    public func unregister(on connection: PGConnection) throws(DatabaseError) {
        try connection.execute("DELETE FROM processing_workers WHERE id = $1", [workerID])
    }

    // MARK: Heartbeat

    /// Extends the leases of this worker's in-flight runs and writes their progress, in one
    /// statement. Sends nothing when `entries` is empty: an idle worker has no lease to extend.
    ///
    /// Each lease is extended only while the row is `running` under the entry's
    /// ``HeartbeatEntry/leaseID``. The heartbeat does not touch `processing_workers`; see
    /// ``registerWorker(types:concurrency:ttl:on:)``.
    /// - Parameters:
    ///   - entries: The in-flight runs.
    ///   - connection: The connection to use.
    /// - Returns: The runs this worker must stop: ``StopReason/cancelled`` when an operator
    ///   cancelled the row, ``StopReason/mediaItemDeleted`` when the row is gone (jobs are only
    ///   deleted with their media item, by cascade), ``StopReason/leaseLost`` when another claim
    ///   owns it now or it is no longer running.
    /// - Throws: ``DatabaseError``.
    public func heartbeat(_ entries: [HeartbeatEntry], on connection: PGConnection) throws(DatabaseError) -> [String: StopReason] {
        guard !entries.isEmpty else { return [:] }
        // In id order, like every multi-row write of a worker's jobs, so that this statement and a
        // batch completion on another connection lock shared rows in the same order.
        let sorted = entries.sorted { $0.jobID < $1.jobID }
        let extended = try connection.query("""
            WITH v AS (
                SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $4::text[]::jsonb[]) AS v(id, lease_id, progress)
            )
            UPDATE processing_jobs j
               SET lease_expires_at = now() + make_interval(secs => $3::float8), heartbeat_at = now(),
                   progress_info = CASE WHEN v.progress = 'null'::jsonb THEN j.progress_info ELSE v.progress END
              FROM v
             WHERE j.id = v.id AND j.lease_id = v.lease_id AND j.status = 'running'
            RETURNING j.id::text AS id
            """, [sorted.map(\.jobID), sorted.map(\.leaseID), lease.seconds, sorted.map { ($0.progress ?? .null).jsonText }])
        let kept = Set(try extended.map { row throws(DatabaseError) in try row.decode("id", as: String.self) })
        let notExtended = sorted.map(\.jobID).filter { !kept.contains($0) }
        guard !notExtended.isEmpty else { return [:] }
        // Why not, in a statement of its own: its snapshot is taken now, after the UPDATE above
        // waited for any row lock. Read in the UPDATE's statement, a job an operator cancelled
        // while the heartbeat waited for its row still looked `running` (that statement's
        // snapshot predates the wait), and the cancel was taken for a lost lease.
        let rows = try connection.query("""
            SELECT v.id::text AS id, coalesce(j.status::text, 'missing') AS status
              FROM unnest($1::text[]::uuid[]) AS v(id) LEFT JOIN processing_jobs j ON j.id = v.id
            """, [notExtended])
        var stops: [String: StopReason] = [:]
        for row in rows {
            let reason: StopReason = switch try row.decode("status", as: String.self) {
            case "cancelled": .cancelled
            case "missing": .mediaItemDeleted
            default: .leaseLost
            }
            stops[try row.decode("id", as: String.self)] = reason
        }
        return stops
    }

    // MARK: Finishing a run

    /// The fence of every write of a run; `$1` is the job id and `$2` the run's lease id.
    private static let fence = "id = $1::uuid AND status = 'running' AND lease_id = $2::uuid"

    /// Locks media items in id order, in a statement of its own: the first step of every
    /// transaction that finishes work.
    ///
    /// A later statement of the transaction then reads the items' jobs with a snapshot taken after
    /// the locks were granted, and two transactions never take an item and a job in opposite
    /// orders (`enqueue_media_processing` locks the item, then meets the jobs' index entries).
    /// Items that no longer exist are skipped.
    static func lockItems(_ itemIDs: some Collection<String>, on connection: PGConnection) throws(DatabaseError) {
        try lockItems(itemIDs, lockTimeout: nil, on: connection)
    }

    /// ``lockItems(_:on:)`` after setting ``lockTimeout`` for the transaction.
    ///
    /// When some of the runs record a checksum (`contents`: item id → SHA-256), the items of
    /// those contents' groups are locked too, after the groups' own locks (see
    /// ``ExactDuplicates``), so that ``ExactDuplicates/mark(_:on:)`` may update them.
    private func lockItemsForRecording(_ itemIDs: some Collection<String>, contents: [String: String] = [:],
                                       on connection: PGConnection) throws(DatabaseError) {
        try JobStore.lockItems(itemIDs, contents: contents, lockTimeout: lockTimeout, on: connection)
    }

    private static func lockItems(_ itemIDs: some Collection<String>, contents: [String: String] = [:], lockTimeout: Duration?,
                                  on connection: PGConnection) throws(DatabaseError) {
        if let lockTimeout {
            // A statement of its own, before the locks: within one statement the order in
            // which PostgreSQL evaluates the setting and the locking is not defined.
            try connection.execute("SELECT set_config('lock_timeout', $1, true)", ["\(max(1, Int(lockTimeout.seconds * 1000)))ms"])
        }
        guard !itemIDs.isEmpty else { return }
        if !contents.isEmpty {
            try ExactDuplicates.lockItems(Array(Set(itemIDs)).sorted(), contents: contents, on: connection)
            return
        }
        try connection.execute("""
            SELECT count(*) FROM (SELECT 1 FROM media_items WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE) locked
            """, [Array(Set(itemIDs)).sorted()])
    }

    /// Records a successful run, applies its media item update and settles the item, in one
    /// transaction that locks the item first.
    /// - Returns: `false` when the run no longer owned the job (nothing was written).
    /// - Throws: ``DatabaseError``; the transaction is rolled back.
    public func complete(_ job: ClaimedJob, outcome: JobOutcome, on connection: PGConnection) throws -> Bool {
        try connection.transaction { connection in
            let links = outcome.itemUpdate.livePhoto.map { [(job.mediaItemID, $0)] } ?? []
            // Live Photo keys, then content keys (inside lockItemsForRecording), then item rows.
            let partners = try JobStore.lockLivePhotoKeys(links, lockTimeout: lockTimeout, on: connection)
            try lockItemsForRecording([job.mediaItemID] + partners, contents: ExactDuplicates.contents([(job.mediaItemID, outcome.itemUpdate)]),
                                      on: connection)
            let owned = try connection.execute("""
                UPDATE processing_jobs
                   SET status = 'completed', completed_at = now(), output_data = $3, error_message = NULL,
                       lease_expires_at = NULL, run_alone = false
                 WHERE \(JobStore.fence)
                """, [job.id, job.leaseID, outcome.output])
            guard owned == 1 else { return false }
            try JobStore.apply(outcome.itemUpdate, to: job.mediaItemID, on: connection)
            try JobStore.linkLivePhotos(links, on: connection)
            try ExactDuplicates.mark(ExactDuplicates.contents([(job.mediaItemID, outcome.itemUpdate)]), on: connection)
            try connection.execute("SELECT settle_media_items(ARRAY[$1::uuid])", [job.mediaItemID])
            return true
        }
    }

    /// Records several successful runs in one transaction: the items locked, one fenced `UPDATE`
    /// for all the runs, their media item updates, and one settle call for all their items.
    ///
    /// This is what lets a worker keep up with PostgreSQL's own single-job claim+complete loop:
    /// the round trips are paid per batch, not per job (the approach of River and
    /// graphile-worker). The items are locked in id order before any job row is touched, so two
    /// workers completing jobs of the same items, or an enqueue of one of them, cannot deadlock.
    /// - Parameter runs: The jobs and their outcomes.
    /// - Returns: The ids of the jobs this worker still owned and therefore completed; a run
    ///   missing from it was fenced off (lease lost or cancelled) and nothing was written for it.
    /// - Throws: ``DatabaseError``; the transaction is rolled back and nothing is written. A
    ///   caller that gets a non-connection error should fall back to ``complete(_:outcome:on:)``
    ///   per run, so that one bad result cannot hold back the others.
    public func completeBatch(_ runs: [(job: ClaimedJob, outcome: JobOutcome)], on connection: PGConnection) throws -> Set<String> {
        guard !runs.isEmpty else { return [] }
        // Job ids in order: a heartbeat on another connection writes the same rows in this order.
        let sorted = runs.sorted { $0.job.id < $1.job.id }
        return try connection.transaction { connection in
            let links = sorted.compactMap { run in run.outcome.itemUpdate.livePhoto.map { (run.job.mediaItemID, $0) } }
            // Live Photo keys, then content keys (inside lockItemsForRecording), then item rows.
            let partners = try JobStore.lockLivePhotoKeys(links, lockTimeout: lockTimeout, on: connection)
            try lockItemsForRecording(sorted.map(\.job.mediaItemID) + partners,
                                      contents: ExactDuplicates.contents(sorted.map { ($0.job.mediaItemID, $0.outcome.itemUpdate) }),
                                      on: connection)
            let rows = try connection.query("""
                UPDATE processing_jobs j
                   SET status = 'completed', completed_at = now(), output_data = v.output, error_message = NULL,
                       lease_expires_at = NULL, run_alone = false
                  FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::jsonb[]) AS v(id, lease_id, output)
                 WHERE j.id = v.id AND j.status = 'running' AND j.lease_id = v.lease_id
                RETURNING j.id::text AS id
                """, [sorted.map(\.job.id), sorted.map(\.job.leaseID), sorted.map(\.outcome.output.jsonText)])
            let owned = Set(try rows.map { try $0.decode("id", as: String.self) })
            let ownedRuns = sorted.filter { owned.contains($0.job.id) }
            guard !ownedRuns.isEmpty else { return owned }
            for run in ownedRuns.sorted(by: { $0.job.mediaItemID < $1.job.mediaItemID }) where !run.outcome.itemUpdate.isEmpty {
                try JobStore.apply(run.outcome.itemUpdate, to: run.job.mediaItemID, on: connection)
            }
            let ownedItems = Set(ownedRuns.map(\.job.mediaItemID))
            try JobStore.linkLivePhotos(links.filter { ownedItems.contains($0.0) }, on: connection)
            try ExactDuplicates.mark(ExactDuplicates.contents(ownedRuns.map { ($0.job.mediaItemID, $0.outcome.itemUpdate) }), on: connection)
            try connection.execute("SELECT settle_media_items($1::text[]::uuid[])", [Array(ownedItems).sorted()])
            return owned
        }
    }

    /// Applies a run's changes to its media item. The caller holds the item's lock.
    private static func apply(_ update: MediaItemUpdate, to itemID: String, on connection: PGConnection) throws(DatabaseError) {
        guard !update.isEmpty else { return }
        try connection.execute("""
            UPDATE media_items
               SET metadata = metadata || $2, checksum_md5 = coalesce($3, checksum_md5),
                   checksum_sha256 = coalesce($4, checksum_sha256), file_size = coalesce($5, file_size),
                   thumbnail_path = coalesce($6, thumbnail_path), preview_path = coalesce($7, preview_path),
                   perceptual_hash = coalesce($8, perceptual_hash)
             WHERE id = $1
            """, [itemID, JSONValue.object(update.metadataMerge), update.checksumMD5, update.checksumSHA256,
                  update.fileSize, update.thumbnailPath, update.previewPath, update.perceptualHash])
        if !update.processingInfoMerge.isEmpty {
            try connection.execute("UPDATE media_items SET processing_info = processing_info || $2 WHERE id = $1",
                                   [itemID, JSONValue.object(update.processingInfoMerge)])
        }
        // media_metadata has no unique key on (item, provider); the item row lock taken above
        // serialises writers of one item, so update-then-insert cannot create duplicates.
        for provided in update.providerMetadata {
            let updated = try connection.execute("""
                UPDATE media_metadata SET data = $4, fetched_at = now(), confidence_score = $5
                 WHERE media_item_id = $1 AND provider = $2 AND external_id IS NOT DISTINCT FROM $3
                """, [itemID, provided.provider, provided.externalID, provided.data, provided.confidence])
            if updated == 0 {
                try connection.execute("""
                    INSERT INTO media_metadata (media_item_id, provider, external_id, data, fetched_at, confidence_score)
                    VALUES ($1, $2, $3, $4, now(), $5)
                    """, [itemID, provided.provider, provided.externalID, provided.data, provided.confidence])
            }
        }
    }

    /// Records a failed run: back to pending with backoff when the error is retryable and
    /// attempts remain, failed for good otherwise (settling the media item to `error`).
    ///
    /// One transaction that locks the item first. `itemUpdate` is applied in it either way, only
    /// if the run still owns the job: what a failed run did learn about the file (its checksums,
    /// say) is still worth keeping.
    /// - Parameters:
    ///   - job: The run.
    ///   - error: Why it failed.
    ///   - itemUpdate: Changes to the media item to keep despite the failure.
    ///   - connection: The connection to use.
    /// - Returns: What happened; ``FailureDisposition/dropped`` when the run no longer owned the
    ///   job (nothing was written).
    /// - Throws: ``DatabaseError``; the transaction is rolled back.
    public func fail(_ job: ClaimedJob, error: JobError, itemUpdate: MediaItemUpdate = MediaItemUpdate(),
                     on connection: PGConnection) throws -> FailureDisposition {
        let maxAttempts = retryPolicy.maxAttemptsOverride ?? job.maxAttempts
        let retrying = error.isRetryable && job.attempt < maxAttempts
        return try fail(job, error: error, retryAfter: retrying ? retryPolicy.delay(afterAttempt: job.attempt) : nil,
                        itemUpdate: itemUpdate, on: connection)
    }

    /// Records a failed run whose fate the caller decided (the worker's ``RetryPolicy``
    /// decision, made where the run ended): back to pending after `retryAfter`, or failed for
    /// good when it is `nil`. Otherwise as ``fail(_:error:itemUpdate:on:)``.
    public func fail(_ job: ClaimedJob, error: JobError, retryAfter delay: Duration?, itemUpdate: MediaItemUpdate = MediaItemUpdate(),
                     on connection: PGConnection) throws -> FailureDisposition {
        let output: JSONValue = ["error": error.json(attempt: job.attempt)]
        let maxAttempts = retryPolicy.maxAttemptsOverride ?? job.maxAttempts
        return try connection.transaction { connection in
            try lockItemsForRecording([job.mediaItemID], contents: ExactDuplicates.contents([(job.mediaItemID, itemUpdate)]), on: connection)
            let disposition: FailureDisposition
            if let delay {
                let rows = try connection.query("""
                    UPDATE processing_jobs
                       SET status = 'pending', run_at = now() + make_interval(secs => $3::float8), worker_id = NULL,
                           lease_expires_at = NULL, error_message = $4, output_data = $5
                     WHERE \(JobStore.fence)
                    RETURNING run_at
                    """, [job.id, job.leaseID, delay.seconds,
                          "Attempt \(job.attempt) of \(maxAttempts) failed, will retry: \(error.message) [\(error.code)]", output])
                guard let row = rows.first else { return FailureDisposition.dropped }
                disposition = .retrying(runAt: try row.decode("run_at", as: Date.self))
            } else {
                let message = error.isRetryable
                    ? "Gave up after \(job.attempt) attempts: \(error.message) [\(error.code)]"
                    : "\(error.message) [\(error.code)]"
                let owned = try connection.execute("""
                    UPDATE processing_jobs
                       SET status = 'failed', completed_at = now(), lease_expires_at = NULL, error_message = $3, output_data = $4
                     WHERE \(JobStore.fence)
                    """, [job.id, job.leaseID, message, output])
                guard owned == 1 else { return FailureDisposition.dropped }
                disposition = .failed
            }
            try JobStore.apply(itemUpdate, to: job.mediaItemID, on: connection)
            try ExactDuplicates.mark(ExactDuplicates.contents([(job.mediaItemID, itemUpdate)]), on: connection)
            if disposition == .failed {
                try connection.execute("SELECT settle_media_items(ARRAY[$1::uuid])", [job.mediaItemID])
            }
            return disposition
        }
    }

    /// Puts runs this worker stops on shutdown back to pending without charging the attempt.
    ///
    /// No item is touched or settled (the job stays live), so no item lock is needed.
    /// - Returns: The ids that were released (the others were no longer owned by these runs).
    /// - Throws: ``DatabaseError``.
    public func release(_ jobs: [ClaimedJob], on connection: PGConnection) throws(DatabaseError) -> [String] {
        guard !jobs.isEmpty else { return [] }
        let sorted = jobs.sorted { $0.id < $1.id }
        let rows = try connection.query("""
            WITH v AS (SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[]) AS v(id, lease_id)),
            released AS (
                UPDATE processing_jobs j
                   SET status = 'pending', attempts = j.attempts - 1, worker_id = NULL, lease_expires_at = NULL,
                       run_at = now(), progress_info = '{}'
                  FROM v
                 WHERE j.id = v.id AND j.status = 'running' AND j.lease_id = v.lease_id
                RETURNING j.id
            )
            SELECT id::text AS id, pg_notify('\(JobStore.channel)', 'released') FROM released
            """, [sorted.map(\.id), sorted.map(\.leaseID)])
        return try rows.map { row throws(DatabaseError) in try row.decode("id", as: String.self) }
    }

    // MARK: Rescue

    /// Takes back running jobs whose lease expired: their worker died, hung or lost the database.
    ///
    /// One worker at a time: the pass first takes the transaction-level advisory lock
    /// ``rescueLockKey`` with `pg_try_advisory_xact_lock`, and returns an empty report at once
    /// when another worker holds it (that worker is rescuing right now). Then it locks the media
    /// items of the expired jobs, then the jobs, like every path that finishes work.
    ///
    /// Crash attribution: a rescued job goes back to pending *marked to run alone*, and the lost
    /// run is not charged as an attempt. A worker runs such a job with nothing beside it, so if
    /// it is lost again while running alone, it is the job that kills the worker; after
    /// ``maxLostAlone`` such losses it fails with `worker_lost`. Its innocent neighbours run once
    /// more, alone, complete, and never see a charged attempt.
    /// - Parameters:
    ///   - limit: At most this many jobs per call.
    ///   - ownInFlight: Jobs this worker is running right now. Its own heartbeat keeps them, so its
    ///     own rescue pass must not take them away when a heartbeat was merely late (a starved
    ///     thread, a slow database): only another worker may judge this one dead.
    /// - Throws: ``DatabaseError``; the transaction is rolled back.
    public func rescueExpired(limit: Int = 100, excluding ownInFlight: [String] = [], on connection: PGConnection) throws -> RescueReport {
        try connection.transaction { connection in
            // The try-lock and the candidates in one round trip; the candidates are only read
            // when the lock was granted (the lateral subquery depends on it).
            let candidates = try connection.query("""
                WITH rescuer AS (SELECT pg_try_advisory_xact_lock($1::bigint) AS granted)
                SELECT rescuer.granted, c.id::text AS id, c.media_item_id::text AS media_item_id
                  FROM rescuer LEFT JOIN LATERAL (
                       SELECT j.id, j.media_item_id FROM processing_jobs j
                        WHERE rescuer.granted AND j.status = 'running' AND j.lease_expires_at < now()
                          AND NOT (j.id = ANY($3::text[]::uuid[]))
                        ORDER BY j.lease_expires_at LIMIT $2::int) c ON true
                """, [JobStore.rescueLockKey, limit, ownInFlight])
            var jobIDs: [String] = []
            var itemIDs: [String] = []
            for row in candidates {
                guard try row.decode("granted", as: Bool.self), let id = try row.decode("id", as: String?.self) else { continue }
                jobIDs.append(id)
                itemIDs.append(try row.decode("media_item_id", as: String.self))
            }
            guard !jobIDs.isEmpty else { return RescueReport() }
            try JobStore.lockItems(itemIDs, on: connection)
            // A new statement, so a new snapshot; the conditions are checked again because a late
            // heartbeat or a completion may have come in before the item locks were granted.
            let rows = try connection.query("""
                WITH expired AS (
                    SELECT id FROM processing_jobs
                     WHERE id = ANY($2::text[]::uuid[]) AND status = 'running' AND lease_expires_at < now()
                       FOR UPDATE SKIP LOCKED
                ), judged AS (
                    SELECT j.id, j.run_alone AND j.lost_alone_count + 1 >= $1::int AS poison
                      FROM processing_jobs j JOIN expired USING (id)
                )
                UPDATE processing_jobs j
                   SET lost_count = j.lost_count + 1,
                       lost_alone_count = j.lost_alone_count + CASE WHEN j.run_alone THEN 1 ELSE 0 END,
                       run_alone = true,
                       lease_expires_at = NULL,
                       status = CASE WHEN judged.poison THEN 'failed' ELSE 'pending' END::job_status,
                       attempts = CASE WHEN judged.poison THEN j.attempts ELSE j.attempts - 1 END,
                       worker_id = CASE WHEN judged.poison THEN j.worker_id END,
                       run_at = now(),
                       completed_at = CASE WHEN judged.poison THEN now() END,
                       error_message = CASE WHEN judged.poison
                           THEN 'worker lost ' || (j.lost_count + 1) || ' times: the worker process died while running this job, '
                                || (j.lost_alone_count + 1) || ' of them while it ran alone, so this job is what crashes it '
                                || '(last worker ' || coalesce(j.worker_id, '?') || ') [worker_lost]'
                           ELSE j.error_message END,
                       output_data = CASE WHEN judged.poison
                           THEN jsonb_build_object('error', jsonb_build_object(
                                'code', 'worker_lost', 'retryable', false, 'attempt', j.attempts,
                                'message', 'worker lost ' || (j.lost_count + 1) || ' times while running this job'))
                           ELSE j.output_data END
                  FROM judged
                 WHERE j.id = judged.id
                RETURNING j.id::text AS id, j.media_item_id::text AS media_item_id, judged.poison
                """, [maxLostAlone, jobIDs])
            var report = RescueReport()
            var poisonedItems: Set<String> = []
            for row in rows {
                let id = try row.decode("id", as: String.self)
                if try row.decode("poison", as: Bool.self) {
                    report.poisoned.append(id)
                    poisonedItems.insert(try row.decode("media_item_id", as: String.self))
                } else {
                    report.requeued.append(id)
                }
            }
            if !poisonedItems.isEmpty {
                try connection.execute("SELECT settle_media_items($1::text[]::uuid[])", [poisonedItems.sorted()])
            }
            if !report.requeued.isEmpty {
                try connection.execute("SELECT pg_notify($1, 'rescued')", [JobStore.channel])
            }
            return report
        }
    }
}

extension WorkerIdentity {
    /// Splits a `host:pid:instance` id; unknown parts become empty or zero.
    public static func parse(_ id: String) -> WorkerIdentity {
        var parts = id.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let instance = parts.count >= 3 ? parts.removeLast() : "0"
        let pid = parts.count >= 2 ? Int32(parts.removeLast()) ?? 0 : 0
        return WorkerIdentity(host: parts.joined(separator: ":"), pid: pid, instance: instance)
    }
}
