import ArgumentParser
import Foundation
public import Logging
import MediaNestCore
public import MediaNestMetrics
import MediaNestDB
import MediaNestMedia
import MediaNestQueue
public import MediaNestSystemd

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
    /// Bootstraps swift-log to stderr at `configuration.logLevel` (once per process).
    ///
    /// `--log-format` (`log.format`): journald's `<N>` priority prefixes when stderr is the
    /// journal (`auto` checks `JOURNAL_STREAM` against stderr), readable text on a terminal, JSON
    /// lines on request. Every handler is wrapped so that control characters in messages and
    /// metadata cannot forge lines.
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
    /// - Returns: How the worker stopped.
    /// - Throws: ``WorkerConfigurationError`` when the configuration cannot work;
    ///   ``WorkerStartupError`` (exit with its ``WorkerStartupError/exitCode``, 78) when the
    ///   environment cannot.
    ///   - readiness: What `/readyz` answers; `nil` answers ready while the process runs.
    public static func run(configuration: WorkerConfiguration, registry: HandlerRegistry, readiness: ReadinessCheck? = nil) async throws -> WorkerExit {
        let logger = Logger(label: "medianest.worker")
        // Before the runtime makes its counters: metrics made before the bootstrap go nowhere.
        if configuration.metricsAddress != nil { PrometheusMetrics.bootstrap() }
        let runtime = try WorkerRuntime(configuration: configuration, registry: registry, logger: logger)
        runtime.installSignalHandlers()
        guard try await runtime.checkEnvironment() else { return .shutdown }
        // LEAD: move MetricsHTTPServer into the runtime's ServiceGroup and pass readiness from
        // WorkerHealth (database reachable, loop progressing, not shutting down).
        let metrics = WorkerMetricsEndpoint.start(configuration: configuration,
                                                  readiness: readiness ?? { (true, "running (readiness is not wired to the runtime's health yet)") },
                                                  logger: logger)
        defer { metrics?.cancel() }
        return await runtime.run()
    }
}
