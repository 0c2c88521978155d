import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Testing

/// The directory holding the built executables: next to `MEDIANEST_WORKER_BIN`, else `.build/debug`.
let binDirectory: URL = {
    if let worker = ProcessInfo.processInfo.environment["MEDIANEST_WORKER_BIN"], !worker.isEmpty {
        return URL(fileURLWithPath: worker).deletingLastPathComponent()
    }
    return repositoryRoot.appendingPathComponent(".build/debug")
}()

/// Whether the executables exist (they do after `swift build --build-tests`).
let executablesAvailable = FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent("medianest-testworker").path)

/// A `medianest-testworker run` (or `medianest-worker`) child process with its stderr in a file.
final class WorkerProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String
    /// Where the synthetic handler appends `job_id attempt pid` per finished run.
    let runLog: String

    /// Starts `medianest-testworker run` with `arguments` against `connectionString`.
    init(connectionString: String, runLog: String, arguments: [String], executable: String = "medianest-testworker",
         environment extra: [String: String] = [:]) throws {
        self.runLog = runLog
        logPath = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-worker-\(UUID().uuidString.prefix(8)).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = binDirectory.appendingPathComponent(executable)
        process.arguments = ["run", "--database-url", connectionString] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["MEDIANEST_TEST_RUN_LOG"] = runLog
        environment.merge(extra) { _, new in new }
        process.environment = environment
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the process to exit; `nil` if it did not within `timeout`.
    func waitForExit(timeout: Duration) async throws -> Int32? {
        let exited = try await waitUntil(timeout: timeout) { !process.isRunning }
        return exited ? process.terminationStatus : nil
    }

    /// Kills the process if it still runs (test cleanup).
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// A fresh empty directory under the temporary directory.
func scratchDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-\(label)-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A fresh run-log path.
func makeRunLog() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("medianest-runs-\(UUID().uuidString.prefix(8)).log").path
}

/// How many finished runs the synthetic handler recorded per job id.
func runCounts(_ runLog: String) -> [String: Int] {
    let text = (try? String(contentsOfFile: runLog, encoding: .utf8)) ?? ""
    var counts: [String: Int] = [:]
    for line in text.split(separator: "\n") {
        if let id = line.split(separator: " ").first { counts[String(id), default: 0] += 1 }
    }
    return counts
}

/// Runs `medianest-worker` (the production CLI) to completion.
///
/// A command still running after `timeout` seconds is killed (SIGKILL, status 9 by signal), so a
/// command that never ends fails its test instead of hanging the suite.
func runCLI(_ arguments: [String], environment: [String: String]? = nil, timeout: Double = 120) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = binDirectory.appendingPathComponent("medianest-worker")
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let watchdog = DispatchWorkItem { [process] in if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    defer { watchdog.cancel() }
    let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let error = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output, error)
}

/// The status of a job.
func jobStatus(_ id: String, on connection: PGConnection) throws -> String {
    try connection.query("SELECT status::text AS s FROM processing_jobs WHERE id = $1::uuid", [id])[0].decode("s", as: String.self)
}

// MARK: - The worker's HTTP endpoint

/// The base URL of the metrics endpoint a worker started with `--metrics-address 127.0.0.1:0`
/// logged (`address=127.0.0.1:PORT`), once it did.
func metricsBaseURL(of worker: WorkerProcess) async throws -> String {
    var port: Int?
    let bound = try await waitUntil(timeout: .seconds(30)) {
        let log = worker.log
        guard let range = log.range(of: #"address=127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else { return false }
        port = Int(log[range].split(separator: ":").last!)
        return true
    }
    try #require(bound, "log:\n\(worker.log)")
    return "http://127.0.0.1:\(try #require(port))"
}

/// One GET with a 10 s timeout.
func httpGet(_ url: String) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: try #require(URL(string: url)))
    request.timeoutInterval = 10
    let (data, response) = try await URLSession.shared.data(for: request)
    return (try #require(response as? HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
}
