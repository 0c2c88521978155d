import Logging
import MediaNestMedia
import MediaNestQueue

extension HandlerRegistry {
    /// The handlers the production `medianest-worker run` registers: the one place where job
    /// types are wired to their implementations.
    ///
    /// Handlers that read media need the storage root, so they are registered only when
    /// one is configured; without one the runtime refuses to start and says so.
    /// Thumbnail, preview and transcode handlers are added here as they are written.
    /// - Parameter configuration: The worker's configuration (storage root and limits).
    /// - Returns: The registry.
    public static func production(for configuration: WorkerConfiguration) -> HandlerRegistry {
        var registry = HandlerRegistry()
        guard configuration.storage != nil else { return registry }
        var limits = configuration.mediaLimits
        if let jobTimeout = configuration.jobTimeout { limits.timeout = jobTimeout }
        registry.register(MetadataHandler(limits: limits, transcodeSettings: configuration.transcode))
        registerStillHandlers(in: &registry, configuration: configuration)
        // Transcode jobs need the target video encoder and AAC; without them the type is not
        // served (its jobs wait for a worker that has them) and one line says why.
        let encoders = Transcoder.encodersAvailable(configuration.transcode)
        if encoders.available {
            registry.register(TranscodeHandler(settings: configuration.transcode, limits: limits))
        } else {
            Logger(label: "medianest.worker").warning("transcode jobs are not served: this FFmpeg has no \(encoders.missing.joined(separator: " or ")) encoder")
        }
        return registry
    }
}

extension HandlerRegistry {
    /// Registers the thumbnail and preview handlers whose encoder this FFmpeg build has; a type
    /// whose encoder is missing is not served (its jobs wait for a worker that has it), and one
    /// log line says why. When both are served (and ``StillImageSettings/oneDecode`` is on), also
    /// ``StillJobsHandler``: the engine then claims an item's pending thumbnail and preview jobs
    /// together and runs them from one decode.
    public static func registerStillHandlers(in registry: inout HandlerRegistry, configuration: WorkerConfiguration,
                                      encoderAvailable: (ImageFormat) -> Bool = ImageEncoder.isAvailable,
                                      logger: Logger = Logger(label: "medianest.worker")) {
        var limitsByType: [JobType: MediaLimits] = [:]
        for kind in StillKind.allCases {
            let type: JobType = kind == .thumbnail ? .thumbnail : .preview
            var limits = configuration.mediaLimits
            if let timeout = configuration.timeout(for: type) { limits.timeout = timeout }
            let format = configuration.stills.settings(for: kind).format
            guard encoderAvailable(format) else {
                logger.warning("not serving \(type) jobs: this FFmpeg build has no \(format.rawValue) encoder (\(format.encoderName))")
                continue
            }
            limitsByType[type] = limits
            switch kind {
            case .thumbnail: registry.register(ThumbnailHandler(settings: configuration.stills, limits: limits))
            case .preview: registry.register(PreviewHandler(settings: configuration.stills, limits: limits))
            }
        }
        if configuration.stills.oneDecode, limitsByType.count == 2 {
            registry.register(StillJobsHandler(settings: configuration.stills, limits: limitsByType))
        }
    }
}
