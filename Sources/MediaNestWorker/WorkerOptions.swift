public import ArgumentParser

/// The options of `run`, shared by `medianest-worker run` and `medianest-testworker run`
/// (`@OptionGroup var options: WorkerOptions`).
///
/// Every option is optional with no ArgumentParser default: a default here would always win
/// over the environment and the configuration file (swift-configuration's guide "Integrating
/// with Swift Argument Parser"). The defaults live in ``WorkerConfiguration/init(database:storage:)``
/// and the precedence in ``WorkerConfigurationLoader``.
///
/// Adding an option: declare it here, and add its row to ``WorkerSettings/all`` (file key,
/// environment variable, how it applies); the file, the environment, `config show` and the README
/// table then know it too.
public struct WorkerOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "Configuration file (default: $MEDIANEST_CONFIG, else /etc/medianest/worker.yaml if it exists).")
    var configFile: String?
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
    @Option(help: "Wall-clock limit for one run of a job, in seconds (default: none; metadata 600).")
    var jobTimeout: Double?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default: info).")
    var logLevel: String?
    @Option(help: "auto, journald, text or json (default: auto: journald under systemd, text on a terminal).")
    var logFormat: String?
    @Option(help: "Where thumbnails, previews and renditions are written; must lie inside the storage root (default: $MEDIANEST_DERIVED_ROOT, else <storage root>/.derived).")
    var derivedRoot: String?
    @Option(help: "Wall-clock limits per job type as type=seconds pairs, such as thumbnail=60,preview=300 (default: thumbnail 60, preview 300 for its trickplay sheets; they win over --job-timeout).")
    var typeTimeouts: String?
    @Option(help: "Largest input file in bytes (default: 68719476736, 64 GiB).")
    var maxInputBytes: Int?
    @Option(help: "Largest frame in pixels (default: 100000000).")
    var maxPixels: Int?
    @Option(help: "Longest media duration in seconds (default: 86400).")
    var maxDuration: Double?
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
    @Option(help: "Colour space of thumbnails and previews: srgb, or p3 to keep Display P3 (profile embedded) where the source is wider (default: srgb).")
    var stillsColorspace: String?
    @Option(help: "When transcode jobs make a rendition: required (only when the source does not play in browsers), optimal (also when larger than the target), always or never (default: required).")
    var transcodeMode: String?
    @Option(help: "Rendition video codec: h264 (libx264), hevc (libx265) or av1 (libsvtav1) (default: h264).")
    var transcodeCodec: String?
    @Option(help: "Rendition constant rate factor, 0-63 (default: 23).")
    var transcodeCrf: String?
    @Option(help: "Encoder preset (default: veryfast).")
    var transcodePreset: String?
    @Option(help: "Largest short edge of a rendition in pixels; never upscaled (default: 1080).")
    var transcodeMaxResolution: String?
    @Option(help: "Peak rendition video bit rate in bits per second (default: none, pure CRF).")
    var transcodeMaxBitrate: String?
    @Option(help: "Frames between keyframes (default: the encoder's).")
    var transcodeKeyframeInterval: String?
    @Option(help: "Encoder and decoder threads per transcode (default: the cores).")
    var transcodeThreads: String?
    @Option(help: "Time limit of a transcode: this many seconds plus --transcode-timeout-factor × the media duration (default: 120).")
    var transcodeTimeoutBase: String?
    @Option(help: "Seconds of time limit per second of media (default: 4).")
    var transcodeTimeoutFactor: String?
    @Flag(help: "Keep location tags in renditions (stripped by default).")
    var transcodeKeepLocation = false
    @Option(help: "Where /metrics, /healthz and /readyz listen, host:port or off (default: 127.0.0.1:9464, or 127.0.0.1:(9464 + N) with a numeric --instance N).")
    var metricsAddress: String?
    @Option(help: "Memory the jobs may hold at once, by their estimates: bytes or a size such as 1536M or 2G, auto (the cgroup's memory.max less 96 MiB; none without a limit) or none (default: auto).")
    var memoryBudget: String?
    @Option(help: "Run maintenance (audit partitions, retention) inside the worker every this many seconds, or off (default: off; medianest-maintenance.timer runs it).")
    var maintenanceInterval: String?

    public init() {}

    /// The configuration file named on the command line, if any.
    public var configurationFile: String? { configFile }
}
