import Foundation
public import Logging
public import MediaNestDB

/// How much history the database keeps; what `medianest-worker maintenance` enforces.
///
/// The seed document (docs/seed/medianest-database-schema.md) names retention only for backups:
/// 7 days local, 30 days off-site, 7 years archive. The defaults follow it: audit partitions
/// are kept for the 7-year archive horizon (an audit trail must not vanish before the backups
/// that could restore it), and operational rows for 30 days, the off-site window.
public struct MaintenancePolicy: Sendable, Hashable {
    /// What happens to an `audit_logs` partition past retention.
    public enum PartitionAction: String, Sendable, Hashable, CaseIterable, Codable {
        /// Detach and drop it.
        case drop
        /// Detach it and keep it as a standalone table (to archive with `pg_dump -t`, then drop).
        case detach
    }

    /// Months ahead (after the current one) that must have an `audit_logs` partition.
    public var partitionMonthsAhead = 3
    /// Whole months of `audit_logs` kept before the current one (default 84: seven years).
    public var auditLogRetentionMonths = 84
    /// ``PartitionAction/drop`` (default) or ``PartitionAction/detach``.
    public var auditPartitionAction = PartitionAction.drop
    /// Days a read notification is kept after it was read (expired ones go at once).
    public var readNotificationRetentionDays = 30
    /// Days an expired session is kept after `expires_at` (for "why was I logged out?").
    public var expiredSessionRetentionDays = 7
    /// Days a completed, failed or cancelled job is kept after it finished.
    public var finishedJobRetentionDays = 30
    /// Rows per `DELETE` transaction, so that no statement holds many row locks for long.
    public var batchSize = 1000
    /// How long DDL on `audit_logs` may wait for its lock before it is left for the next run.
    /// DDL waiting in the lock queue would block every insert behind it (every job's final
    /// transaction writes an audit row), so it must give up quickly instead.
    public var ddlLockTimeout: Duration = .seconds(5)

    public init() {}

    /// Checks the values are usable.
    /// - Throws: ``QueueAdminError`` naming the bad setting.
    public func validate() throws(QueueAdminError) {
        if partitionMonthsAhead < 0 || partitionMonthsAhead > 24 { throw QueueAdminError("partition months ahead must be between 0 and 24, not \(partitionMonthsAhead)") }
        if auditLogRetentionMonths < 1 { throw QueueAdminError("audit log retention must be at least 1 month, not \(auditLogRetentionMonths)") }
        if readNotificationRetentionDays < 0 { throw QueueAdminError("notification retention must not be negative") }
        if expiredSessionRetentionDays < 0 { throw QueueAdminError("session retention must not be negative") }
        if finishedJobRetentionDays < 1 { throw QueueAdminError("job retention must be at least 1 day, not \(finishedJobRetentionDays)") }
        if batchSize < 1 || batchSize > 100_000 { throw QueueAdminError("batch size must be between 1 and 100000, not \(batchSize)") }
    }
}

/// What one maintenance run did (or, with `dryRun`, would do).
public struct MaintenanceReport: Sendable, Hashable, Codable {
    /// Nothing was changed; the counts are what a real run would delete now.
    public var dryRun: Bool
    /// Another session holds the maintenance lock; this run did nothing.
    public var skipped = false
    /// The backend pid holding the lock when ``skipped``.
    public var lockHolderPID: Int32?
    /// Partitions made ahead of time (or missing, in a dry run).
    public var partitionsCreated: [String] = []
    /// Partitions past retention that were dropped.
    public var partitionsDropped: [String] = []
    /// Partitions past retention that were detached and kept.
    public var partitionsDetached: [String] = []
    /// DDL that gave up waiting for its lock; the next run tries again.
    public var partitionsDeferred: [String] = []
    /// Rows past retention deleted from `audit_logs_default` (the safety net partition).
    public var auditDefaultRowsDeleted = 0
    public var cacheEntriesDeleted = 0
    public var notificationsDeleted = 0
    public var userSessionsDeleted = 0
    public var processingJobsDeleted = 0
    /// `DELETE` statements issued (each its own transaction).
    public var batches = 0
    public var durationSeconds = 0.0

    public init(dryRun: Bool) { self.dryRun = dryRun }

    enum CodingKeys: String, CodingKey {
        case dryRun = "dry_run", skipped, lockHolderPID = "lock_holder_pid", partitionsCreated = "partitions_created"
        case partitionsDropped = "partitions_dropped", partitionsDetached = "partitions_detached", partitionsDeferred = "partitions_deferred"
        case auditDefaultRowsDeleted = "audit_default_rows_deleted", cacheEntriesDeleted = "cache_entries_deleted"
        case notificationsDeleted = "notifications_deleted", userSessionsDeleted = "user_sessions_deleted"
        case processingJobsDeleted = "processing_jobs_deleted", batches, durationSeconds = "duration_seconds"
    }
}

/// The seed's retention and partitioning, automated: run daily from every host; an advisory
/// lock lets one of them work and the others skip.
///
/// A run, in order: make the current and the next ``MaintenancePolicy/partitionMonthsAhead``
/// months' `audit_logs` partitions (so that `audit_logs_default` stays the rarely used safety
/// net it is meant to be); detach and drop partitions past retention; then delete, in batches of
/// ``MaintenancePolicy/batchSize`` rows, each batch its own transaction with `SKIP LOCKED`:
/// old rows in `audit_logs_default`, expired `cache_entries`, expired or long-read
/// `notifications`, long-expired `user_sessions`, and finished `processing_jobs` past retention
/// whose item has no pending or running job (the item's settlement reads its latest job of each
/// type, so they must stay while it is in progress).
///
/// Blocking: call it from a thread that may block (the CLI command, or the daemon's
/// `MaintenanceService` thread, which runs it step by step over its shared connection), never
/// from the cooperative pool.
public struct Maintenance: Sendable {
    /// The session advisory lock key: the ASCII bytes of "MNmainte".
    public static let advisoryLockKey: Int64 = 0x4D4E_6D61_696E_7465

    public let policy: MaintenancePolicy
    public let logger: Logger

    public init(policy: MaintenancePolicy = MaintenancePolicy(), logger: Logger = Logger(label: "medianest.maintenance")) {
        self.policy = policy
        self.logger = logger
    }

    /// Gives one step of a run a connection: calls the step with it, once, and returns what it
    /// threw. See ``run(dryRun:stopRequested:steps:)``.
    public typealias StepRunner = ((PGConnection) throws -> Void) throws -> Void

    /// Runs maintenance once on `connection` (which must not be inside a transaction).
    /// - Parameters:
    ///   - connection: A connection as the schema's owner.
    ///   - dryRun: Count and list, change nothing (partitions to create are still listed).
    /// - Returns: What was done; ``MaintenanceReport/skipped`` when another session holds the lock.
    /// - Throws: ``QueueAdminError`` for a bad policy, ``DatabaseError`` when the database fails.
    public func run(on connection: PGConnection, dryRun: Bool = false) throws -> MaintenanceReport {
        try run(dryRun: dryRun) { step in try step(connection) }
    }

    /// Runs maintenance once as a series of short steps, each given its connection by `steps`:
    /// taking the lock, listing the partitions to make or retire, each partition's DDL, each
    /// `DELETE` batch, and releasing the lock. A caller that shares its connection (the worker
    /// daemon, whose result writes and heartbeats use the same one) runs each step as its own
    /// call, so the calls queued behind maintenance wait for one step, never for the whole run.
    ///
    /// The lock is a session lock: every step after the first must run on the session that took
    /// it. A step that finds another backend (the connection was re-opened in between, and the
    /// lock went with the old one) fails the run rather than work unlocked.
    /// - Parameters:
    ///   - dryRun: Count and list, change nothing (partitions to create are still listed).
    ///   - stopRequested: Asked before each step; when it says so, the lock is released and the
    ///     run ends with `CancellationError` (what was done so far stays done).
    ///   - steps: Runs one step on a connection as the schema's owner, not inside a transaction;
    ///     always the same connection while it stays open.
    /// - Returns: What was done; ``MaintenanceReport/skipped`` when another session holds the lock.
    /// - Throws: ``QueueAdminError`` for a bad policy or a lost session, ``DatabaseError`` when
    ///   the database fails, `CancellationError` when stopped.
    public func run(dryRun: Bool = false, stopRequested: () -> Bool = { false }, steps: StepRunner) throws -> MaintenanceReport {
        try policy.validate()
        let started = ContinuousClock.now
        var report = MaintenanceReport(dryRun: dryRun)
        var lockedBackend: Int32?
        try steps { connection in
            if try connection.query("SELECT pg_try_advisory_lock($1::bigint) AS got", [Maintenance.advisoryLockKey])[0].decode("got", as: Bool.self) {
                lockedBackend = connection.backendPID
            } else {
                report.lockHolderPID = try lockHolder(on: connection)
            }
        }
        guard let lockedBackend else {
            report.skipped = true
            logger.notice("maintenance skipped: another session is running it", metadata: ["holder_pid": "\(report.lockHolderPID.map(String.init) ?? "unknown")"])
            return report
        }
        func step(_ body: (PGConnection) throws -> Void) throws {
            if stopRequested() { throw CancellationError() }
            // `steps` calls the closure once and returns: `body` does not really escape.
            try withoutActuallyEscaping(body) { body in
                try steps { connection in
                    guard connection.backendPID == lockedBackend else {
                        throw QueueAdminError("maintenance stopped: its database session was lost between two steps, and the maintenance lock with it; the next run starts over")
                    }
                    try body(connection)
                }
            }
        }
        do {
            try createPartitions(step, into: &report)
            try retirePartitions(step, into: &report)
            try deleteExpiredRows(step, into: &report)
        } catch {
            try? steps { connection in
                if connection.backendPID == lockedBackend { _ = try? connection.query("SELECT pg_advisory_unlock($1::bigint)", [Maintenance.advisoryLockKey]) }
            }
            throw error
        }
        try? steps { connection in
            if connection.backendPID == lockedBackend { _ = try? connection.query("SELECT pg_advisory_unlock($1::bigint)", [Maintenance.advisoryLockKey]) }
        }
        let elapsed = ContinuousClock.now - started
        report.durationSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        logger.notice(dryRun ? "maintenance dry run finished" : "maintenance finished", metadata: [
            "partitions_created": "\(report.partitionsCreated.count)", "partitions_dropped": "\(report.partitionsDropped.count)",
            "partitions_detached": "\(report.partitionsDetached.count)", "partitions_deferred": "\(report.partitionsDeferred.count)",
            "audit_default_rows": "\(report.auditDefaultRowsDeleted)", "cache_entries": "\(report.cacheEntriesDeleted)",
            "notifications": "\(report.notificationsDeleted)", "user_sessions": "\(report.userSessionsDeleted)",
            "processing_jobs": "\(report.processingJobsDeleted)", "batches": "\(report.batches)",
        ])
        return report
    }

    /// The backend holding the maintenance lock in this connection's database, from `pg_locks`
    /// (a bigint key is stored as classid = high 32 bits, objid = low 32 bits, objsubid = 1).
    /// Advisory locks are per database, but `pg_locks` covers the whole cluster: a session
    /// holding the same key in another database is not the one to name.
    public func lockHolder(on connection: PGConnection) throws -> Int32? {
        let key = UInt64(bitPattern: Maintenance.advisoryLockKey)
        return try connection.query("""
            SELECT pid FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 1
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = $1::bigint::oid AND objid = $2::bigint::oid
             LIMIT 1
            """, [Int64(key >> 32), Int64(key & 0xFFFF_FFFF)]).first?.decode("pid", as: Int32?.self) ?? nil
    }

    private var lockTimeoutSetting: String {
        "\(max(1, Int64(policy.ddlLockTimeout.components.seconds) * 1000 + policy.ddlLockTimeout.components.attoseconds / 1_000_000_000_000_000))ms"
    }

    /// Runs DDL in a transaction that gives up waiting for locks after the policy's timeout.
    /// - Returns: `false` when it gave up (SQLSTATE 55P03, lock_not_available).
    private func withDDLLock(on connection: PGConnection, _ body: (PGConnection) throws -> Void) throws -> Bool {
        do {
            try connection.transaction { connection in
                try connection.query("SELECT set_config('lock_timeout', $1, true)", [lockTimeoutSetting])
                try body(connection)
            }
            return true
        } catch let error as DatabaseError where error.sqlState == "55P03" {
            return false
        }
    }

    func createPartitions(_ step: StepRunner, into report: inout MaintenanceReport) throws {
        var missing: [(name: String, month: String)] = []
        try step { connection in
            let months = try connection.query("""
                SELECT to_char(m, 'YYYY-MM-DD') AS month, 'audit_logs_' || to_char(m, 'YYYYMM') AS name,
                       to_regclass('audit_logs_' || to_char(m, 'YYYYMM')) IS NULL AS missing
                  FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                       date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int),
                                       interval '1 month') AS m
                """, [policy.partitionMonthsAhead])
            for row in months where try row.decode("missing", as: Bool.self) {
                missing.append((try row.decode("name", as: String.self), try row.decode("month", as: String.self)))
            }
        }
        for (name, month) in missing {
            if report.dryRun {
                report.partitionsCreated.append(name)
                continue
            }
            // create_audit_log_partition moves rows of that month out of the default partition.
            var created = false
            try step { connection in
                created = try withDDLLock(on: connection) { try $0.query("SELECT create_audit_log_partition($1::date)", [month]) }
            }
            if created {
                report.partitionsCreated.append(name)
                logger.notice("audit_logs partition created", metadata: ["partition": "\(name)"])
            } else {
                report.partitionsDeferred.append(name)
                logger.warning("audit_logs partition not created: its lock was busy; the next run tries again", metadata: ["partition": "\(name)"])
            }
        }
    }

    /// The first instant (UTC) that is still within retention, as SQL.
    private let retentionStartSQL = "(date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $1::int)) AT TIME ZONE 'UTC'"

    func retirePartitions(_ step: StepRunner, into report: inout MaintenanceReport) throws {
        // Named audit_logs_YYYYMM by create_audit_log_partition; a partition is retired when its
        // whole month lies before the retention start.
        var old: [(name: String, qualified: String)] = []
        try step { connection in
            let rows = try connection.query("""
                SELECT c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
                  FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE i.inhparent = 'audit_logs'::regclass
                   AND c.relname ~ '^audit_logs_[0-9]{6}$'
                   AND (to_date(substring(c.relname FROM 12), 'YYYYMM') + interval '1 month') AT TIME ZONE 'UTC' <= \(retentionStartSQL)
                 ORDER BY c.relname
                """, [policy.auditLogRetentionMonths])
            old = try rows.map { (try $0.decode("name", as: String.self), try $0.decode("qualified", as: String.self)) }
        }
        for (name, qualified) in old {
            let drop = policy.auditPartitionAction == .drop
            if report.dryRun {
                if drop { report.partitionsDropped.append(name) } else { report.partitionsDetached.append(name) }
                continue
            }
            var done = false
            try step { connection in
                done = try withDDLLock(on: connection) { connection in
                    // Plain DETACH (not CONCURRENTLY): PostgreSQL refuses CONCURRENTLY while a
                    // default partition exists, and it cannot run in a transaction.
                    try connection.execute("ALTER TABLE audit_logs DETACH PARTITION \(qualified)")
                    if drop { try connection.execute("DROP TABLE \(qualified)") }
                }
            }
            if !done {
                report.partitionsDeferred.append(name)
                logger.warning("audit_logs partition past retention left for the next run: its lock was busy", metadata: ["partition": "\(name)"])
            } else if drop {
                report.partitionsDropped.append(name)
                logger.notice("audit_logs partition past retention dropped", metadata: ["partition": "\(name)", "retention_months": "\(policy.auditLogRetentionMonths)"])
            } else {
                report.partitionsDetached.append(name)
                logger.notice("audit_logs partition past retention detached (kept as a table)", metadata: ["partition": "\(name)"])
            }
        }
    }

    func deleteExpiredRows(_ step: StepRunner, into report: inout MaintenanceReport) throws {
        report.auditDefaultRowsDeleted = try purge(step, "audit_logs_default", report: &report, key: "(id, created_at)", where: """
            created_at < \(retentionStartSQL.replacingOccurrences(of: "$1", with: "$2"))
            """, [policy.auditLogRetentionMonths])
        report.cacheEntriesDeleted = try purge(step, "cache_entries", report: &report, key: "key", where: "expires_at < now()", [])
        report.notificationsDeleted = try purge(step, "notifications", report: &report, key: "id", where: """
            expires_at < now() OR (read AND coalesce(read_at, created_at) < now() - make_interval(days => $2::int))
            """, [policy.readNotificationRetentionDays])
        report.userSessionsDeleted = try purge(step, "user_sessions", report: &report, key: "id", where: """
            expires_at < now() - make_interval(days => $2::int)
            """, [policy.expiredSessionRetentionDays])
        report.processingJobsDeleted = try purge(step, "processing_jobs", report: &report, key: "id", where: """
            status IN ('completed', 'failed', 'cancelled')
            AND coalesce(completed_at, updated_at) < now() - make_interval(days => $2::int)
            AND NOT EXISTS (SELECT 1 FROM processing_jobs active
                             WHERE active.media_item_id = t.media_item_id AND active.status IN ('pending', 'running'))
            """, [policy.finishedJobRetentionDays])
    }

    /// Deletes matching rows of `table` (aliased `t` in the predicate) in batches, one step
    /// each; `$1` is the batch size, `$2` the first of `parameters`. In a dry run, counts them
    /// instead.
    private func purge(_ step: StepRunner, _ table: String, report: inout MaintenanceReport, key: String, where predicate: String,
                       _ parameters: [any PGEncodable]) throws -> Int {
        if report.dryRun {
            let shifted = predicate.replacingOccurrences(of: "$2", with: "$1")
            var count = 0
            try step { connection in
                count = try connection.query("SELECT count(*) AS n FROM \(table) t WHERE \(shifted)", parameters)[0].decode("n", as: Int.self)
            }
            return count
        }
        // SKIP LOCKED: rows a job or a request is using are left for the next run, never waited on.
        let sql = """
            DELETE FROM \(table) WHERE \(key) IN (
                SELECT \(key.split(separator: ",").map { "t." + $0.trimmingCharacters(in: .init(charactersIn: "() ")) }.joined(separator: ", "))
                  FROM \(table) t WHERE \(predicate) LIMIT $1::int FOR UPDATE OF t SKIP LOCKED)
            """
        var total = 0
        while true {
            var deleted = 0
            try step { connection in deleted = try connection.execute(sql, [policy.batchSize] + parameters) }
            report.batches += 1
            total += deleted
            if deleted < policy.batchSize { break }
        }
        if total > 0 { logger.info("expired rows deleted", metadata: ["table": "\(table)", "rows": "\(total)"]) }
        return total
    }
}
