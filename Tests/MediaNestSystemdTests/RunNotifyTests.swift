import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `medianest-worker run` (and the test worker, which runs the same runtime) under a fake
/// systemd: the test binds NOTIFY_SOCKET and reads what the runtime tells it.
@Suite("run speaks sd_notify", .serialized, .enabled(if: TestDatabase.isAvailable && hasWorkerBinary, "needs the cluster and binary that scripts/test.sh provides"),
       .timeLimit(.minutes(2)))
struct RunNotifyTests {
    /// The test worker, built next to the worker: it has handlers that sleep on request.
    var testWorkerBinary: String { URL(fileURLWithPath: workerBinary).deletingLastPathComponent().appendingPathComponent("medianest-testworker").path }

    /// Reads datagrams until one of their assignments satisfies `match`, collecting every
    /// assignment read in `seen`; returns the matching one.
    func receive(from socket: NotifySocket, until match: (String) -> Bool, seen: inout [String], limit: Int = 120) -> String? {
        for _ in 0..<limit {
            guard let message = socket.receive(timeoutMilliseconds: 500) else { continue }
            let lines = message.split(separator: "\n").map(String.init)
            seen += lines
            for line in lines where match(line) { return line }
        }
        return nil
    }

    /// The assignments of every datagram that arrives within `milliseconds` (0: what is queued now).
    func collect(from socket: NotifySocket, milliseconds: Int64, seen: inout [String]) -> [String] {
        var got: [String] = []
        let end = ContinuousClock.now + .milliseconds(milliseconds)
        repeat {
            let left = max(0, Int32((end - ContinuousClock.now).components.seconds * 1000 + (end - ContinuousClock.now).components.attoseconds / 1_000_000_000_000_000))
            guard let message = socket.receive(timeoutMilliseconds: left) else { if milliseconds == 0 { break } else { continue } }
            got += message.split(separator: "\n").map(String.init)
        } while ContinuousClock.now < end || milliseconds == 0
        seen += got
        return got
    }

    /// Starts `binary run` with NOTIFY_SOCKET and WATCHDOG_USEC set.
    func start(_ binary: String, _ arguments: [String], socket: NotifySocket, directory: String) throws -> (Process, () -> String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = socket.environmentValue
        environment["WATCHDOG_USEC"] = "400000"
        environment["WATCHDOG_PID"] = nil
        process.environment = environment
        let logPath = directory + "/worker.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return (process, { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" })
    }

    @Test func readyAfterThePreflightThenWatchdogStatusAndStoppingAtSigterm() async throws {
        try await TestDatabase.with("notifyrun") { database in
            try applyProjectMigrations(try database.connect())
            let directory = try makeTemporaryDirectory("notifyrun")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try FileManager.default.createDirectory(atPath: directory + "/storage", withIntermediateDirectories: true)
            let socket = try NotifySocket(path: directory)
            let (process, log) = try start(workerBinary, ["--database-url", database.connectionString, "--storage-root", directory + "/storage", "--instance", "notify"],
                                           socket: socket, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            var seen: [String] = []

            #expect(receive(from: socket, until: { $0 == "READY=1" }, seen: &seen) != nil, "\(seen)\n\(log())")
            #expect(receive(from: socket, until: { $0 == "WATCHDOG=1" }, seen: &seen) != nil, "WATCHDOG_USEC is set, so the loop pings: \(seen)")
            // The first STATUS= may have come in the same datagram as the first ping.
            // The first STATUS= may have come in the same datagram as the first ping.
            var status: String? = nil
            for line in seen where line.hasPrefix("STATUS=running ") { status = line; break }
            if status == nil { status = receive(from: socket, until: { $0.hasPrefix("STATUS=running ") }, seen: &seen) }
            let statusLine = try #require(status, "\(seen)")
            #expect(statusLine.hasSuffix("; completed 0, failed 0"), "\(seen)")

            kill(process.processIdentifier, SIGTERM)
            #expect(receive(from: socket, until: { $0 == "STOPPING=1" }, seen: &seen) != nil, "\(seen)\n\(log())")
            let exited = try await waitUntil(timeout: .seconds(60)) { !process.isRunning }
            try #require(exited, "\(log())")
            #expect(process.terminationStatus == 0, "\(log())")
        }
    }

    @Test func unmigratedDatabaseIsNeverReadyAndExitsWithConfigError() async throws {
        try await TestDatabase.with("notifybare") { database in
            let directory = try makeTemporaryDirectory("notifybare")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try FileManager.default.createDirectory(atPath: directory + "/storage", withIntermediateDirectories: true)
            let socket = try NotifySocket(path: directory)
            let (process, log) = try start(workerBinary, ["--database-url", database.connectionString, "--storage-root", directory + "/storage"],
                                           socket: socket, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            let exited = try await waitUntil(timeout: .seconds(60)) { !process.isRunning }
            try #require(exited, "\(log())")
            #expect(process.terminationStatus == 78, "\(log())")
            var seen: [String] = []
            _ = collect(from: socket, milliseconds: 100, seen: &seen)
            #expect(!seen.contains("READY=1"), "\(seen)")
        }
    }

    @Test func drainingALongJobExtendsTheStopTimeoutUntilItCompletes() async throws {
        try await TestDatabase.with("notifydrain") { database in
            let connection = try database.connect()
            try applyProjectMigrations(connection)
            let owner = try DatabaseFixtures.insertUser(on: connection)
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try connection.query("INSERT INTO processing_jobs (media_item_id, job_type, input_data) VALUES ($1::uuid, 'metadata', '{\"sleep_ms\": 3000}') RETURNING id::text AS id",
                                           [item])[0].decode("id", as: String.self)
            let directory = try makeTemporaryDirectory("notifydrain")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let socket = try NotifySocket(path: directory)
            let (process, log) = try start(testWorkerBinary, ["--database-url", database.connectionString, "--grace-period", "60", "--poll-interval", "0.2"],
                                           socket: socket, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            var seen: [String] = []
            #expect(receive(from: socket, until: { $0 == "READY=1" }, seen: &seen) != nil, "\(seen)\n\(log())")
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT status::text AS s FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("s", as: String.self) == "running"
            })
            kill(process.processIdentifier, SIGTERM)
            #expect(receive(from: socket, until: { $0 == "STOPPING=1" }, seen: &seen) != nil, "\(seen)\n\(log())")
            let extend = try #require(receive(from: socket, until: { $0.hasPrefix("EXTEND_TIMEOUT_USEC=") }, seen: &seen), "\(seen)\n\(log())")
            let microseconds = try #require(UInt64(extend.dropFirst("EXTEND_TIMEOUT_USEC=".count)))
            #expect(microseconds > 10_000_000, "covers the remaining grace period and a margin: \(extend)")
            let exited = try await waitUntil(timeout: .seconds(60)) { !process.isRunning }
            try #require(exited, "\(log())")
            #expect(process.terminationStatus == 0, "\(log())")
            #expect(try connection.query("SELECT status::text AS s FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("s", as: String.self) == "completed",
                    "the job finished within the grace period")
        }
    }

    /// The watchdog follows the claim loop, not a timer: while the loop is stuck in a database
    /// call (here behind a table lock held by the test), the pings stop; when the lock goes,
    /// they come back.
    @Test func watchdogPingsStopWhileTheClaimLoopIsStuck() async throws {
        try await TestDatabase.with("notifystuck") { database in
            let connection = try database.connect()
            try applyProjectMigrations(connection)
            let directory = try makeTemporaryDirectory("notifystuck")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let socket = try NotifySocket(path: directory)
            let (process, log) = try start(testWorkerBinary, ["--database-url", database.connectionString, "--no-listen", "--poll-interval", "0.2"],
                                           socket: socket, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            var seen: [String] = []
            #expect(receive(from: socket, until: { $0 == "READY=1" }, seen: &seen) != nil, "\(seen)\n\(log())")
            #expect(receive(from: socket, until: { $0 == "WATCHDOG=1" }, seen: &seen) != nil)

            // A second session holds the lock: pg_stat_activity is read from the first, outside any
            // transaction (inside one, its statistics snapshot would stay frozen).
            let locker = try database.connect()
            try locker.execute("BEGIN")
            try locker.execute("LOCK TABLE processing_jobs IN ACCESS EXCLUSIVE MODE")
            // The worker's connection is seen waiting for the lock: its next claim is stuck.
            let stuck = try await waitUntil(timeout: .seconds(30)) {
                try connection.query("""
                    SELECT count(*) AS n FROM pg_stat_activity
                     WHERE application_name = 'medianest-worker' AND wait_event_type = 'Lock' AND datname = current_database()
                    """)[0].decode("n", as: Int.self) == 1
            }
            try #require(stuck, "\(seen.suffix(5))\n\(log())")
            // Whatever the loop sent before it got stuck is queued already: read it away.
            _ = collect(from: socket, milliseconds: 0, seen: &seen)
            // Alive, it pings every 200 ms; stuck, never.
            let whileStuck = collect(from: socket, milliseconds: 2000, seen: &seen).filter { $0 == "WATCHDOG=1" }
            #expect(whileStuck.isEmpty, "\(whileStuck.count) pings while the loop was stuck")
            try locker.execute("ROLLBACK")
            #expect(receive(from: socket, until: { $0 == "WATCHDOG=1" }, seen: &seen) != nil, "pings resume once the loop moves: \(log())")
            kill(process.processIdentifier, SIGTERM)
            _ = try await waitUntil(timeout: .seconds(30)) { !process.isRunning }
        }
    }
}
