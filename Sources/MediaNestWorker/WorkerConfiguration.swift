import Foundation
public import Logging
public import MediaNestDB
public import MediaNestQueue
public import MediaNestMedia

/// Everything `medianest-worker run` can be told, with the defaults it uses.
public struct WorkerConfiguration: Sendable {
    /// Where PostgreSQL is (empty connection string: libpq's defaults).
    public var database: DatabaseConfiguration
    /// Where media lives; handlers that touch files need it.
    public var storage: StorageLayout?
    /// The types to claim, or `nil` for every type with a handler.
    public var types: [JobType]?
    /// The most jobs running at once in this process.
    public var concurrency: Int
    /// The most jobs of one type running at once; types not listed are limited by ``concurrency``.
    public var perTypeLimits: [JobType: Int]
    /// Names this worker among several on one host (`host:pid:instance`).
    public var instance: String
    /// How long a claim or heartbeat keeps a job owned.
    public var lease: Duration
    /// How often in-flight leases are extended and progress written.
    public var heartbeatInterval: Duration
    /// The fallback poll when no notification arrives (jittered ±20 %).
    public var pollInterval: Duration
    /// How often expired leases are looked for.
    public var rescueInterval: Duration
    /// How long in-flight jobs may finish after SIGTERM before they are stopped and released.
    public var gracePeriod: Duration
    /// LISTEN for enqueues; off for PgBouncer transaction pooling (then only polling).
    public var listen: Bool
    /// Exit once nothing is runnable and nothing is in flight.
    public var drain: Bool
    /// Backoff and attempts.
    public var retryPolicy: RetryPolicy
    /// Losses while running alone before a job fails as poison (`worker_lost`).
    public var maxLostAlone: Int
    /// A wall-clock limit for one run, or `nil`.
    public var jobTimeout: Duration?
    /// The log level of the worker's own messages.
    public var logLevel: Logger.Level
    /// The transcode policy and encoder settings (`--transcode-*`).
    public var transcode = TranscodeSettings()

    /// The number of processors this process may use.
    public static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Per-type defaults from the core count: transcodes are heavy and multi-threaded (one at a
    /// time), thumbnails and previews take about a core each, metadata is mostly I/O.
    public static func defaultPerTypeLimits(cores: Int = cores) -> [JobType: Int] {
        [.transcode: 1, .thumbnail: cores, .preview: cores, .metadata: 2 * cores]
    }

    /// Creates a configuration with the documented defaults.
    public init(database: DatabaseConfiguration = DatabaseConfiguration(), storage: StorageLayout? = nil) {
        self.database = database
        self.storage = storage
        self.types = nil
        self.concurrency = 2 * WorkerConfiguration.cores
        self.perTypeLimits = WorkerConfiguration.defaultPerTypeLimits()
        self.instance = "0"
        self.lease = .seconds(30)
        self.heartbeatInterval = .seconds(5)
        self.pollInterval = .seconds(5)
        self.rescueInterval = .seconds(5)
        self.gracePeriod = .seconds(30)
        self.listen = true
        self.drain = false
        self.retryPolicy = RetryPolicy()
        self.maxLostAlone = 2
        self.jobTimeout = nil
        self.logLevel = .info
    }

    /// Checks the values against each other.
    /// - Throws: ``WorkerConfigurationError`` naming the option.
    public func validate() throws(WorkerConfigurationError) {
        guard concurrency >= 1 else { throw WorkerConfigurationError("--concurrency must be at least 1 (got \(concurrency)).") }
        guard heartbeatInterval > .zero, lease > heartbeatInterval else {
            throw WorkerConfigurationError("--lease (\(lease.seconds) s) must be longer than --heartbeat (\(heartbeatInterval.seconds) s), or every lease would expire between two heartbeats.")
        }
        guard pollInterval > .zero else { throw WorkerConfigurationError("--poll-interval must be positive.") }
        guard gracePeriod >= .zero else { throw WorkerConfigurationError("--grace-period must not be negative.") }
        guard maxLostAlone >= 1 else { throw WorkerConfigurationError("--max-lost must be at least 1.") }
    }
}

/// A configuration value that cannot work.
public struct WorkerConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
