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
        var limits = MediaLimits.default
        if let jobTimeout = configuration.jobTimeout { limits.timeout = jobTimeout }
        registry.register(MetadataHandler(limits: limits))
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
