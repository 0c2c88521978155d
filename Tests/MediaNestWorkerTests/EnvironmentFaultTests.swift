import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// Faults of the environment, not of any job: the daemon refuses what never fixes itself at start
/// (exit 78, one clear line), and waits out a storage root that goes away without charging jobs.
@Suite("environment faults", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct EnvironmentFaultTests {
    /// Runs the production `medianest-worker run --drain` and waits for it to exit.
    private func runWorker(_ connectionString: String, _ arguments: [String]) async throws -> (status: Int32?, log: String) {
        let worker = try WorkerProcess(connectionString: connectionString, runLog: makeRunLog(),
                                       arguments: ["--drain", "--log-level", "info"] + arguments, executable: "medianest-worker")
        defer { worker.stop() }
        let status = try await worker.waitForExit(timeout: .seconds(30))
        return (status, worker.log)
    }

    @Test func runRefusesAStorageRootThatIsRelativeMissingOrNotADirectory() async throws {
        try await withMigratedDatabase("badroot") { database, _, _ in
            let base = try scratchDirectory("roots")
            let file = base + "/plain-file"
            try Data("x".utf8).write(to: URL(fileURLWithPath: file))
            let cases: [(root: String, says: String)] = [
                ("media/library", "is a relative path"),
                (base + "/not-there", "No such file or directory"),
                (file, "is not a directory"),
            ]
            for (root, says) in cases {
                let (status, log) = try await runWorker(database.connectionString, ["--storage-root", root])
                #expect(status == 78, "\(root): \(log)")
                let lines = log.split(separator: "\n").filter { !$0.isEmpty }
                #expect(lines.count == 1, "one clear line: \(log)")
                #expect(log.contains(says), "\(root): \(log)")
            }
        }
    }

    @Test func runEndsWithAClearMessageWhenTheDatabaseDoesNotExist() async throws {
        let root = try scratchDirectory("root")
        let missing = "mn_missing_\(UUID().uuidString.prefix(8).lowercased())"
        let (status, log) = try await runWorker(TestDatabase.adminConfiguration.connectionString + " dbname=\(missing)", ["--storage-root", root])
        #expect(status == 78, "\(log)")
        #expect(log.contains("database \"\(missing)\" does not exist"), "\(log)")
        #expect(!log.contains("will retry"), "never retried: \(log)")
    }

    @Test func runEndsWithAClearMessageWhenTheRoleDoesNotExist() async throws {
        let root = try scratchDirectory("root")
        let (status, log) = try await runWorker(TestDatabase.adminConfiguration.connectionString + " user=nobody_here", ["--storage-root", root])
        #expect(status == 78, "\(log)")
        #expect(log.contains("role \"nobody_here\" does not exist"), "\(log)")
    }

    @Test func runEndsWithAClearMessageOnAWrongPasswordAndNeverShowsIt() async throws {
        let port = try #require(ProcessInfo.processInfo.environment["MEDIANEST_TEST_PG_TCP_PORT"])
        let root = try scratchDirectory("root")
        let url = "postgresql://medianest:Wr0ng-Secret@127.0.0.1:\(port)/postgres"
        let (status, log) = try await runWorker(url, ["--storage-root", root])
        #expect(status == 78, "\(log)")
        #expect(log.contains("password authentication failed"), "\(log)")
        #expect(!log.contains("Wr0ng"), "\(log)")
        #expect(!log.contains("Secret"), "\(log)")
    }

    @Test func runEndsWithAClearMessageWhenTheSchemaIsNotMigrated() async throws {
        try await TestDatabase.with("unmigrated") { database in
            let root = try scratchDirectory("root")
            let (status, log) = try await runWorker(database.connectionString, ["--storage-root", root])
            #expect(status == 78, "\(log)")
            #expect(log.contains("run `medianest-worker migrate up`"), "\(log)")
            #expect(log.contains("schema version 0"), "\(log)")
        }
    }

    @Test func schemaRevertedUnderARunningWorkerEndsItInsteadOfRetryingForever() async throws {
        try await withMigratedDatabase("schemagone") { database, connection, _ in
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--no-listen", "--poll-interval", "0.2", "--log-level", "info"])
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT count(*) AS n FROM processing_workers")[0].decode("n", as: Int.self) == 1
            })
            try connection.execute("DROP TABLE processing_jobs CASCADE")
            let status = try await worker.waitForExit(timeout: .seconds(30))
            #expect(status == 78, "log:\n\(worker.log)")
            #expect(worker.log.contains("run `medianest-worker migrate up`"), "log:\n\(worker.log)")
            #expect(!worker.log.contains("database call failed"), "not retried:\n\(worker.log)")
        }
    }

    @Test func storageRootThatGoesAwayStopsClaimingReleasesUnchargedAndResumesWhenBack() async throws {
        try await withMigratedDatabase("rootgone") { database, connection, owner in
            let base = try scratchDirectory("storage")
            let root = base + "/media"
            let away = base + "/media-unmounted"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            /// An item whose file exists on `volume`, and its metadata job with `input`.
            func job(_ name: String, input: String, volume: String) throws -> String {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: name, on: connection)
                let path = try connection.query("SELECT storage_path FROM media_items WHERE id = $1::uuid", [item])[0].decode("storage_path", as: String.self)
                let file = volume + "/" + path
                try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data("media".utf8).write(to: URL(fileURLWithPath: file))
                return try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", input: input, on: connection)
            }
            // Long enough that the test sees it running even when its own task waits seconds for
            // a thread (a 1.5 s job was once done before the test looked, in a fresh clone).
            let running = try job("running.jpg", input: #"{"sleep_ms": 8000, "read_file": true}"#, volume: root)
            let runLog = makeRunLog()
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                           arguments: ["--storage-root", root, "--lease", "5", "--heartbeat", "0.5", "--poll-interval", "0.3"])
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(running, on: connection) == "running" }, "log:\n\(worker.log)")

            // The volume goes away under the running job, and more work arrives.
            try FileManager.default.moveItem(atPath: root, toPath: away)
            let queued = try (0..<5).map { try job("queued\($0).jpg", input: #"{"read_file": true}"#, volume: away) }

            #expect(try await waitUntil(timeout: .seconds(30)) {
                worker.log.contains("storage root is unavailable") && worker.log.contains("released without charging an attempt: the storage root was unavailable")
            }, "log:\n\(worker.log)")
            #expect(worker.log.components(separatedBy: "storage root is unavailable").count == 2, "logged once:\n\(worker.log)")
            for id in [running] + queued {
                let row = try connection.query("SELECT status::text AS s, attempts FROM processing_jobs WHERE id = $1::uuid", [id])[0]
                #expect(try row.decode("s", as: String.self) == "pending", "\(id):\n\(worker.log)")
                #expect(try row.decode("attempts", as: Int.self) == 0)
            }
            #expect(worker.isRunning)

            // The volume is back: everything completes, each job charged one attempt.
            try FileManager.default.moveItem(atPath: away, toPath: root)
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try ([running] + queued).allSatisfy { try jobStatus($0, on: connection) == "completed" }
            }, "log:\n\(worker.log)")
            #expect(worker.log.contains("storage root is back"))
            let charged = try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE attempts <> 1")[0].decode("n", as: Int.self)
            #expect(charged == 0)
        }
    }

    // Found by `make chaos` (read_only_root): a storage root remounted read-only under the
    // worker failed every thumbnail and preview job for good (EROFS was a permanent io_error).
    // Now a root that was writable at start and turns read-only counts as unavailable: nothing
    // is claimed, and it resumes when the root is writable again. Needs root for the mount.
    @Test(.enabled(if: getuid() == 0, "needs root to mount a tmpfs"))
    func storageRootRemountedReadOnlyStopsClaimingAndResumesWhenWritable() async throws {
        try await withMigratedDatabase("rootro") { database, connection, owner in
            let root = try scratchDirectory("storage-ro")
            func mount(_ arguments: [String]) throws {
                let result = try ProcessRunner.run("/usr/bin/mount", arguments)
                try #require(result.status == 0, "mount \(arguments): \(result.stderr)")
            }
            try mount(["-t", "tmpfs", "-o", "size=8m", "tmpfs", root])
            defer { _ = try? ProcessRunner.run("/usr/bin/umount", ["-l", root]) }
            func job(_ name: String) throws -> String {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: name, on: connection)
                let path = try connection.query("SELECT storage_path FROM media_items WHERE id = $1::uuid", [item])[0].decode("storage_path", as: String.self)
                let file = root + "/" + path
                try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data("media".utf8).write(to: URL(fileURLWithPath: file))
                return try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", input: #"{"read_file": true}"#, on: connection)
            }
            let first = try job("first.jpg")
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--storage-root", root, "--lease", "5", "--heartbeat", "0.5", "--poll-interval", "0.3"])
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(first, on: connection) == "completed" }, "log:\n\(worker.log)")

            // Files uploaded before the volume went read-only; their jobs arrive after.
            let files = try (0..<3).map { index -> (String, String) in
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "queued\(index).jpg", on: connection)
                let path = try connection.query("SELECT storage_path FROM media_items WHERE id = $1::uuid", [item])[0].decode("storage_path", as: String.self)
                try FileManager.default.createDirectory(atPath: ((root + "/" + path) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data("media".utf8).write(to: URL(fileURLWithPath: root + "/" + path))
                return (item, path)
            }
            try mount(["-o", "remount,ro", root])
            #expect(try await waitUntil(timeout: .seconds(30)) { worker.log.contains("storage root is unavailable") }, "log:\n\(worker.log)")
            let queued = try files.map { try DatabaseFixtures.insertJob(mediaItemID: $0.0, type: "metadata", input: #"{"read_file": true}"#, on: connection) }
            // Several poll intervals and the NOTIFY of the insert: a worker that claims would have.
            try await Task.sleep(for: .seconds(2))
            let claimedWhileReadOnly = try connection.query("""
                SELECT count(*) AS n FROM processing_jobs WHERE id = ANY($1::uuid[]) AND status IN ('running', 'completed', 'failed')
                """, [queued])[0].decode("n", as: Int.self)
            #expect(claimedWhileReadOnly == 0, "log:\n\(worker.log)")

            try mount(["-o", "remount,rw", root])
            #expect(try await waitUntil(timeout: .seconds(30)) { try queued.allSatisfy { try jobStatus($0, on: connection) == "completed" } },
                    "log:\n\(worker.log)")
            #expect(worker.log.contains("storage root is back"))
        }
    }
}
