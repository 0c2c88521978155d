import Foundation
public import MediaNestCore
public import MediaNestDB

/// The queue as an operator or a metrics scrape sees it: counts per type, the oldest job that
/// could run now, running jobs, recent failures and live workers, all as of one `now()`.
///
/// Read by ``QueueStateReader/snapshot(on:runningLimit:failureLimit:)``; `status`,
/// `status --watch` and the worker's queue gauges all show figures from here.
public struct QueueSnapshot: Sendable, Hashable {
    /// Pending jobs of one type that could run now (`run_at <= now()`): what a worker serving
    /// the type would claim next. The queue gauges are these figures.
    public struct Runnable: Sendable, Hashable {
        /// The job type.
        public var type: JobType
        /// How many.
        public var count: Int
        /// The earliest `run_at` among them: the one that has waited longest.
        public var oldestRunAt: Date
        public init(type: JobType, count: Int, oldestRunAt: Date) {
            self.type = type
            self.count = count
            self.oldestRunAt = oldestRunAt
        }
        /// Seconds the oldest of them has waited at `now` (never negative).
        public func age(at now: Date) -> Double { max(0, now.timeIntervalSince(oldestRunAt)) }
    }

    /// The jobs of one type, by state.
    public struct TypeState: Sendable, Hashable {
        /// The job type.
        public var type: JobType
        /// Jobs per `job_status` (`pending`, `running`, `completed`, `failed`, `cancelled`);
        /// a state with no job is absent.
        public var counts: [String: Int]
        /// Pending jobs waiting for a retry's backoff (`run_at` in the future).
        public var delayed: Int
        /// Jobs that failed for good in the hour before the snapshot.
        public var failedLastHour: Int
        /// The pending jobs that could run now, or `nil` when none could.
        public var runnable: Runnable?

        public init(type: JobType, counts: [String: Int], delayed: Int = 0, failedLastHour: Int = 0, runnable: Runnable? = nil) {
            self.type = type
            self.counts = counts
            self.delayed = delayed
            self.failedLastHour = failedLastHour
            self.runnable = runnable
        }

        /// The values of `job_status`, in the schema's order (the order `status` prints).
        public static let states = ["pending", "running", "completed", "failed", "cancelled"]

        /// Pending jobs, delayed ones included.
        public var pending: Int { counts["pending", default: 0] }
        /// Running jobs.
        public var running: Int { counts["running", default: 0] }
        /// Completed jobs, ever.
        public var completed: Int { counts["completed", default: 0] }
    }

    /// A running job.
    public struct RunningJob: Sendable, Hashable {
        public var id: String
        public var type: JobType
        public var mediaItemID: String
        /// The item's original file name (`?` when the item row is gone).
        public var item: String
        /// The worker running it (`?` when the row names none).
        public var workerID: String
        /// The attempt this run is.
        public var attempt: Int
        public var startedAt: Date?
        public var leaseExpiresAt: Date?
        /// `progress_info`.
        public var progress: JSONValue
        public init(id: String, type: JobType, mediaItemID: String, item: String, workerID: String, attempt: Int,
                    startedAt: Date?, leaseExpiresAt: Date?, progress: JSONValue) {
            self.id = id
            self.type = type
            self.mediaItemID = mediaItemID
            self.item = item
            self.workerID = workerID
            self.attempt = attempt
            self.startedAt = startedAt
            self.leaseExpiresAt = leaseExpiresAt
            self.progress = progress
        }
    }

    /// A job that failed for good in the hour before the snapshot.
    public struct Failure: Sendable, Hashable {
        public var id: String
        public var type: JobType
        public var mediaItemID: String
        /// The item's original file name (`?` when the item row is gone).
        public var item: String
        /// The stable error code (``JobError/Code``), `internal_error` when the row has none.
        public var code: String
        /// The message a person reads.
        public var message: String
        public var failedAt: Date
        public init(id: String, type: JobType, mediaItemID: String, item: String, code: String, message: String, failedAt: Date) {
            self.id = id
            self.type = type
            self.mediaItemID = mediaItemID
            self.item = item
            self.code = code
            self.message = message
            self.failedAt = failedAt
        }
    }

    /// A registered worker whose heartbeat is current.
    public struct Worker: Sendable, Hashable {
        public var id: String
        /// The job types it serves.
        public var types: [String]
        /// Its job slots.
        public var concurrency: Int
        public var startedAt: Date
        public var lastSeenAt: Date
        public init(id: String, types: [String], concurrency: Int, startedAt: Date, lastSeenAt: Date) {
            self.id = id
            self.types = types
            self.concurrency = concurrency
            self.startedAt = startedAt
            self.lastSeenAt = lastSeenAt
        }
    }

    /// The database's `now()` for every figure.
    public var takenAt: Date
    /// Every type that has jobs, by name.
    public var types: [TypeState]
    /// The oldest running jobs (at most the reader's `runningLimit`).
    public var running: [RunningJob]
    /// The latest failures of the last hour (at most the reader's `failureLimit`), newest first.
    public var failures: [Failure]
    /// Live workers, by id.
    public var workers: [Worker]

    public init(takenAt: Date, types: [TypeState], running: [RunningJob], failures: [Failure], workers: [Worker]) {
        self.takenAt = takenAt
        self.types = types
        self.running = running
        self.failures = failures
        self.workers = workers
    }

    /// Seconds the oldest runnable pending job has waited, or `nil` when none could run.
    public var oldestRunnableAge: Double? {
        types.compactMap(\.runnable).map { $0.age(at: takenAt) }.max()
    }

    /// All failures of the last hour (``failures`` may hold fewer).
    public var failuresLastHour: Int { types.reduce(0) { $0 + $1.failedLastHour } }

    /// Types with pending jobs that no live worker serves.
    public var typesWaitingForWorker: [JobType] {
        let served = Set(workers.flatMap(\.types))
        return types.filter { $0.pending > 0 && !served.contains($0.type.rawValue) }.map(\.type)
    }

    /// Nothing pending or running.
    public var isIdle: Bool { types.allSatisfy { $0.pending == 0 && $0.running == 0 } }
}

/// The one reader of queue state: every figure `status`, `status --watch` and the queue
/// gauges show comes from the queries here, so they cannot disagree.
///
/// Each method blocks on the connection (see ``JobStore``).
public enum QueueStateReader {
    /// The pending jobs that could run now, per type: one query over pending rows only, cheap
    /// enough for the metrics sampler to run every few seconds. A type with none is absent.
    /// - Parameters:
    ///   - types: Only these types; `nil` for every type.
    ///   - connection: The connection.
    /// - Returns: The figures, by type name, and the `now()` they were read at.
    /// - Throws: ``DatabaseError``.
    public static func runnable(types: [JobType]? = nil, on connection: PGConnection) throws(DatabaseError) -> (takenAt: Date, runnable: [QueueSnapshot.Runnable]) {
        // One statement whatever the queue holds (the sampler's cadence is one transaction a
        // sample): the clock row is there even when no job is runnable.
        let rows = try connection.query("""
            SELECT clock.taken_at, r.job_type, r.n, r.oldest
              FROM (SELECT now() AS taken_at) clock
              LEFT JOIN (SELECT job_type, count(*)::int8 AS n, min(run_at) AS oldest
                           FROM processing_jobs
                          WHERE status = 'pending' AND run_at <= now() AND ($1::text[] IS NULL OR job_type = ANY ($1::text[]))
                          GROUP BY job_type) r ON true
             ORDER BY r.job_type
            """, [types?.map(\.rawValue)])
        let takenAt = try rows[0].decode("taken_at", as: Date.self)
        var runnable: [QueueSnapshot.Runnable] = []
        for row in rows {
            guard let type = try row.decode("job_type", as: String?.self) else { continue }
            runnable.append(QueueSnapshot.Runnable(type: JobType(type), count: Int(try row.decode("n", as: Int64.self)),
                                                   oldestRunAt: try row.decode("oldest")))
        }
        return (takenAt, runnable)
    }

    /// Reads the whole snapshot in one read-only REPEATABLE READ transaction, so that every
    /// figure is as of the same moment.
    /// - Parameters:
    ///   - connection: The connection (not inside a transaction).
    ///   - runningLimit: At most this many running jobs, oldest first.
    ///   - failureLimit: At most this many failures, newest first.
    /// - Throws: ``DatabaseError``.
    public static func snapshot(on connection: PGConnection, runningLimit: Int = 100, failureLimit: Int = 8) throws -> QueueSnapshot {
        try connection.transaction { connection in
            try connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            let (takenAt, runnable) = try Self.runnable(on: connection)
            let runnableByType = Dictionary(runnable.map { ($0.type, $0) }, uniquingKeysWith: { first, _ in first })
            var types: [JobType: QueueSnapshot.TypeState] = [:]
            for row in try connection.query("""
                SELECT job_type, status::text AS status, count(*)::int8 AS n,
                       count(*) FILTER (WHERE status = 'pending' AND run_at > now())::int8 AS delayed,
                       count(*) FILTER (WHERE status = 'failed' AND completed_at > now() - interval '1 hour')::int8 AS failed_last_hour
                  FROM processing_jobs GROUP BY 1, 2
                """) {
                let type = JobType(try row.decode("job_type", as: String.self))
                var state = types[type] ?? QueueSnapshot.TypeState(type: type, counts: [:], runnable: runnableByType[type])
                state.counts[try row.decode("status", as: String.self)] = Int(try row.decode("n", as: Int64.self))
                state.delayed += Int(try row.decode("delayed", as: Int64.self))
                state.failedLastHour += Int(try row.decode("failed_last_hour", as: Int64.self))
                types[type] = state
            }
            let running = try connection.query("""
                SELECT j.id::text AS id, j.job_type, j.media_item_id::text AS media_item_id, coalesce(m.original_filename, '?') AS item,
                       coalesce(j.worker_id, '?') AS worker_id, j.attempts, j.started_at, j.lease_expires_at, j.progress_info
                  FROM processing_jobs j LEFT JOIN media_items m ON m.id = j.media_item_id
                 WHERE j.status = 'running' ORDER BY j.started_at, j.id LIMIT $1
                """, [runningLimit]).map { row throws(DatabaseError) in
                QueueSnapshot.RunningJob(id: try row.decode("id"), type: JobType(try row.decode("job_type", as: String.self)),
                                         mediaItemID: try row.decode("media_item_id"), item: try row.decode("item"), workerID: try row.decode("worker_id"),
                                         attempt: try row.decode("attempts"), startedAt: try row.decode("started_at"),
                                         leaseExpiresAt: try row.decode("lease_expires_at"), progress: try row.decode("progress_info", as: JSONValue?.self) ?? [:])
            }
            let failures = try connection.query("""
                SELECT j.id::text AS id, j.job_type, j.media_item_id::text AS media_item_id, coalesce(m.original_filename, '?') AS item,
                       coalesce(j.output_data #>> '{error,code}', 'internal_error') AS code,
                       coalesce(j.output_data #>> '{error,message}', j.error_message, 'failed') AS message, j.completed_at
                  FROM processing_jobs j LEFT JOIN media_items m ON m.id = j.media_item_id
                 WHERE j.status = 'failed' AND j.completed_at > now() - interval '1 hour'
                 ORDER BY j.completed_at DESC, j.id LIMIT $1
                """, [failureLimit]).map { row throws(DatabaseError) in
                QueueSnapshot.Failure(id: try row.decode("id"), type: JobType(try row.decode("job_type", as: String.self)),
                                      mediaItemID: try row.decode("media_item_id"), item: try row.decode("item"), code: try row.decode("code"),
                                      message: try row.decode("message"), failedAt: try row.decode("completed_at"))
            }
            let workers = try connection.query("""
                SELECT id, types, concurrency, started_at, last_seen_at FROM processing_workers WHERE expires_at > now() ORDER BY id
                """).map { row throws(DatabaseError) in
                QueueSnapshot.Worker(id: try row.decode("id"), types: try row.decode("types"), concurrency: try row.decode("concurrency"),
                                     startedAt: try row.decode("started_at"), lastSeenAt: try row.decode("last_seen_at"))
            }
            return QueueSnapshot(takenAt: takenAt, types: types.values.sorted { $0.type < $1.type }, running: running,
                                 failures: failures, workers: workers)
        }
    }
}
