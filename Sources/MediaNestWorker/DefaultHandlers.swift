import MediaNestQueue

extension HandlerRegistry {
    /// The handlers the production `medianest-worker run` registers: the one place where job
    /// types are wired to their implementations.
    ///
    /// The metadata handler is registered by the lead when merged (it lives on the media branch,
    /// as `MetadataHandler` in `Handlers/MetadataHandler.swift`); thumbnail, preview and
    /// transcode follow the same way as they are written.
    /// - Parameter configuration: The worker's configuration (storage root and limits).
    /// - Returns: The registry; empty until the first handler is added here.
    public static func production(for configuration: WorkerConfiguration) -> HandlerRegistry {
        let registry = HandlerRegistry()
        _ = configuration
        return registry
    }
}
