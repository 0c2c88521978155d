import Foundation
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Testing

@Suite("Migrator against PostgreSQL", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(3)))
struct MigratorTests {
    @Test func upOnEmptyDatabaseAppliesAllAndRecordsChecksums() throws {
        let database = try TestDatabase.create("up")
        defer { database.drop() }
        let connection = try database.connect()
        let migrator = try projectMigrator()
        let runs = try migrator.migrateUp(on: connection)
        #expect(runs.map(\.migration.version) == migrator.catalog.migrations.map(\.version))
        #expect(try migrator.migrateUp(on: connection).isEmpty)
        let recorded = try connection.column("SELECT version::text || ':' || checksum FROM schema_migrations ORDER BY version")
        #expect(recorded == migrator.catalog.migrations.map { "\($0.version):\($0.checksum)" })
        let status = try migrator.status(on: connection)
        #expect(status.pendingCount == 0)
        #expect(status.entries.allSatisfy { $0.state == .applied })
    }

    @Test func downToZeroLeavesNothingBehindAndUpWorksAgain() throws {
        let database = try TestDatabase.create("down")
        defer { database.drop() }
        let connection = try database.connect()
        let migrator = try projectMigrator()
        try migrator.migrateUp(on: connection)
        // Rows in every corner, so the down migrations meet real data.
        try connection.executeScript("""
            INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-000000000001', 'down@example.org');
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                 VALUES ('00000000-0000-0000-0000-000000000001', 'a', 'a', 'image/png', '/a');
            INSERT INTO audit_logs (action, created_at) VALUES ('x', now()), ('y', '2199-01-01');
            """)
        let reverted = try migrator.migrateDown(on: connection, steps: Int.max)
        #expect(reverted.map(\.migration.version) == migrator.catalog.migrations.map(\.version).reversed())

        let leftovers = try connection.column("""
            SELECT 'relation ' || relname FROM pg_class
             WHERE relnamespace = current_schema()::regnamespace AND relname NOT LIKE 'schema_migrations%'
            UNION ALL
            SELECT 'type ' || typname FROM pg_type t
             WHERE typnamespace = current_schema()::regnamespace AND typcategory <> 'A'
               AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relname = 'schema_migrations')
            UNION ALL
            SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
            UNION ALL
            SELECT 'policy ' || polname FROM pg_policy
            UNION ALL
            SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL
            SELECT 'schema grant to ' || r.rolname FROM pg_namespace n, aclexplode(n.nspacl) acl JOIN pg_roles r ON r.oid = acl.grantee
             WHERE n.nspname = current_schema() AND r.rolname IN ('authenticated_users', 'admin_users')
            """)
        #expect(leftovers == [])
        #expect(try connection.scalar("SELECT count(*) FROM schema_migrations") == "0")

        #expect(try migrator.migrateUp(on: connection).count == migrator.catalog.migrations.count)
    }

    @Test func downRevertsOnlyTheLastN() throws {
        let (database, connection) = try migratedDatabase("downn")
        defer { database.drop() }
        let migrator = try projectMigrator()
        // Revert everything after 0007, however many later migrations the project has.
        let laterVersions = try MigrationCatalog.load(from: migrationsDirectory).migrations.map(\.version).filter { $0 > 7 }
        let reverted = try migrator.migrateDown(on: connection, steps: laterVersions.count)
        #expect(reverted.map(\.migration.version) == laterVersions.reversed())
        #expect(try connection.scalar("SELECT max(version) FROM schema_migrations") == "7")
        #expect(try connection.scalar("SELECT to_regclass('idx_media_items_owner_created')") == nil)
        #expect(try migrator.status(on: connection).pendingCount == laterVersions.count)
        #expect(try migrator.migrateUp(on: connection, to: 8).map(\.migration.version) == [8])
    }

    @Test func anEditedAppliedMigrationIsRefusedNamingTheFile() throws {
        let directory = try temporaryMigrationsCopy()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try TestDatabase.create("edited")
        defer { database.drop() }
        let connection = try database.connect()
        try Migrator(catalog: MigrationCatalog.load(from: directory), logger: quietLogger).migrateUp(on: connection)

        let edited = directory.appendingPathComponent("0003_media_library.up.sql")
        try (String(contentsOf: edited, encoding: .utf8) + "\n-- a harmless-looking edit\n").write(to: edited, atomically: true, encoding: .utf8)
        let migrator = Migrator(catalog: try MigrationCatalog.load(from: directory), logger: quietLogger)
        let error = try #require(throws: MigrationError.self) { try migrator.migrateUp(on: connection) }
        #expect(error.code == .checksumMismatch)
        #expect(error.message.contains("0003_media_library.up.sql"))
        #expect(throws: MigrationError.self) { try migrator.migrateDown(on: connection) }
        #expect(try migrator.status(on: connection).problems.map(\.version) == [3])
    }

    @Test func anAppliedMigrationWhoseFileIsMissingIsRefused() throws {
        let directory = try temporaryMigrationsCopy()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try TestDatabase.create("missing")
        defer { database.drop() }
        let connection = try database.connect()
        try Migrator(catalog: MigrationCatalog.load(from: directory), logger: quietLogger).migrateUp(on: connection)
        for suffix in ["up", "down"] {
            try FileManager.default.removeItem(at: directory.appendingPathComponent("0009_row_level_security.\(suffix).sql"))
        }
        let migrator = Migrator(catalog: try MigrationCatalog.load(from: directory), logger: quietLogger)
        let error = try #require(throws: MigrationError.self) { try migrator.migrateUp(on: connection) }
        #expect(error.code == .appliedMigrationMissing)
        #expect(error.message.contains("row_level_security"))
        #expect(try migrator.status(on: connection).entries.first { $0.version == 9 }?.state == .missingFile)
    }

    @Test func aFailingMigrationIsRolledBackAndNotRecorded() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-failing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "CREATE TABLE good (id int);".write(to: directory.appendingPathComponent("0001_good.up.sql"), atomically: true, encoding: .utf8)
        try "DROP TABLE good;".write(to: directory.appendingPathComponent("0001_good.down.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE half (id int);\nSELECT 1/0;".write(to: directory.appendingPathComponent("0002_bad.up.sql"), atomically: true, encoding: .utf8)
        try "DROP TABLE half;".write(to: directory.appendingPathComponent("0002_bad.down.sql"), atomically: true, encoding: .utf8)
        try "-- medianest:no-transaction\nCREATE TABLE IF NOT EXISTS partial (id int);\nSELECT 1/0;".write(to: directory.appendingPathComponent("0003_bad_outside.up.sql"), atomically: true, encoding: .utf8)
        try "-- medianest:no-transaction\nDROP TABLE IF EXISTS partial;".write(to: directory.appendingPathComponent("0003_bad_outside.down.sql"), atomically: true, encoding: .utf8)

        let database = try TestDatabase.create("failing")
        defer { database.drop() }
        let connection = try database.connect()
        let migrator = Migrator(catalog: try MigrationCatalog.load(from: directory), logger: quietLogger)
        let error = try #require(throws: MigrationError.self) { try migrator.migrateUp(on: connection) }
        #expect(error.code == .migrationFailed)
        #expect(error.message.contains("0002_bad.up.sql"))
        #expect(error.underlying?.sqlState == "22012")
        #expect(try connection.column("SELECT version::text FROM schema_migrations") == ["1"])
        #expect(try connection.scalar("SELECT to_regclass('half')") == nil)

        // Outside a transaction: what ran stays, nothing is recorded, the statement is named.
        try connection.execute("DELETE FROM schema_migrations WHERE version = 2")
        try connection.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (2, 'bad', $1)", [migrator.catalog.migration(version: 2)!.checksum])
        let outside = try #require(throws: MigrationError.self) { try migrator.migrateUp(on: connection) }
        #expect(outside.message.contains("statement 2 of 2"))
        #expect(try connection.scalar("SELECT to_regclass('partial')::text") == "partial")
        #expect(try connection.scalar("SELECT count(*) FROM schema_migrations WHERE version = 3") == "0")
    }

    @Test func twoMigratorsAtOnceApplyEachMigrationExactlyOnce() throws {
        let database = try TestDatabase.create("race")
        defer { database.drop() }
        // Hold the lock so that both migrators are already waiting when it is released.
        let holder = try database.connect()
        try holder.execute("SELECT pg_advisory_lock($1)", [Migrator.advisoryLockKey])
        let migrator = try projectMigrator()
        let releaser: @Sendable () throws -> [MigrationRun] = {
            Thread.sleep(forTimeInterval: 0.5)
            try holder.execute("SELECT pg_advisory_unlock($1)", [Migrator.advisoryLockKey])
            return []
        }
        let migrate: @Sendable () throws -> [MigrationRun] = {
            try migrator.migrateUp(on: database.connect())
        }
        let results = runOnThreads([migrate, migrate, releaser])
        let applied = try results.map { try $0.get() }
        #expect(applied[0].count + applied[1].count == migrator.catalog.migrations.count)
        #expect(Set(applied[0].map(\.migration.version)).isDisjoint(with: applied[1].map(\.migration.version)))
        #expect(try database.connect().scalar("SELECT count(*) FROM schema_migrations") == String(migrator.catalog.migrations.count))
    }

    @Test(.enabled(if: workerBinarySupportsMigrate(), "needs medianest-worker built with the migrate command registered"))
    func twoMigrateProcessesAtOnceBothSucceedAndApplyEachMigrationOnce() throws {
        let database = try TestDatabase.create("procs")
        defer { database.drop() }
        let holder = try database.connect()
        try holder.execute("SELECT pg_advisory_lock($1)", [Migrator.advisoryLockKey])
        let processes = try (0..<2).map { _ in try startMigrateProcess(connectionString: database.connectionString) }
        Thread.sleep(forTimeInterval: 1.0)
        try holder.execute("SELECT pg_advisory_unlock($1)", [Migrator.advisoryLockKey])
        var appliedLines = 0
        for (process, output, errors) in processes {
            process.waitUntilExit()
            let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 0, "migrate failed: \(stdout) \(stderr)")
            #expect(!stderr.lowercased().contains("error"), "\(stderr)")
            appliedLines += stdout.split(separator: "\n").count { $0.hasPrefix("applied ") }
        }
        let count = try projectMigrator().catalog.migrations.count
        #expect(appliedLines == count)
        #expect(try holder.scalar("SELECT count(*) FROM schema_migrations") == String(count))
    }
}

@Suite("migrate command")
struct MigrateCommandTests {
    @Test(.enabled(if: workerBinarySupportsMigrate(), "needs medianest-worker built with the migrate command registered"))
    func statusExitsTwoAndNamesTheMigrationWhenAnAppliedFileChanged() throws {
        let directory = try temporaryMigrationsCopy()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try TestDatabase.create("statuscli")
        defer { database.drop() }
        func migrate(_ arguments: [String]) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = workerBinary()
            process.arguments = ["migrate"] + arguments + ["--database-url", database.connectionString, "--migrations-dir", directory.path]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }
        #expect(try migrate(["up"]).status == 0)
        #expect(try migrate(["status"]).status == 0)
        let edited = directory.appendingPathComponent("0002_users.up.sql")
        try (String(contentsOf: edited, encoding: .utf8) + "\n-- edited\n").write(to: edited, atomically: true, encoding: .utf8)
        let status = try migrate(["status"])
        #expect(status.status == 2)
        #expect(status.output.contains("migration 2 (users): its file changed"))
        let up = try migrate(["up"])
        #expect(up.status != 0)
        #expect(up.output.contains("0002_users.up.sql"))
    }
}

/// The worker executable: MEDIANEST_WORKER_BIN (set by scripts/test.sh) or the debug build.
func workerBinary() -> URL {
    if let path = ProcessInfo.processInfo.environment["MEDIANEST_WORKER_BIN"], !path.isEmpty {
        return URL(fileURLWithPath: path)
    }
    return repositoryRoot.appendingPathComponent(".build/debug/medianest-worker")
}

/// Whether the root command lists `migrate` among its subcommands. (`migrate --help` is no test:
/// ArgumentParser prints the root's help and exits 0 for an unknown subcommand followed by --help.)
func workerBinarySupportsMigrate() -> Bool {
    let process = Process()
    process.executableURL = workerBinary()
    process.arguments = ["--help"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    let help = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return process.terminationStatus == 0 && help.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("migrate ") }
}

private func startMigrateProcess(connectionString: String) throws -> (Process, Pipe, Pipe) {
    let process = Process()
    process.executableURL = workerBinary()
    process.arguments = ["migrate", "up", "--database-url", connectionString, "--migrations-dir", migrationsDirectory.path]
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    return (process, output, errors)
}
