import Foundation
public import Logging
import MediaNestCore
import MediaNestDB
import MediaNestMedia
import MediaNestQueue
public import MediaNestSystemd
public import ServiceLifecycle

/// The options of `run`, parsed without ArgumentParser, for executables that share the runtime
/// but not the production CLI (the test worker).
///
/// `medianest-worker run` declares the same options with ArgumentParser (for its `--help`); a
/// test runs `medianest-worker run --help` against ``optionNames`` so the two cannot drift apart.
public enum WorkerArguments {
    /// Every option `run` accepts.
    public static let optionNames: [String] = [
        "--database-url", "--storage-root", "--types", "--concurrency", "--type-limits", "--instance", "--lease", "--heartbeat",
        "--poll-interval", "--listen-poll-interval", "--grace-period", "--no-listen", "--drain", "--max-attempts", "--max-lost",
        "--retry-base", "--retry-max", "--job-timeout", "--log-level", "--log-format",
        // Thumbnails and previews.
        "--derived-root", "--type-timeouts", "--thumbnail-size", "--thumbnail-format", "--thumbnail-quality",
        "--preview-size", "--preview-format", "--preview-quality", "--decoder-threads",
    ]

    /// Parses `run`'s options over the environment (`DATABASE_URL`, `MEDIANEST_STORAGE_ROOT`).
    /// - Parameters:
    ///   - arguments: The arguments after `run`.
    ///   - environment: The process environment.
    /// - Returns: The configuration.
    /// - Throws: ``WorkerConfigurationError`` naming the bad option.
    public static func parse(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) throws(WorkerConfigurationError) -> WorkerConfiguration {
        var values = RawOptions()
        var index = 0
        while index < arguments.count {
            var name = arguments[index]
            var value: String?
            if let equals = name.firstIndex(of: "="), name.hasPrefix("--") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            switch name {
            case "--no-listen": values.noListen = true
            case "--drain": values.drain = true
            default:
                guard optionNames.contains(name) else { throw WorkerConfigurationError("Unknown option \(name).") }
                if value == nil {
                    index += 1
                    guard index < arguments.count else { throw WorkerConfigurationError("\(name) needs a value.") }
                    value = arguments[index]
                }
                values.options[name] = value
            }
            index += 1
        }
        return try values.configuration(environment: environment)
    }

    /// Options as strings, turned into a configuration in one place for both parsers.
    public struct RawOptions: Sendable {
        public var options: [String: String] = [:]
        public var noListen = false
        public var drain = false
        public init() {}

        /// Builds the configuration.
        /// - Throws: ``WorkerConfigurationError`` naming the bad option.
        public func configuration(environment: [String: String]) throws(WorkerConfigurationError) -> WorkerConfiguration {
            let url = options["--database-url"] ?? environment["DATABASE_URL"] ?? ""
            let storageRoot = options["--storage-root"] ?? environment["MEDIANEST_STORAGE_ROOT"]
            var configuration = WorkerConfiguration(database: DatabaseConfiguration(connectionString: url),
                                                    storage: storageRoot.flatMap { $0.isEmpty ? nil : StorageLayout(root: $0) })
            if let types = options["--types"] {
                let parsed = types.split(separator: ",").map { JobType(String($0).trimmingCharacters(in: .whitespaces)) }
                let unknown = parsed.filter { !JobType.all.contains($0) }
                guard !parsed.isEmpty, unknown.isEmpty else {
                    throw WorkerConfigurationError("--types: unknown job type \(unknown.map(\.rawValue).joined(separator: ", ")); known: \(JobType.all.map(\.rawValue).joined(separator: ", ")).")
                }
                configuration.types = parsed
            }
            if let text = options["--concurrency"] { configuration.concurrency = try integer(text, "--concurrency") }
            if let text = options["--type-limits"] {
                for pair in text.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
                    guard parts.count == 2, JobType.all.contains(JobType(parts[0])) else {
                        throw WorkerConfigurationError("--type-limits takes type=count pairs such as metadata=8,transcode=1 (got \(pair)).")
                    }
                    configuration.perTypeLimits[JobType(parts[0])] = try integer(parts[1], "--type-limits \(parts[0])")
                }
            }
            if let text = options["--instance"] { configuration.instance = text }
            if let text = options["--lease"] { configuration.lease = try seconds(text, "--lease") }
            if let text = options["--heartbeat"] { configuration.heartbeatInterval = try seconds(text, "--heartbeat") }
            if let text = options["--poll-interval"] { configuration.pollInterval = try seconds(text, "--poll-interval") }
            if let text = options["--listen-poll-interval"] { configuration.listenPollInterval = try seconds(text, "--listen-poll-interval") }
            if let text = options["--grace-period"] { configuration.gracePeriod = try seconds(text, "--grace-period") }
            if let text = options["--max-attempts"] { configuration.retryPolicy.maxAttemptsOverride = try integer(text, "--max-attempts") }
            if let text = options["--max-lost"] { configuration.maxLostAlone = try integer(text, "--max-lost") }
            if let text = options["--retry-base"] { configuration.retryPolicy.baseDelay = try seconds(text, "--retry-base") }
            if let text = options["--retry-max"] { configuration.retryPolicy.maximumDelay = try seconds(text, "--retry-max") }
            if let text = options["--job-timeout"] { configuration.jobTimeout = try seconds(text, "--job-timeout") }
            if let text = options["--log-level"] {
                guard let level = Logger.Level(rawValue: text.lowercased()) else {
                    throw WorkerConfigurationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")).")
                }
                configuration.logLevel = level
            }
            if let text = options["--log-format"] {
                guard let format = LoggingFormat(rawValue: text.lowercased()) else {
                    throw WorkerConfigurationError("--log-format must be one of \(LoggingFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
                }
                configuration.logFormat = format
            }
            try applyStillOptions(to: &configuration, environment: environment)
            // Rescue runs twice per lease so a crashed worker's jobs are back within about one
            // lease of their last heartbeat; one worker at a time does it (an advisory try-lock).
            configuration.rescueInterval = configuration.lease / 2
            configuration.listen = !noListen
            configuration.drain = drain
            try configuration.validate()
            return configuration
        }

        /// The thumbnail and preview options (`--derived-root`, `--type-timeouts`, sizes, formats).
        private func applyStillOptions(to configuration: inout WorkerConfiguration, environment: [String: String]) throws(WorkerConfigurationError) {
            if let derived = options["--derived-root"] ?? environment["MEDIANEST_DERIVED_ROOT"], !derived.isEmpty {
                guard let storage = configuration.storage else {
                    throw WorkerConfigurationError("--derived-root needs --storage-root: the derived root must lie inside the storage root.")
                }
                guard derived.hasPrefix("/") else { throw WorkerConfigurationError("--derived-root must be an absolute path (got \(derived)).") }
                configuration.storage = StorageLayout(root: storage.root, derivedRoot: derived)
            }
            if let text = options["--type-timeouts"] {
                for pair in text.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
                    guard parts.count == 2, JobType.all.contains(JobType(parts[0])) else {
                        throw WorkerConfigurationError("--type-timeouts takes type=seconds pairs such as thumbnail=60,preview=60 (got \(pair)).")
                    }
                    configuration.typeTimeouts[JobType(parts[0])] = try seconds(parts[1], "--type-timeouts \(parts[0])")
                }
            }
            for kind in StillKind.allCases {
                let prefix = "--\(kind.rawValue)"
                var settings = configuration.stills.settings(for: kind)
                if let text = options[prefix + "-size"] { settings.maxLongEdge = try integer(text, prefix + "-size") }
                if let text = options[prefix + "-quality"] { settings.quality = try integer(text, prefix + "-quality") }
                if let text = options[prefix + "-format"] {
                    guard let format = ImageFormat(rawValue: text.lowercased() == "jpg" ? "jpeg" : text.lowercased()) else {
                        throw WorkerConfigurationError("\(prefix)-format must be webp, jpeg or png (got \(text)).")
                    }
                    settings.format = format
                }
                if kind == .thumbnail { configuration.stills.thumbnail = settings } else { configuration.stills.preview = settings }
            }
            if let text = options["--decoder-threads"] { configuration.stills.decoderThreads = try integer(text, "--decoder-threads") }
        }

        private func integer(_ text: String, _ name: String) throws(WorkerConfigurationError) -> Int {
            guard let value = Int(text), value >= 1 else { throw WorkerConfigurationError("\(name) must be a whole number of at least 1 (got \(text)).") }
            return value
        }

        private func seconds(_ text: String, _ name: String) throws(WorkerConfigurationError) -> Duration {
            guard let value = Double(text), value.isFinite, value >= 0 else {
                throw WorkerConfigurationError("\(name) must be a number of seconds, such as 5 or 0.5 (got \(text)).")
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
    }
}

/// Runs a worker from an executable's `run` command: logging, signals, the runtime.
public enum WorkerMain {
    /// Bootstraps swift-log to stderr (once per process): ``MediaNestLogHandler`` in `format`
    /// (`auto`: journald `<N>` prefixes when `JOURNAL_STREAM` is stderr, text otherwise), wrapped
    /// in ``SanitizingLogHandler`` so no control character or password reaches a line.
    /// - Parameters:
    ///   - level: The lowest level written.
    ///   - format: `--log-format`.
    public static func bootstrapLogging(level: Logger.Level, format: LoggingFormat = .auto) {
        // Resolved once: every logger of the process writes the same format.
        let resolved = LoggingFormat.detect(requested: format)
        LoggingSystem.bootstrap { label in
            SanitizingLogHandler(MediaNestLogHandler(label: label, format: resolved, level: level))
        }
    }

    /// Starts the runtime with signal handling and waits for it to stop.
    ///
    /// Before anything is claimed, ``WorkerRuntime/checkEnvironment()`` refuses what no retry
    /// would fix (storage root, database, role, password, schema).
    /// - Parameters:
    ///   - configuration: The options.
    ///   - registry: The handlers.
    ///   - health: Where the runtime reports its health, for `/readyz`.
    ///   - additionalServices: More services to run beside the worker (the metrics endpoint);
    ///     they stop after it has drained.
    /// - Returns: How the worker stopped.
    /// - Throws: ``WorkerConfigurationError`` when the configuration cannot work;
    ///   ``WorkerStartupError`` (exit with its ``WorkerStartupError/exitCode``, 78) when the
    ///   environment cannot.
    public static func run(configuration: WorkerConfiguration, registry: HandlerRegistry,
                           health: WorkerHealth = WorkerHealth(), additionalServices: [any Service] = []) async throws -> WorkerExit {
        let logger = Logger(label: "medianest.worker")
        let runtime = try WorkerRuntime(configuration: configuration, registry: registry, logger: logger, health: health)
        return try await runtime.serve(signals: true, additionalServices: additionalServices)
    }
}
