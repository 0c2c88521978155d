import ArgumentParser
import Foundation
public import Logging
import MediaNestCore
public import MediaNestMetrics
import MediaNestDB
import MediaNestMedia
import MediaNestQueue
public import MediaNestSystemd
public import ServiceLifecycle

/// Parses `run`'s options (``WorkerOptions``) and loads the configuration they lead to.
public enum WorkerArguments {
    /// Parses `arguments` (those after `run`) and loads the configuration over the environment
    /// and the configuration file, without checking that the storage root exists.
    /// - Throws: ``WorkerConfigurationError`` naming the bad option or key.
    public static func parse(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async throws(WorkerConfigurationError) -> WorkerConfiguration {
        let options: WorkerOptions
        do {
            options = try WorkerOptions.parse(arguments)
        } catch {
            throw WorkerConfigurationError(WorkerOptions.message(for: error))
        }
        return try await WorkerConfigurationLoader.load(options: options, environment: environment).configuration
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
    ///   - readiness: What `/readyz` answers; `nil` answers from the runtime's ``WorkerHealth``:
    ///     ready while the database is reachable, the claim loop made progress within 90 s, and
    ///     no shutdown has begun.
    ///   - health: The runtime's health, shared with `/readyz`.
    ///   - additionalServices: Services run beside the runtime's own (started first, stopped last).
    public static func run(configuration: WorkerConfiguration, registry: HandlerRegistry, readiness: ReadinessCheck? = nil,
                           health: WorkerHealth = WorkerHealth(), additionalServices: [any Service] = []) async throws -> WorkerExit {
        let logger = Logger(label: "medianest.worker")
        // Before the runtime makes its counters: metrics made before the bootstrap go nowhere.
        if configuration.metricsAddress != nil { PrometheusMetrics.bootstrap() }
        // Before the pool's threads first allocate: later threads share the arenas there are.
        MallocArenaLimit.apply()
        let runtime = try WorkerRuntime(configuration: configuration, registry: registry, logger: logger, health: health)
        let check: ReadinessCheck = readiness ?? {
            let snapshot = health.snapshot
            if health.isReady() { return (true, "ready: the database answers and the claim loop is making progress") }
            if snapshot.shuttingDown { return (false, "shutting down") }
            if !snapshot.databaseReachable { return (false, "the database is not reachable") }
            return (false, snapshot.lastProgress == nil ? "starting" : "the claim loop has made no progress for 90 s")
        }
        // The endpoint runs in a group of its own: a port another instance holds must cost this
        // worker its metrics, never its jobs (a failing service would stop the runtime's group).
        let metrics = WorkerMetricsEndpoint.start(configuration: configuration, readiness: check, logger: logger)
        defer { metrics?.cancel() }
        return try await runtime.serve(signals: true, additionalServices: additionalServices)
    }
}
