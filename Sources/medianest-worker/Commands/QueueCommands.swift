import ArgumentParser
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestWorker

/// The connection options every operator command shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "libpq connection string or URI (default: $DATABASE_URL, else libpq's PG* defaults).")
    var databaseURL: String?

    /// Opens a connection to a migrated database, checked the way `run` checks it at start.
    ///
    /// A fault no retry fixes (no such database or role, a wrong password, an unmigrated schema)
    /// is a ``WorkerStartupError`` with `run`'s sentence; a server that cannot be reached is a
    /// ``DatabaseError``. ``operatorAction(_:)`` prints either as one line.
    func connect() throws -> PGConnection {
        let url = databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"] ?? ""
        return try DatabasePreflight.connectMigrated(DatabaseConfiguration(connectionString: url, applicationName: "medianest-worker cli"))
    }
}

/// Runs an operator action, printing a ``QueueAdminError`` or database error as one clear line
/// and exiting 1; a fault of the environment (``WorkerStartupError``: an unmigrated database, a
/// missing storage root) exits 78 (`EX_CONFIG`), as `run` does.
func operatorAction(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as WorkerStartupError {
        printError(error.message)
        throw ExitCode(error.exitCode)
    } catch let error as QueueAdminError {
        printError(error.message)
        throw ExitCode(1)
    } catch let error as ImportError {
        printError(error.message)
        throw ExitCode(1)
    } catch let error as DatabaseError {
        printError("database error: \(error)")
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
}

func parseTypes(_ text: String?) throws -> [JobType]? {
    guard let text else { return nil }
    let types = text.split(separator: ",").map { JobType(String($0).trimmingCharacters(in: .whitespaces)) }
    let unknown = types.filter { !JobType.all.contains($0) }
    guard !types.isEmpty, unknown.isEmpty else {
        throw ValidationError("unknown job type \(unknown.map(\.rawValue).joined(separator: ", ")); known: \(JobType.all.map(\.rawValue).joined(separator: ", "))")
    }
    return types
}

/// `medianest-worker enqueue`.
struct EnqueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Create a media item's processing jobs (idempotent) and print their ids.",
        discussion: "Without --types the jobs follow the item's MIME type: image → metadata, thumbnail, preview; video → also transcode; audio → metadata, thumbnail.")

    @Argument(help: "The media_items.id.") var mediaID: String
    @Option(help: "Comma-separated job types (default: by MIME type).") var types: String?
    @Option(help: "Higher runs first (default: 0).") var priority: Int = 0
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let types = try parseTypes(types)
        try operatorAction {
            let jobs = try QueueAdmin.enqueue(mediaItemID: mediaID, types: types, priority: priority, on: try connection.connect())
            for job in jobs { print("\(job.id)  \(job.type)  \(job.status)") }
            print("\(jobs.count) job\(jobs.count == 1 ? "" : "s") for media item \(mediaID.lowercased())")
        }
    }
}

/// `medianest-worker status`.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the queue: counts, oldest pending job, running jobs, workers.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Live view: refresh until Ctrl-C (in place on a terminal; snapshots otherwise). See docs/FIRST-RUN.md.") var watch = false
    @Option(help: "With --watch: seconds between refreshes.") var interval: Double = 2

    func run() throws {
        if watch { return try operatorAction { try StatusWatch.run(connection: connection, interval: max(0.1, interval)) } }
        try operatorAction {
            let status = try QueueStateReader.snapshot(on: try connection.connect())
            print("Jobs by type and status:")
            if status.types.isEmpty { print("  (no jobs)") }
            for row in status.types {
                let parts = QueueSnapshot.TypeState.states.compactMap { state in row.counts[state].map { "\(state) \($0)" } }
                print("  \(row.type.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(parts.joined(separator: ", "))")
            }
            if let age = status.oldestRunnableAge {
                print("Oldest runnable pending job: waiting \(formatSeconds(age))")
            } else {
                print("Oldest runnable pending job: none")
            }
            print("Running (\(status.running.count)):")
            for job in status.running {
                let stage = job.progress["stage"]?.stringValue.map { " \($0)" } ?? ""
                let fraction = job.progress["fraction"]?.doubleValue.map { " \(Int($0 * 100))%" } ?? ""
                let elapsed = job.startedAt.map { " for \(formatSeconds(status.takenAt.timeIntervalSince($0)))" } ?? ""
                // Transcode progress: frames, fps, speed (× realtime), out_time and ETA.
                var details: [String] = []
                if let frames = job.progress["frames"]?.doubleValue { details.append("frame \(Int(frames))") }
                if let fps = job.progress["fps"]?.doubleValue { details.append("\(fps) fps") }
                if let speed = job.progress["speed"]?.doubleValue { details.append("\(speed)x") }
                if let outTime = job.progress["out_time"]?.stringValue { details.append("out_time \(outTime)") }
                if let eta = job.progress["eta_seconds"]?.doubleValue { details.append("eta \(formatSeconds(eta))") }
                let extra = details.isEmpty ? "" : "  (" + details.joined(separator: ", ") + ")"
                print("  \(job.id)  \(job.type)  media \(job.mediaItemID)  on \(job.workerID)  attempt \(job.attempt)\(elapsed)\(stage)\(fraction)\(extra)")
            }
            if !status.typesWaitingForWorker.isEmpty {
                print("Waiting for a worker (pending, but no live worker serves the type): \(status.typesWaitingForWorker.map(\.rawValue).joined(separator: ", "))")
            }
            print("Live workers (\(status.workers.count)):")
            for worker in status.workers {
                print("  \(worker.id)  types \(worker.types.joined(separator: ","))  concurrency \(worker.concurrency)  up \(formatSeconds(status.takenAt.timeIntervalSince(worker.startedAt)))  seen \(formatSeconds(status.takenAt.timeIntervalSince(worker.lastSeenAt))) ago")
            }
        }
    }
}

func formatSeconds(_ seconds: Double) -> String {
    let value = max(0, seconds)
    if value < 60 { return String(format: "%.1fs", value) }
    if value < 3600 { return "\(Int(value) / 60)m\(Int(value) % 60)s" }
    return "\(Int(value) / 3600)h\(Int(value) % 3600 / 60)m"
}

/// `medianest-worker retry`.
struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "retry", abstract: "Run a failed or cancelled job again (attempts reset), or every failed job.")
    @Argument(help: "The processing_jobs.id to retry.") var jobID: String?
    @Flag(help: "Retry every failed job (the latest of each item and type).") var failed = false
    @Option(help: "With --failed: only this job type.") var type: String?
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if failed == (jobID != nil) { throw ValidationError("give either a JOB_ID or --failed") }
        if type != nil && !failed { throw ValidationError("--type only goes with --failed") }
    }

    func run() throws {
        let type = try parseTypes(type)?.first
        try operatorAction {
            let db = try connection.connect()
            if let jobID {
                let job = try QueueAdmin.retry(jobID: jobID, on: db)
                print("Job \(job.id) (\(job.type)) is pending again with its attempts reset.")
            } else {
                let jobs = try QueueAdmin.retryFailed(type: type, on: db)
                for job in jobs { print("\(job.id)  \(job.type)  pending") }
                print("\(jobs.count) failed job\(jobs.count == 1 ? "" : "s") put back to pending.")
            }
        }
    }
}

/// `medianest-worker cancel`.
struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a pending or running job.")
    @Argument(help: "The processing_jobs.id to cancel.") var jobID: String
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        try operatorAction {
            switch try QueueAdmin.cancel(jobID: jobID, on: try connection.connect()) {
            case .cancelledPending:
                print("Job \(jobID.lowercased()) was pending and is now cancelled.")
            case .cancelledRunning(let worker):
                print("Job \(jobID.lowercased()) is cancelled; it was running on \(worker), which stops it within one heartbeat.")
            }
        }
    }
}
