import ArgumentParser
import Foundation
import Logging
import MediaNestWorker

/// `medianest-worker run`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Claim and run media-processing jobs until SIGTERM or SIGINT.",
        discussion: """
            Claims jobs from processing_jobs with FOR UPDATE SKIP LOCKED, wakes on NOTIFY medianest_jobs (with a fallback poll), keeps leases alive with one heartbeat statement per interval, and rescues the jobs of workers that stopped heartbeating. SIGTERM/SIGINT: stop claiming, let running jobs finish for --grace-period, then put the rest back to pending; a second signal stops at once. See docs/QUEUE.md.
            """
    )

    @Option(help: "libpq connection string or URI (default: $DATABASE_URL, else libpq's PG* defaults).")
    var databaseURL: String?
    @Option(help: "Absolute path of the media storage root (default: $MEDIANEST_STORAGE_ROOT).")
    var storageRoot: String?
    @Option(help: "Comma-separated job types to claim (default: every type this build has a handler for).")
    var types: String?
    @Option(help: "Most jobs running at once (default: 2 × cores). Per type: transcode 1, thumbnail and preview = cores, metadata = 2 × cores.")
    var concurrency: Int?
    @Option(help: "Per-type limits as type=count pairs, such as metadata=8,transcode=2 (overrides the defaults above).")
    var typeLimits: String?
    @Option(help: "Instance name, the last part of the worker id host:pid:instance (default: 0).")
    var instance: String?
    @Option(help: "Lease length in seconds; a worker silent for this long loses its jobs (default: 30).")
    var lease: Double?
    @Option(help: "Heartbeat interval in seconds (default: 5).")
    var heartbeat: Double?
    @Option(help: "Poll interval in seconds with --no-listen or while LISTEN is down, jittered ±20 % (default: 5).")
    var pollInterval: Double?
    @Option(help: "Safety-net poll interval in seconds while LISTEN works, jittered ±20 % (default: 30).")
    var listenPollInterval: Double?
    @Option(help: "Seconds running jobs may finish after SIGTERM before they are stopped and released (default: 30).")
    var gracePeriod: Double?
    @Flag(help: "Do not LISTEN; poll only (for PgBouncer transaction pooling).")
    var noListen = false
    @Flag(help: "Exit 0 once no job is runnable and none is in flight.")
    var drain = false
    @Option(help: "Attempts before a job fails for good, instead of each job's max_attempts (default: the job's, 5).")
    var maxAttempts: Int?
    @Option(help: "Times a job may crash its worker while running alone before it fails as poison (default: 2).")
    var maxLost: Int?
    @Option(help: "Backoff after the first transient failure, in seconds; doubles per attempt (default: 10).")
    var retryBase: Double?
    @Option(help: "Longest backoff, in seconds (default: 3600).")
    var retryMax: Double?
    @Option(help: "Wall-clock limit for one run of a job, in seconds (default: none).")
    var jobTimeout: Double?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default: info).")
    var logLevel: String?
    @Option(help: "auto, journald, text or json (default: auto: journald's <N> prefixes when stderr is the journal, text otherwise).")
    var logFormat: String?
    @Option(help: "Where thumbnails, previews and renditions are written; must lie inside the storage root (default: $MEDIANEST_DERIVED_ROOT, else <storage root>/.derived).")
    var derivedRoot: String?
    @Option(help: "Wall-clock limits per job type as type=seconds pairs, such as thumbnail=60,preview=60 (default: thumbnail and preview 60; they win over --job-timeout).")
    var typeTimeouts: String?
    @Option(help: "Thumbnail long edge in pixels (default: 320; never upscaled).")
    var thumbnailSize: Int?
    @Option(help: "Thumbnail format: webp, jpeg or png (default: webp).")
    var thumbnailFormat: String?
    @Option(help: "Thumbnail quality, 1-100 (default: 80).")
    var thumbnailQuality: Int?
    @Option(help: "Preview long edge in pixels (default: 1440; never upscaled).")
    var previewSize: Int?
    @Option(help: "Preview format: webp, jpeg or png (default: jpeg).")
    var previewFormat: String?
    @Option(help: "Preview quality, 1-100 (default: 80).")
    var previewQuality: Int?
    @Option(help: "Most decoder threads per thumbnail or preview job (default: 1; keep concurrency × threads within the cores).")
    var decoderThreads: Int?

    func run() async throws {
        var raw = WorkerArguments.RawOptions()
        let given: [(String, String?)] = [
            ("--database-url", databaseURL), ("--storage-root", storageRoot), ("--types", types),
            ("--concurrency", concurrency.map(String.init)), ("--type-limits", typeLimits), ("--instance", instance), ("--lease", lease.map { "\($0)" }),
            ("--heartbeat", heartbeat.map { "\($0)" }), ("--poll-interval", pollInterval.map { "\($0)" }),
            ("--listen-poll-interval", listenPollInterval.map { "\($0)" }),
            ("--grace-period", gracePeriod.map { "\($0)" }), ("--max-attempts", maxAttempts.map(String.init)),
            ("--max-lost", maxLost.map(String.init)), ("--retry-base", retryBase.map { "\($0)" }),
            ("--retry-max", retryMax.map { "\($0)" }), ("--job-timeout", jobTimeout.map { "\($0)" }), ("--log-level", logLevel), ("--log-format", logFormat),
            ("--derived-root", derivedRoot), ("--type-timeouts", typeTimeouts),
            ("--thumbnail-size", thumbnailSize.map(String.init)), ("--thumbnail-format", thumbnailFormat),
            ("--thumbnail-quality", thumbnailQuality.map(String.init)), ("--preview-size", previewSize.map(String.init)),
            ("--preview-format", previewFormat), ("--preview-quality", previewQuality.map(String.init)),
            ("--decoder-threads", decoderThreads.map(String.init)),
        ]
        for case let (name, value?) in given { raw.options[name] = value }
        raw.noListen = noListen
        raw.drain = drain
        do {
            let configuration = try raw.configuration(environment: ProcessInfo.processInfo.environment)
            WorkerMain.bootstrapLogging(level: configuration.logLevel, format: configuration.logFormat)
            // systemd Type=notify (READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT) is sent by the runtime.
            if case .fatal(let message) = try await WorkerMain.run(configuration: configuration, registry: .production(for: configuration)) {
                throw WorkerStartupError(message)
            }
        } catch let error as WorkerConfigurationError {
            throw ValidationError(error.message)
        } catch let error as WorkerStartupError {
            // One line, and EX_CONFIG so that systemd (RestartPreventExitStatus=78) and
            // operators can tell it from a crash.
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}
