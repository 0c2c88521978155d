import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `medianest-worker run` under a fake systemd: the test binds NOTIFY_SOCKET and reads what the
/// worker tells it (the interim notifications in `run` until the runtime sends them itself).
@Suite("run speaks sd_notify", .enabled(if: TestDatabase.isAvailable && hasWorkerBinary, "needs the cluster and binary that scripts/test.sh provides"))
struct RunNotifyTests {
    /// The highest migration version in the repository: what READY=1 waits for.
    var expectedSchemaVersion: Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appendingPathComponent("migrations").path)) ?? []
        return names.compactMap { name in name.hasSuffix(".up.sql") ? Int(name.prefix { $0.isNumber }) : nil }.max() ?? 0
    }

    /// Reads datagrams until one satisfies `match`, collecting everything read.
    func receive(from socket: NotifySocket, until match: (String) -> Bool, seen: inout [String], limit: Int = 120) -> String? {
        for _ in 0..<limit {
            guard let message = socket.receive(timeoutMilliseconds: 500) else { continue }
            seen.append(message)
            if match(message) { return message }
        }
        return nil
    }

    /// Starts `run` against `database` under a fake systemd; returns the process, the socket and the log path.
    func startWorker(_ database: TestDatabase, directory: String) throws -> (Process, NotifySocket, String) {
        try FileManager.default.createDirectory(atPath: directory + "/storage", withIntermediateDirectories: true)
        let socket = try NotifySocket(path: directory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: workerBinary)
        process.arguments = ["run", "--database-url", database.connectionString, "--storage-root", directory + "/storage", "--instance", "notify"]
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
        return (process, socket, logPath)
    }

    @Test func readyOnceTheDatabaseAnswersWithTheSchemaThenWatchdogAndStopping() async throws {
        try await TestDatabase.with("notifyrun") { database in
            try applyProjectMigrations(try database.connect())
            let directory = try makeTemporaryDirectory("notifyrun")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (process, socket, logPath) = try startWorker(database, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

            var seen: [String] = []
            let ready = receive(from: socket, until: { $0.contains("READY=1") }, seen: &seen)
            #expect(ready == "READY=1\nSTATUS=ready: database answers, schema version \(expectedSchemaVersion)", "\(seen)\n\(log())")
            let ping = receive(from: socket, until: { $0 == "WATCHDOG=1" }, seen: &seen)
            #expect(ping != nil, "WATCHDOG_USEC is set, so the worker pings: \(seen)")

            kill(process.processIdentifier, SIGTERM)
            let stopping = receive(from: socket, until: { $0 == "STOPPING=1" }, seen: &seen)
            #expect(stopping != nil, "\(seen)\n\(log())")
            let exited = try await waitUntil(timeout: .seconds(60)) { !process.isRunning }
            try #require(exited, "\(log())")
            #expect(process.terminationStatus == 0, "\(log())")
        }
    }

    /// An unmigrated schema is a fault no retry fixes (issue 7): the worker exits 78 with one line
    /// saying to migrate, and never tells systemd it is ready.
    @Test func anUnmigratedDatabaseIsNeverReadyAndEndsTheWorkerWithExit78() async throws {
        try await TestDatabase.with("notifyunmigrated") { database in
            let directory = try makeTemporaryDirectory("notifyunmigrated")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (process, socket, logPath) = try startWorker(database, directory: directory)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
            func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
            let exited = try await waitUntil(timeout: .seconds(60)) { !process.isRunning }
            try #require(exited, "\(log())")
            #expect(process.terminationStatus == 78, "\(log())")
            #expect(log().contains("migrate up"), "\(log())")
            var seen: [String] = []
            while let message = socket.receive(timeoutMilliseconds: 200) { seen.append(message) }
            #expect(!seen.contains { $0.contains("READY=1") }, "\(seen)")
        }
    }
}
