import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

/// scripts/medianest-backup against the test cluster.
@Suite("backup script", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct BackupScriptTests {
    let script = repositoryRoot.appendingPathComponent("scripts/medianest-backup").path

    func backup(database: String, into directory: String, keepDays: Int = 7) throws -> ToolOutput {
        var environment = ["DATABASE_URL": database, "MEDIANEST_BACKUP_DIR": directory, "MEDIANEST_BACKUP_KEEP_DAYS": "\(keepDays)"]
        if let bindir = ProcessInfo.processInfo.environment["MEDIANEST_PG_BINDIR"] { environment["MEDIANEST_PG_BINDIR"] = bindir }
        return try runTool(script, [], environment: environment, removing: ["JOURNAL_STREAM", "STATE_DIRECTORY"])
    }

    func files(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    func touch(_ path: String, daysAgo: Double) throws {
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -daysAgo * 86400)], ofItemAtPath: path)
    }

    @Test func writesAVerifiedDumpAndRemovesBackupsPastRetention() async throws {
        try await withMigratedDatabase("backup") { database, connection, owner in
            _ = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "kept-in-backup.jpg", on: connection)
            let directory = try makeTemporaryDirectory("backup")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try touch(directory + "/medianest-20200101T020000Z.dump", daysAgo: 10)
            try touch(directory + "/medianest-20200105T020000Z.dump", daysAgo: 8)
            try touch(directory + "/medianest-20200110T020000Z.dump", daysAgo: 3)
            try touch(directory + "/notes.txt", daysAgo: 30)

            let result = try backup(database: database.connectionString, into: directory)
            try #require(result.status == 0, "\(result.stderr)")
            let after = try files(in: directory)
            let fresh = after.filter { $0.hasPrefix("medianest-") && !$0.hasPrefix("medianest-2020") }
            try #require(fresh.count == 1, "\(after)")
            #expect(after.contains("medianest-20200110T020000Z.dump"), "3 days old: kept")
            #expect(!after.contains("medianest-20200101T020000Z.dump"), "10 days old: removed")
            #expect(!after.contains("medianest-20200105T020000Z.dump"), "8 days old: removed")
            #expect(after.contains("notes.txt"), "only the script's own files are ever removed")
            #expect(!after.contains { $0.hasSuffix(".partial") })
            #expect(result.stderr.contains("backup written"))
            #expect(result.stderr.contains("removed backup older than 7 days"))

            let dump = directory + "/" + fresh[0]
            let list = try runTool(try pgTool("pg_restore"), ["--list", dump])
            #expect(list.status == 0)
            #expect(list.stdout.contains("TABLE DATA public media_items"))
            #expect(list.stdout.contains("TABLE DATA public schema_migrations"))
            #expect((try FileManager.default.attributesOfItem(atPath: dump)[.posixPermissions] as? Int) == 0o600)

            // It restores: the item is back in a fresh database.
            try await TestDatabase.with("restore") { target in
                let restore = try runTool(try pgTool("pg_restore"), ["--no-owner", "--dbname", target.connectionString, dump])
                #expect(restore.status == 0, "\(restore.stderr)")
                let restored = try target.connect()
                #expect(try restored.query("SELECT count(*) AS n FROM media_items WHERE original_filename = 'kept-in-backup.jpg'")[0].decode("n", as: Int.self) == 1)
            }
        }
    }

    @Test func aFailingDumpExitsNonZeroAndLeavesNothing() throws {
        let directory = try makeTemporaryDirectory("backupfail")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try touch(directory + "/medianest-20200101T020000Z.dump", daysAgo: 30)
        let missing = TestDatabase.adminConfiguration.connectionString + " dbname=mn_no_such_database_\(UUID().uuidString.prefix(6).lowercased())"
        let result = try backup(database: missing, into: directory)
        #expect(result.status == 1)
        #expect(result.stderr.contains("pg_dump failed"), "\(result.stderr)")
        #expect(try files(in: directory) == ["medianest-20200101T020000Z.dump"], "no partial file; old backups are kept when a new one fails")
    }

    @Test func aDatabaseThatIsNotMediaNestIsRefused() async throws {
        try await TestDatabase.with("notmedianest") { database in
            let directory = try makeTemporaryDirectory("backupwrong")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let result = try backup(database: database.connectionString, into: directory)
            #expect(result.status == 1)
            #expect(result.stderr.contains("no schema_migrations table"), "\(result.stderr)")
            #expect(try files(in: directory).isEmpty)
        }
    }

    @Test func badSettingsExit2() throws {
        let directory = try makeTemporaryDirectory("backupbad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try backup(database: "dbname=x", into: directory, keepDays: 0)
        #expect(result.status == 2)
        #expect(result.stderr.contains("MEDIANEST_BACKUP_KEEP_DAYS"))
    }
}

/// `medianest-worker maintenance` as the timer runs it.
@Suite("maintenance command", .enabled(if: TestDatabase.isAvailable && hasWorkerBinary, "needs the cluster and binary that scripts/test.sh provides"))
struct MaintenanceCommandTests {
    static let lockKey: Int64 = 0x4D4E_6D61_696E_7465

    @Test func skipsWhileAnotherHostHoldsTheLockThenReportsWhatItDid() async throws {
        try await withMigratedDatabase("maintcli") { database, connection, _ in
            try connection.execute("INSERT INTO cache_entries (key, value, expires_at) VALUES ('old', 'x', now() - interval '1 hour')")
            let holder = try database.connect()
            try holder.query("SELECT pg_advisory_lock($1::bigint)", [MaintenanceCommandTests.lockKey])

            let skipped = try runTool(workerBinary, ["maintenance", "--json", "--log-format", "json", "--database-url", database.connectionString])
            #expect(skipped.status == 0, "skipping is not a failure: \(skipped.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(skipped.stdout.utf8)) as? [String: Any])
            #expect(report["skipped"] as? Bool == true)
            #expect(report["lock_holder_pid"] as? Int == Int(holder.backendPID))
            let logLine = try #require(skipped.stderr.split(separator: "\n").first)
            let log = try #require(try JSONSerialization.jsonObject(with: Data(logLine.utf8)) as? [String: Any])
            #expect(log["level"] as? String == "notice")
            #expect((log["msg"] as? String)?.contains("skipped") == true)

            try holder.query("SELECT pg_advisory_unlock($1::bigint)", [MaintenanceCommandTests.lockKey])
            let done = try runTool(workerBinary, ["maintenance", "--database-url", database.connectionString, "--log-format", "journald"])
            #expect(done.status == 0, "\(done.stderr)")
            #expect(done.stdout.contains("Maintenance finished"))
            #expect(done.stdout.contains("cache_entries 1"))
            #expect(done.stderr.contains("<5>maintenance finished"), "journald priority prefix: \(done.stderr)")

            let bad = try runTool(workerBinary, ["maintenance", "--batch-size", "0", "--database-url", database.connectionString])
            #expect(bad.status != 0)
            #expect(bad.stderr.contains("batch size"))
        }
    }
}
