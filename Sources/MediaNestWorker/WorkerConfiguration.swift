import Foundation
public import Logging
public import MediaNestDB
public import MediaNestMedia
public import MediaNestMetrics
public import MediaNestQueue
public import MediaNestMedia
public import MediaNestSystemd

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
    /// The poll when the worker does not LISTEN (`--no-listen`) or while its LISTEN connection
    /// is down (jittered ±20 %).
    public var pollInterval: Duration
    /// The safety-net poll while LISTEN is healthy (jittered ±20 %). Notifications wake the
    /// worker for every enqueue, retry, release and rescue, and the worker wakes itself when a
    /// retry it scheduled comes due, so this poll only catches what no one announced.
    public var listenPollInterval: Duration
    /// How often expired leases are looked for (lease/2, so a crashed worker's jobs are back
    /// within about one lease after their last heartbeat).
    public var rescueInterval: Duration
    /// How often the worker refreshes its `processing_workers` row (also when idle).
    public var registryInterval: Duration
    /// How long a transient conflict on a result write (SQLSTATE class 40, `55P03`) is retried
    /// before the write is given up; the job's lease then expires and it is rescued.
    public var resultWriteRetryWindow: Duration
    /// The writer connection's `lock_timeout`: a result write waiting this long for a row lock
    /// fails with `55P03` and is retried later, so that it does not hold up the writes behind it.
    /// `nil` leaves the server's setting.
    public var resultLockTimeout: Duration?
    /// The time-to-live of the worker's `processing_workers` row: a few refreshes, so that a live
    /// worker never looks dead between two of them, and never shorter than a lease.
    public var registryTTL: Duration { max(lease, registryInterval * 3) }
    /// How long after sending a claim or a heartbeat the database answered the run may rely on
    /// its lease without hearing from the database again: three quarters of the lease, so that
    /// a run paused or cut off for longer stops (``StopReason/leaseLost``) before any other
    /// worker can have rescued its job, and never commits an output over the rescuer's.
    public var ownedLease: Duration { lease * 0.75 }
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
    /// How log lines are written (`--log-format`): journald prefixes under systemd, text on a
    /// terminal, or JSON lines.
    public var logFormat: LoggingFormat = .auto
    /// Thumbnail and preview outputs (sizes, formats, quality, decoder threads).
    public var stills = StillImageSettings()
    /// Wall-clock limits per job type (`--type-timeouts`); they win over ``jobTimeout``.
    public var typeTimeouts: [JobType: Duration] = [:]
    /// Input limits of the media jobs (size, pixels, duration); the timeout comes from
    /// ``timeout(for:)``.
    public var mediaLimits = MediaLimits.default
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`--metrics-address`, `metrics.listen`).
    public var metricsListen = MetricsListen.automatic
    /// How often the worker runs maintenance itself (``MaintenanceService``: audit partitions,
    /// retention; one host at a time through the advisory lock), or `nil` (the default): the
    /// `medianest-maintenance.timer` unit runs `medianest-worker maintenance` instead.
    public var maintenanceInterval: Duration?
    /// The configuration file read, if any (for messages).
    public var configurationFile: String?
    /// The file holding the database password (`database.password_file`), read at load time.
    public var passwordFile: String?

    /// The address metrics are served on, or `nil` when they are off.
    public var metricsAddress: MetricsListenAddress? {
        switch metricsListen {
        case .automatic: MetricsListenAddress.default(instance: instance)
        case .configured(let address): address
        }
    }

    /// Whether the metrics address was configured or follows the instance.
    public enum MetricsListen: Sendable, Hashable {
        /// `127.0.0.1:9464`, plus the instance number for a numeric instance.
        case automatic
        /// Configured; `nil` is `off`.
        case configured(MetricsListenAddress?)
    }

    // Loader state: how the storage root was given (for messages), and the derived root with its
    // name, applied once the storage root is known whatever the order of the sources.
    var storageRootSource: String?
    var derivedRoot: (path: String, name: String)?

    /// Built-in limits for types whose work is bounded whatever the input (a thumbnail or preview
    /// decodes at most one reduced picture); used when neither ``typeTimeouts`` nor ``jobTimeout``
    /// names the type. Transcode has none: its time depends on the duration.
    public static let defaultTypeTimeouts: [JobType: Duration] = [.thumbnail: .seconds(60), .preview: .seconds(300)]

    /// The wall-clock limit of one run of a job of `type`: `--type-timeouts`, else
    /// `--job-timeout`, else ``defaultTypeTimeouts``, else none.
    ///
    /// Transcode is the exception: its handler scales its own limit with the media's duration
    /// (`--transcode-timeout-base` + factor × duration), so a global `--job-timeout` sized for
    /// photos does not kill a two-hour film; only `--type-timeouts transcode=…` caps it here.
    public func timeout(for type: JobType) -> Duration? {
        if type == .transcode { return typeTimeouts[type] }
        return typeTimeouts[type] ?? jobTimeout ?? WorkerConfiguration.defaultTypeTimeouts[type]
    }
    /// The transcode policy and encoder settings (`--transcode-*`).
    public var transcode = TranscodeSettings()
    /// The memory the jobs of this worker may hold at once (`--memory-budget`): by default the
    /// cgroup's limit less what the idle worker holds, unbounded without one. See ``MemoryBudget``.
    public var memoryBudget = MemoryBudgetSetting.automatic

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
        self.listenPollInterval = .seconds(30)
        self.rescueInterval = .seconds(15)
        self.registryInterval = .seconds(30)
        self.resultWriteRetryWindow = .seconds(10)
        self.resultLockTimeout = .seconds(2)
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
        guard listenPollInterval > .zero else { throw WorkerConfigurationError("--listen-poll-interval must be positive.") }
        guard gracePeriod >= .zero else { throw WorkerConfigurationError("--grace-period must not be negative.") }
        guard maxLostAlone >= 1 else { throw WorkerConfigurationError("--max-lost must be at least 1.") }
        if let maintenanceInterval, maintenanceInterval < .seconds(1) {
            throw WorkerConfigurationError("--maintenance-interval must be at least 1 second, or off (got \(maintenanceInterval.seconds) s).")
        }
        try stills.validate()
        if let storage, storage.derivedRootRelativeToStorage == nil {
            throw WorkerConfigurationError("--derived-root (\(storage.derivedRoot)) must lie inside the storage root (\(storage.root)): thumbnail_path and preview_path are stored relative to the storage root.")
        }
    }
}

/// A configuration value that cannot work.
public struct WorkerConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
