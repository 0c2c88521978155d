import Foundation
import Logging
import MediaNestDB
import MediaNestMedia
import MediaNestMetrics
import MediaNestQueue
import MediaNestSystemd

/// One value as it was given (a flag, an environment variable or a file key), with the name to
/// use when it is wrong.
struct SettingValue {
    /// The text given.
    var text: String
    /// How to name it in a message: `--lease`, `MEDIANEST_LEASE`, `queue.lease in /etc/….yaml`.
    var name: String
    /// For per-type settings, the job type this value is for.
    var jobType: JobType?

    func integer(minimum: Int = 1) throws(WorkerConfigurationError) -> Int {
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= minimum else {
            throw WorkerConfigurationError("\(name) must be a whole number of at least \(minimum) (got \(text)).")
        }
        return value
    }

    func seconds() throws(WorkerConfigurationError) -> Duration {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0 else {
            throw WorkerConfigurationError("\(name) must be a number of seconds, such as 5 or 0.5 (got \(text)).")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// A duration in seconds, as ``seconds()``, or `off` (also `false`, `no`, `none`) for `nil`.
    func secondsOrOff() throws(WorkerConfigurationError) -> Duration? {
        if ["off", "false", "no", "none"].contains(text.trimmingCharacters(in: .whitespaces).lowercased()) { return nil }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0 else {
            throw WorkerConfigurationError("\(name) must be a number of seconds, such as 86400, or off (got \(text)).")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    func boolean() throws(WorkerConfigurationError) -> Bool {
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw WorkerConfigurationError("\(name) must be true or false (got \(text)).")
        }
    }

    func imageFormat() throws(WorkerConfigurationError) -> ImageFormat {
        let lowered = text.lowercased()
        guard let format = ImageFormat(rawValue: lowered == "jpg" ? "jpeg" : lowered) else {
            throw WorkerConfigurationError("\(name) must be webp, jpeg or png (got \(text)).")
        }
        return format
    }
}

/// One setting of `run`: its configuration-file key, its flag, its environment variables, and
/// how a value applies to a ``WorkerConfiguration``. ``WorkerSettings/all`` is the one list
/// that the loader, unknown-key detection, `config show` and the README table follow.
struct WorkerSetting: Sendable {
    /// The file key, dot-separated (`queue.lease`). Per-type settings take `key.<type>`.
    let key: String
    /// The command-line flag, if any.
    let flag: String?
    /// Environment variables, first found wins.
    let environment: [String]
    /// Whether values are per job type (`key.thumbnail: 2` in the file, `thumbnail=2,...` as a
    /// flag or in the environment).
    let perJobType: Bool
    /// Never printed: `config show` masks it.
    let secret: Bool
    /// The documented default, for `config show` and the README.
    let defaultText: String
    /// The flag's value, as text, when it was given.
    let given: @Sendable (WorkerOptions) -> String?
    /// Applies one value (one per job type for per-type settings).
    let apply: @Sendable (inout WorkerConfiguration, SettingValue) throws -> Void
    /// The effective value, for `config show` (per-type settings get the type).
    let current: @Sendable (WorkerConfiguration, JobType?) -> String?

    init(_ key: String, flag: String?, env: [String]? = nil, perJobType: Bool = false, secret: Bool = false, default defaultText: String,
         given: @escaping @Sendable (WorkerOptions) -> String?,
         apply: @escaping @Sendable (inout WorkerConfiguration, SettingValue) throws -> Void,
         current: @escaping @Sendable (WorkerConfiguration, JobType?) -> String?) {
        self.key = key
        self.flag = flag
        // MEDIANEST_ + the flag in upper snake case, unless named otherwise.
        self.environment = env ?? flag.map { ["MEDIANEST_" + $0.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")] } ?? []
        self.perJobType = perJobType
        self.secret = secret
        self.defaultText = defaultText
        self.given = given
        self.apply = apply
        self.current = current
    }

    /// Every concrete file key: `key`, or `key.<type>` for each job type.
    var concreteKeys: [String] { perJobType ? JobType.all.map { "\(key).\($0.rawValue)" } : [key] }
}

/// Formats a duration in seconds the way the options take it (`30`, `0.5`).
private func secondsText(_ duration: Duration?) -> String? {
    guard let duration else { return nil }
    let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    return value == value.rounded() ? String(Int64(value)) : String(value)
}

private func text<T: CustomStringConvertible>(_ value: T?) -> String? { value.map { $0.description } }

enum WorkerSettings {
    /// Every setting of `run`, in the order of the example file.
    static let all: [WorkerSetting] = [
        // MARK: database
        WorkerSetting("database.url", flag: "--database-url", env: ["DATABASE_URL"], default: "libpq's defaults (PGHOST, PGUSER, PGDATABASE, ~/.pgpass, PGSERVICE)",
                      given: { $0.databaseURL },
                      apply: { c, v in c.database.connectionString = v.text },
                      current: { c, _ in c.database.connectionString.isEmpty ? nil : DatabaseConfiguration.redactingPasswords(in: c.database.connectionString) }),
        WorkerSetting("database.password", flag: nil, env: ["MEDIANEST_DATABASE_PASSWORD"], secret: true,
                      default: "none (the URL, PGPASSWORD or ~/.pgpass)",
                      given: { _ in nil },
                      apply: { c, v in c.database = c.database.with("password", v.text) },
                      current: { c, _ in c.database.overrides["password"] == nil ? nil : "********" }),
        WorkerSetting("database.password_file", flag: nil, env: ["MEDIANEST_DATABASE_PASSWORD_FILE"], default: "none",
                      given: { _ in nil },
                      apply: { c, v in c.passwordFile = v.text },  // read by the loader, after the sources above
                      current: { c, _ in c.passwordFile }),
        WorkerSetting("database.listen", flag: "--no-listen", env: ["MEDIANEST_LISTEN"], default: "true",
                      given: { $0.noListen ? "false" : nil },
                      apply: { c, v in c.listen = try v.boolean() },
                      current: { c, _ in String(c.listen) }),
        // MARK: storage
        WorkerSetting("storage.root", flag: "--storage-root", default: "none (required by run)",
                      given: { $0.storageRoot },
                      apply: { c, v in c.storage = v.text.isEmpty ? nil : StorageLayout(root: v.text); c.storageRootSource = v.name },
                      current: { c, _ in c.storage?.root }),
        WorkerSetting("storage.derived_root", flag: "--derived-root", default: "<storage root>/.derived",
                      given: { $0.derivedRoot },
                      apply: { c, v in c.derivedRoot = v.text.isEmpty ? nil : (v.text, v.name) },  // needs the root: applied by the loader
                      current: { c, _ in c.storage?.derivedRoot }),
        // MARK: worker
        WorkerSetting("worker.instance", flag: "--instance", default: "0",
                      given: { $0.instance },
                      apply: { c, v in c.instance = v.text },
                      current: { c, _ in c.instance }),
        WorkerSetting("worker.types", flag: "--types", default: "every type this build has a handler for",
                      given: { $0.types },
                      apply: { c, v in
                          let parsed = v.text.split(separator: ",").map { JobType(String($0).trimmingCharacters(in: .whitespaces)) }
                          let unknown = parsed.filter { !JobType.all.contains($0) }
                          guard !parsed.isEmpty, unknown.isEmpty else {
                              throw WorkerConfigurationError("\(v.name): unknown job type \(unknown.map(\.rawValue).joined(separator: ", ")); known: \(JobType.all.map(\.rawValue).joined(separator: ", ")).")
                          }
                          c.types = parsed
                      },
                      current: { c, _ in c.types?.map(\.rawValue).joined(separator: ",") }),
        WorkerSetting("worker.concurrency", flag: "--concurrency", default: "2 × cores",
                      given: { text($0.concurrency) },
                      apply: { c, v in c.concurrency = try v.integer() },
                      current: { c, _ in String(c.concurrency) }),
        WorkerSetting("worker.type_limits", flag: "--type-limits", perJobType: true, default: "transcode 1, thumbnail and preview = cores, metadata = 2 × cores",
                      given: { $0.typeLimits },
                      apply: { c, v in c.perTypeLimits[v.jobType!] = try v.integer() },
                      current: { c, type in text(c.perTypeLimits[type!]) }),
        WorkerSetting("worker.memory_budget", flag: "--memory-budget", default: "auto: the cgroup's memory.max less 96 MiB, none without a limit",
                      given: { $0.memoryBudget },
                      apply: { c, v in
                          guard let setting = MemoryBudgetSetting.parse(v.text) else {
                              throw WorkerConfigurationError("\(v.name) must be a size such as 1536M or 2G, a number of bytes, auto or none (got \(v.text)).")
                          }
                          c.memoryBudget = setting
                      },
                      current: { c, _ in c.memoryBudget.description }),
        // MARK: queue
        WorkerSetting("queue.lease", flag: "--lease", default: "30",
                      given: { text($0.lease) }, apply: { c, v in c.lease = try v.seconds() }, current: { c, _ in secondsText(c.lease) }),
        WorkerSetting("queue.heartbeat", flag: "--heartbeat", default: "5",
                      given: { text($0.heartbeat) }, apply: { c, v in c.heartbeatInterval = try v.seconds() }, current: { c, _ in secondsText(c.heartbeatInterval) }),
        WorkerSetting("queue.poll_interval", flag: "--poll-interval", default: "5",
                      given: { text($0.pollInterval) }, apply: { c, v in c.pollInterval = try v.seconds() }, current: { c, _ in secondsText(c.pollInterval) }),
        WorkerSetting("queue.listen_poll_interval", flag: "--listen-poll-interval", default: "30",
                      given: { text($0.listenPollInterval) }, apply: { c, v in c.listenPollInterval = try v.seconds() }, current: { c, _ in secondsText(c.listenPollInterval) }),
        WorkerSetting("queue.grace_period", flag: "--grace-period", default: "30",
                      given: { text($0.gracePeriod) }, apply: { c, v in c.gracePeriod = try v.seconds() }, current: { c, _ in secondsText(c.gracePeriod) }),
        WorkerSetting("queue.max_attempts", flag: "--max-attempts", default: "each job's max_attempts (5)",
                      given: { text($0.maxAttempts) }, apply: { c, v in c.retryPolicy.maxAttemptsOverride = try v.integer() },
                      current: { c, _ in text(c.retryPolicy.maxAttemptsOverride) }),
        WorkerSetting("queue.max_lost", flag: "--max-lost", default: "2",
                      given: { text($0.maxLost) }, apply: { c, v in c.maxLostAlone = try v.integer() }, current: { c, _ in String(c.maxLostAlone) }),
        WorkerSetting("queue.retry_base", flag: "--retry-base", default: "10",
                      given: { text($0.retryBase) }, apply: { c, v in c.retryPolicy.baseDelay = try v.seconds() }, current: { c, _ in secondsText(c.retryPolicy.baseDelay) }),
        WorkerSetting("queue.retry_max", flag: "--retry-max", default: "3600",
                      given: { text($0.retryMax) }, apply: { c, v in c.retryPolicy.maximumDelay = try v.seconds() }, current: { c, _ in secondsText(c.retryPolicy.maximumDelay) }),
        // MARK: limits
        WorkerSetting("limits.job_timeout", flag: "--job-timeout", default: "none (metadata 600)",
                      given: { text($0.jobTimeout) }, apply: { c, v in c.jobTimeout = try v.seconds() }, current: { c, _ in secondsText(c.jobTimeout) }),
        WorkerSetting("limits.type_timeouts", flag: "--type-timeouts", perJobType: true, default: "thumbnail 60, preview 300",
                      given: { $0.typeTimeouts }, apply: { c, v in c.typeTimeouts[v.jobType!] = try v.seconds() },
                      current: { c, type in secondsText(c.typeTimeouts[type!] ?? WorkerConfiguration.defaultTypeTimeouts[type!]) }),
        WorkerSetting("limits.max_input_bytes", flag: "--max-input-bytes", default: "68719476736 (64 GiB)",
                      given: { text($0.maxInputBytes) }, apply: { c, v in c.mediaLimits.maxInputBytes = Int64(try v.integer()) },
                      current: { c, _ in String(c.mediaLimits.maxInputBytes) }),
        WorkerSetting("limits.max_pixels", flag: "--max-pixels", default: "100000000",
                      given: { text($0.maxPixels) }, apply: { c, v in c.mediaLimits.maxPixels = Int64(try v.integer()) },
                      current: { c, _ in String(c.mediaLimits.maxPixels) }),
        WorkerSetting("limits.max_duration", flag: "--max-duration", default: "86400",
                      given: { text($0.maxDuration) }, apply: { c, v in c.mediaLimits.maxDuration = try v.seconds() },
                      current: { c, _ in secondsText(c.mediaLimits.maxDuration) }),
        WorkerSetting("limits.decoder_threads", flag: "--decoder-threads", default: "1",
                      given: { text($0.decoderThreads) }, apply: { c, v in c.stills.decoderThreads = try v.integer() },
                      current: { c, _ in String(c.stills.decoderThreads) }),
        // MARK: thumbnail and preview
        WorkerSetting("thumbnail.size", flag: "--thumbnail-size", default: "320",
                      given: { text($0.thumbnailSize) }, apply: { c, v in c.stills.thumbnail.maxLongEdge = try v.integer() },
                      current: { c, _ in String(c.stills.thumbnail.maxLongEdge) }),
        WorkerSetting("thumbnail.format", flag: "--thumbnail-format", default: "webp",
                      given: { $0.thumbnailFormat }, apply: { c, v in c.stills.thumbnail.format = try v.imageFormat() },
                      current: { c, _ in c.stills.thumbnail.format.rawValue }),
        WorkerSetting("thumbnail.quality", flag: "--thumbnail-quality", default: "80",
                      given: { text($0.thumbnailQuality) }, apply: { c, v in c.stills.thumbnail.quality = try v.integer() },
                      current: { c, _ in String(c.stills.thumbnail.quality) }),
        WorkerSetting("preview.size", flag: "--preview-size", default: "1440",
                      given: { text($0.previewSize) }, apply: { c, v in c.stills.preview.maxLongEdge = try v.integer() },
                      current: { c, _ in String(c.stills.preview.maxLongEdge) }),
        WorkerSetting("preview.format", flag: "--preview-format", default: "jpeg",
                      given: { $0.previewFormat }, apply: { c, v in c.stills.preview.format = try v.imageFormat() },
                      current: { c, _ in c.stills.preview.format.rawValue }),
        WorkerSetting("preview.quality", flag: "--preview-quality", default: "80",
                      given: { text($0.previewQuality) }, apply: { c, v in c.stills.preview.quality = try v.integer() },
                      current: { c, _ in String(c.stills.preview.quality) }),
        WorkerSetting("stills.colorspace", flag: "--stills-colorspace", default: "srgb",
                      given: { $0.stillsColorspace },
                      apply: { c, v in
                          guard let space = StillColourSpace(rawValue: v.text.lowercased()) else {
                              throw WorkerConfigurationError("\(v.name) must be srgb or p3 (got \(v.text)).")
                          }
                          c.stills.colourSpace = space
                      },
                      current: { c, _ in c.stills.colourSpace.rawValue }),
    ] + transcodeSettings + [
        // MARK: metrics and logs
        WorkerSetting("metrics.listen", flag: "--metrics-address", env: ["MEDIANEST_METRICS_LISTEN"], default: "127.0.0.1:9464 (+ N for a numeric --instance N)",
                      given: { $0.metricsAddress },
                      apply: { c, v in
                          do { c.metricsListen = .configured(try MetricsListenAddress.parse(v.text)) } catch {
                              throw WorkerConfigurationError("\(v.name): \(error).")
                          }
                      },
                      current: { c, _ in c.metricsAddress?.description ?? "off" }),
        // MARK: maintenance
        WorkerSetting("maintenance.interval", flag: "--maintenance-interval", default: "off",
                      given: { $0.maintenanceInterval },
                      apply: { c, v in c.maintenanceInterval = try v.secondsOrOff() },
                      current: { c, _ in secondsText(c.maintenanceInterval) ?? "off" }),
        WorkerSetting("log.level", flag: "--log-level", default: "info",
                      given: { $0.logLevel },
                      apply: { c, v in
                          guard let level = Logger.Level(rawValue: v.text.lowercased()) else {
                              throw WorkerConfigurationError("\(v.name) must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")) (got \(v.text)).")
                          }
                          c.logLevel = level
                      },
                      current: { c, _ in c.logLevel.rawValue }),
        WorkerSetting("log.format", flag: "--log-format", default: "auto",
                      given: { $0.logFormat },
                      apply: { c, v in
                          guard let format = LoggingFormat(rawValue: v.text.lowercased()) else {
                              throw WorkerConfigurationError("\(v.name) must be one of \(LoggingFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \(v.text)).")
                          }
                          c.logFormat = format
                      },
                      current: { c, _ in c.logFormat.rawValue }),
    ]

    /// The `transcode.*` settings, one row per ``TranscodeOptions/keys`` entry: the flag is
    /// `--transcode-<key>` and the value goes through ``TranscodeOptions/apply(key:text:name:to:)``.
    static let transcodeSettings: [WorkerSetting] = {
        let given: [String: @Sendable (WorkerOptions) -> String?] = [
            "mode": { $0.transcodeMode }, "codec": { $0.transcodeCodec }, "crf": { $0.transcodeCrf },
            "preset": { $0.transcodePreset }, "max_resolution": { $0.transcodeMaxResolution },
            "max_bitrate": { $0.transcodeMaxBitrate }, "keyframe_interval": { $0.transcodeKeyframeInterval },
            "threads": { $0.transcodeThreads }, "timeout_base": { $0.transcodeTimeoutBase },
            "timeout_factor": { $0.transcodeTimeoutFactor }, "keep_location": { $0.transcodeKeepLocation ? "true" : nil },
        ]
        let defaults = ["mode": "required", "codec": "h264", "crf": "23", "preset": "veryfast", "max_resolution": "1080",
                        "max_bitrate": "none (pure CRF)", "keyframe_interval": "the encoder's", "threads": "the cores",
                        "timeout_base": "120", "timeout_factor": "4", "keep_location": "false"]
        return TranscodeOptions.keys.map { key in
            WorkerSetting("transcode.\(key)", flag: "--transcode-" + key.replacingOccurrences(of: "_", with: "-"),
                          default: defaults[key] ?? "",
                          given: given[key] ?? { _ in nil },
                          apply: { c, v in try TranscodeOptions.apply(key: key, text: v.text, name: v.name, to: &c.transcode) },
                          current: { c, _ in TranscodeOptions.current(key: key, of: c.transcode) })
        }
    }()

    /// File sections reserved for settings this build does not have yet; any key in them is
    /// refused with a sentence saying so rather than as a typo.
    static let reservedSections: [String: String] = [:]
}
