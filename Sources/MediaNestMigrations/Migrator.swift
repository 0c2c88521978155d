public import Foundation
public import Logging
public import MediaNestDB

/// Applies, reverts and reports the migrations of a ``MigrationCatalog`` on one database.
///
/// Bookkeeping lives in the table `schema_migrations` (created on first use):
/// `version bigint PRIMARY KEY, name text, checksum text, applied_at timestamptz, execution_ms int`.
///
/// - Each migration runs in its own transaction together with its `schema_migrations` row, so it
///   is applied entirely or not at all; except files marked ``Migration/noTransactionMarker``,
///   which run statement by statement and are recorded after the last statement succeeded (if one
///   fails, the earlier ones stay applied, nothing is recorded, and the next run repeats the whole
///   file; such files must therefore be idempotent).
/// - ``migrateUp(on:to:)`` and ``migrateDown(on:steps:)`` hold the session-level advisory lock
///   ``advisoryLockKey`` while they work, so two hosts migrating at once apply each migration
///   exactly once: the second waits, then finds nothing left to do. The wait polls
///   `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a backend blocked in that
///   call holds a snapshot, and `CREATE INDEX CONCURRENTLY` in the first migrator waits for every
///   older snapshot, so the two would deadlock.
/// - Before doing anything, every applied migration's up file is compared with its recorded
///   checksum; a changed or missing file stops the run with a ``MigrationError`` naming it.
///
/// All calls block the calling thread on libpq. Call them from a thread that may block (a
/// command's `run()`, or ``MediaNestDB/PGConnectionRunner/run(_:)``), never directly from the
/// cooperative pool.
public struct Migrator: Sendable {
    /// The key of the session-level advisory lock held while migrating: the bytes of the ASCII
    /// text "MNmigrat" as a big-endian 64-bit integer (5570510088578425204).
    public static let advisoryLockKey: Int64 = 0x4D4E_6D69_6772_6174

    /// What to apply.
    public let catalog: MigrationCatalog
    /// Progress and warnings.
    public var logger: Logger
    /// How often to retry the advisory lock while another migrator holds it.
    public var lockPollInterval: Duration = .milliseconds(200)
    /// How long to wait for the advisory lock before giving up; `nil` waits as long as it takes
    /// (a concurrent index build on a large table can take a while).
    public var lockWaitTimeout: Duration?

    /// Creates a migrator.
    /// - Parameters:
    ///   - catalog: The migrations, usually from ``MigrationCatalog/load(from:)``.
    ///   - logger: For progress ("applied 0003_media_library in 41 ms") and warnings.
    public init(catalog: MigrationCatalog, logger: Logger = Logger(label: "medianest.migrations")) {
        self.catalog = catalog
        self.logger = logger
    }

    // MARK: Up

    /// Applies every pending migration in ascending order, or those up to `target`.
    ///
    /// - Parameters:
    ///   - connection: A connection to the database; it must not be inside a transaction.
    ///   - target: Apply pending migrations with a version up to and including this one;
    ///     `nil` for all.
    /// - Returns: The migrations applied by this call, in order (empty when up to date).
    /// - Throws: ``MigrationError``: ``MigrationError/Code/checksumMismatch`` or
    ///   ``MigrationError/Code/appliedMigrationMissing`` before anything runs,
    ///   ``MigrationError/Code/unknownTarget``, ``MigrationError/Code/migrationFailed`` naming the
    ///   file (earlier migrations of this call stay applied), ``MigrationError/Code/lockTimeout``,
    ///   or ``MigrationError/Code/database``.
    @discardableResult
    public func migrateUp(on connection: PGConnection, to target: Int64? = nil) throws(MigrationError) -> [MigrationRun] {
        if let target, catalog.migration(version: target) == nil {
            throw MigrationError(.unknownTarget, "no migration with version \(target) in \(catalog.directory.path)")
        }
        return try withMigrationLock(on: connection) { () throws(MigrationError) -> [MigrationRun] in
            let applied = try appliedMigrations(on: connection, createTable: true)
            try verifyApplied(applied)
            let appliedVersions = Set(applied.map(\.version))
            let highestApplied = applied.map(\.version).max() ?? 0
            let pending = catalog.migrations.filter { migration in
                !appliedVersions.contains(migration.version) && (target.map { migration.version <= $0 } ?? true)
            }
            if pending.isEmpty {
                logger.info("database schema is up to date", metadata: ["applied": "\(applied.count)"])
                return []
            }
            var runs: [MigrationRun] = []
            for migration in pending {
                if migration.version < highestApplied {
                    logger.warning("applying \(migration.displayName) out of order: version \(highestApplied) is already applied")
                }
                runs.append(try apply(migration, on: connection))
            }
            return runs
        }
    }

    private func apply(_ migration: Migration, on connection: PGConnection) throws(MigrationError) -> MigrationRun {
        let script = migration.up
        let started = ContinuousClock.now
        let record = "INSERT INTO schema_migrations (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)"
        func elapsedMilliseconds() -> Int32 { Int32(clamping: (ContinuousClock.now - started).milliseconds) }
        logger.info("applying \(migration.displayName)", metadata: ["transaction": "\(script.runsInTransaction)"])
        if script.runsInTransaction {
            do {
                try connection.transaction { connection in
                    try connection.executeScript(script.sql)
                    try connection.execute(record, [migration.version, migration.name, migration.checksum, elapsedMilliseconds()])
                }
            } catch {
                throw MigrationError(.migrationFailed, "\(script.file.path) failed and was rolled back; nothing of it was applied",
                                     underlying: error as? DatabaseError)
            }
        } else {
            try runStatementByStatement(script, of: migration, on: connection, undoHint: "the statements before it stay applied; the migration was not recorded and runs again in full next time, so its statements must be idempotent")
            do {
                try connection.execute(record, [migration.version, migration.name, migration.checksum, elapsedMilliseconds()])
            } catch {
                throw MigrationError(.database, "\(script.file.path) ran, but recording it in schema_migrations failed", underlying: error)
            }
        }
        let run = MigrationRun(migration: migration, direction: .up, duration: ContinuousClock.now - started)
        logger.info("applied \(migration.displayName) in \(run.duration.milliseconds) ms")
        return run
    }

    private func runStatementByStatement(_ script: Migration.Script, of migration: Migration, on connection: PGConnection, undoHint: String) throws(MigrationError) {
        let statements = script.statements
        for (position, statement) in statements.enumerated() {
            do {
                try connection.executeScript(statement)
            } catch {
                let firstLine = statement.split(separator: "\n").first.map(String.init) ?? statement
                throw MigrationError(.migrationFailed, "\(script.file.path): statement \(position + 1) of \(statements.count) (\(firstLine)) failed; \(undoHint)",
                                     underlying: error)
            }
        }
    }

    // MARK: Down

    /// Reverts the most recently applied migrations (highest versions first).
    ///
    /// - Parameters:
    ///   - connection: A connection to the database; it must not be inside a transaction.
    ///   - steps: How many applied migrations to revert; more than are applied reverts all.
    /// - Returns: The migrations reverted, in the order they were reverted.
    /// - Throws: ``MigrationError`` as ``migrateUp(on:to:)`` does.
    @discardableResult
    public func migrateDown(on connection: PGConnection, steps: Int = 1) throws(MigrationError) -> [MigrationRun] {
        guard steps > 0 else { return [] }
        return try withMigrationLock(on: connection) { () throws(MigrationError) -> [MigrationRun] in
            let applied = try appliedMigrations(on: connection, createTable: true)
            try verifyApplied(applied)
            var runs: [MigrationRun] = []
            for record in applied.sorted(by: { $0.version > $1.version }).prefix(steps) {
                // verifyApplied guarantees the file exists.
                let migration = catalog.migration(version: record.version)!
                runs.append(try revert(migration, on: connection))
            }
            if runs.isEmpty { logger.info("no applied migrations to revert") }
            return runs
        }
    }

    private func revert(_ migration: Migration, on connection: PGConnection) throws(MigrationError) -> MigrationRun {
        let script = migration.down
        let started = ContinuousClock.now
        let forget = "DELETE FROM schema_migrations WHERE version = $1"
        logger.info("reverting \(migration.displayName)", metadata: ["transaction": "\(script.runsInTransaction)"])
        if script.runsInTransaction {
            do {
                try connection.transaction { connection in
                    try connection.executeScript(script.sql)
                    try connection.execute(forget, [migration.version])
                }
            } catch {
                throw MigrationError(.migrationFailed, "\(script.file.path) failed and was rolled back; \(migration.displayName) is still applied",
                                     underlying: error as? DatabaseError)
            }
        } else {
            try runStatementByStatement(script, of: migration, on: connection, undoHint: "the statements before it stay reverted; the migration is still recorded as applied and the next down runs the whole file again")
            do {
                try connection.execute(forget, [migration.version])
            } catch {
                throw MigrationError(.database, "\(script.file.path) ran, but removing \(migration.displayName) from schema_migrations failed", underlying: error)
            }
        }
        let run = MigrationRun(migration: migration, direction: .down, duration: ContinuousClock.now - started)
        logger.info("reverted \(migration.displayName) in \(run.duration.milliseconds) ms")
        return run
    }

    // MARK: Status

    /// Compares the catalog with what the database recorded. Read-only: takes no lock and does
    /// not create `schema_migrations`.
    /// - Parameter connection: A connection to the database.
    /// - Returns: One entry per version known to either side.
    /// - Throws: ``MigrationError`` with code ``MigrationError/Code/database``.
    public func status(on connection: PGConnection) throws(MigrationError) -> MigrationStatus {
        let applied = try appliedMigrations(on: connection, createTable: false)
        let appliedByVersion = Dictionary(uniqueKeysWithValues: applied.map { ($0.version, $0) })
        let versions = Set(appliedByVersion.keys).union(catalog.migrations.map(\.version)).sorted()
        let entries = versions.map { version -> MigrationStatus.Entry in
            let migration = catalog.migration(version: version)
            let record = appliedByVersion[version]
            let state: MigrationStatus.State
            switch (migration, record) {
            case (nil, _): state = .missingFile
            case (_, nil): state = .pending
            case let (migration?, record?): state = migration.checksum == record.checksum ? .applied : .changed
            }
            return MigrationStatus.Entry(version: version, name: migration?.name ?? record?.name ?? "",
                                         state: state, appliedAt: record?.appliedAt,
                                         executionMilliseconds: record?.executionMilliseconds,
                                         file: migration?.up.file)
        }
        return MigrationStatus(entries: entries)
    }

    // MARK: Bookkeeping

    struct AppliedRecord: Sendable {
        var version: Int64
        var name: String
        var checksum: String
        var appliedAt: Date
        var executionMilliseconds: Int?
    }

    private func appliedMigrations(on connection: PGConnection, createTable: Bool) throws(MigrationError) -> [AppliedRecord] {
        do {
            if createTable {
                try connection.execute("""
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version      bigint      PRIMARY KEY,
                        name         text        NOT NULL,
                        checksum     text        NOT NULL,
                        applied_at   timestamptz NOT NULL DEFAULT now(),
                        execution_ms integer
                    )
                    """)
            } else {
                let exists = try connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
                guard try exists.first?.decode("present", as: Bool.self) == true else { return [] }
            }
            let rows = try connection.query("SELECT version, name, checksum, applied_at, execution_ms FROM schema_migrations ORDER BY version")
            return try rows.map { row throws(DatabaseError) in
                AppliedRecord(version: try row.decode("version"), name: try row.decode("name"),
                              checksum: try row.decode("checksum"), appliedAt: try row.decode("applied_at"),
                              executionMilliseconds: try row.decode("execution_ms", as: Int?.self))
            }
        } catch {
            throw MigrationError(.database, "cannot read schema_migrations", underlying: error)
        }
    }

    /// Refuses to go on when an applied migration's file changed or disappeared.
    private func verifyApplied(_ applied: [AppliedRecord]) throws(MigrationError) {
        for record in applied {
            guard let migration = catalog.migration(version: record.version) else {
                throw MigrationError(.appliedMigrationMissing, "migration \(record.version) (\(record.name)) is recorded as applied in schema_migrations, but \(catalog.directory.path) has no file for it; restore its .up.sql and .down.sql files (from version control) or point --migrations-dir at the right directory")
            }
            guard migration.checksum == record.checksum else {
                throw MigrationError(.checksumMismatch, "\(migration.up.file.path) was changed after it was applied (checksum \(migration.checksum) differs from the recorded \(record.checksum)); restore the applied version of the file and put the change in a new migration")
            }
        }
    }

    /// Runs `body` holding the advisory lock, with notices silenced (`DROP ... IF EXISTS` would
    /// otherwise print them on stderr through libpq's default notice processor).
    private func withMigrationLock<T>(on connection: PGConnection, _ body: () throws(MigrationError) -> T) throws(MigrationError) -> T {
        do {
            try connection.execute("SET client_min_messages TO warning")
        } catch {
            throw MigrationError(.database, "cannot configure the migration session", underlying: error)
        }
        try acquireLock(on: connection)
        defer {
            _ = try? connection.execute("SELECT pg_advisory_unlock($1)", [Migrator.advisoryLockKey])
            _ = try? connection.execute("RESET client_min_messages")
        }
        return try body()
    }

    private func acquireLock(on connection: PGConnection) throws(MigrationError) {
        let started = ContinuousClock.now
        var lastAnnouncement: ContinuousClock.Instant?
        while true {
            do {
                let result = try connection.query("SELECT pg_try_advisory_lock($1) AS locked", [Migrator.advisoryLockKey])
                if try result.first?.decode("locked", as: Bool.self) == true { return }
                if lastAnnouncement.map({ ContinuousClock.now - $0 >= .seconds(30) }) ?? true {
                    let holders = try connection.query("""
                        SELECT coalesce(string_agg(pid::text, ', '), 'unknown') AS pids FROM pg_locks
                         WHERE locktype = 'advisory' AND granted AND objsubid = 1
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           AND classid::bigint = ($1::bigint >> 32) AND objid::bigint = ($1::bigint & 4294967295)
                        """, [Migrator.advisoryLockKey])
                    let pids = try holders.first?.decode("pids", as: String.self) ?? "unknown"
                    logger.notice("waiting for another migrator to finish", metadata: ["lock.key": "\(Migrator.advisoryLockKey)", "lock.holder_pid": "\(pids)"])
                    lastAnnouncement = ContinuousClock.now
                }
            } catch {
                throw MigrationError(.database, "cannot take the migration lock", underlying: error)
            }
            if let lockWaitTimeout, ContinuousClock.now - started >= lockWaitTimeout {
                throw MigrationError(.lockTimeout, "another migrator held the migration lock (advisory lock \(Migrator.advisoryLockKey)) for more than \(lockWaitTimeout); see pg_locks for its pid")
            }
            Thread.sleep(forTimeInterval: lockPollInterval.seconds)
        }
    }
}

/// One migration applied or reverted by a ``Migrator``.
public struct MigrationRun: Sendable {
    /// Which way a migration ran.
    public enum Direction: String, Sendable { case up, down }
    /// The migration.
    public let migration: Migration
    /// Applied (`up`) or reverted (`down`).
    public let direction: Direction
    /// How long its SQL took, bookkeeping included.
    public let duration: Duration
}

/// What ``Migrator/status(on:)`` found.
public struct MigrationStatus: Sendable {
    /// The state of one version.
    public enum State: String, Sendable {
        /// Applied, and the file still has the applied checksum.
        case applied
        /// Not applied yet.
        case pending
        /// Applied, but the up file changed since: `migrate up` refuses to run.
        case changed
        /// Recorded as applied, but there is no file for it: `migrate up` refuses to run.
        case missingFile = "missing-file"
    }

    /// One version known to the catalog, the database, or both.
    public struct Entry: Sendable {
        /// The version number.
        public let version: Int64
        /// The migration's name.
        public let name: String
        /// Applied, pending, changed or missing its file.
        public let state: State
        /// When it was applied, if it was.
        public let appliedAt: Date?
        /// How long applying it took, if recorded.
        public let executionMilliseconds: Int?
        /// Its up file, if there is one.
        public let file: URL?

        /// Whether `schema_migrations` records it.
        public var isApplied: Bool { state != .pending }
    }

    /// Every version, ascending.
    public let entries: [Entry]

    /// How many migrations `migrate up` would apply.
    public var pendingCount: Int { entries.count { $0.state == .pending } }
    /// Versions that make `migrate up` refuse to run (changed or missing files).
    public var problems: [Entry] { entries.filter { $0.state == .changed || $0.state == .missingFile } }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
