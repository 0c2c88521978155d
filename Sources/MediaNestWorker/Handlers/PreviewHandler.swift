public import MediaNestCore
public import MediaNestMedia
public import MediaNestQueue

/// Runs the `preview` job: a large picture of the item (default JPEG, quality 80, 1440 px on the
/// long edge), upright and in sRGB, written atomically under the derived root.
///
/// Sets `media_items.preview_path` (relative to the storage root). When the thumbnail is also due
/// it is made from the same decode (see docs/THUMBNAILS.md).
public struct PreviewHandler: JobHandler {
    /// Always ``JobType/preview``.
    public let jobType: JobType = .preview
    /// Output sizes, formats and decoder threads.
    public var settings: StillImageSettings
    /// The limits applied to every file.
    public var limits: MediaLimits

    /// Creates the handler.
    /// - Parameters:
    ///   - settings: Output sizes, formats and decoder threads.
    ///   - limits: Size, pixel and time limits.
    public init(settings: StillImageSettings = StillImageSettings(), limits: MediaLimits = .default) {
        self.settings = settings
        self.limits = limits
    }

    /// Makes the preview (and the thumbnail too when it is missing or stale).
    /// - Parameter context: The job, its media item, storage paths, progress, cancellation, logger.
    /// - Returns: `output_data` describing the file written and the item's new `preview_path`.
    /// - Throws: ``JobError`` from the decoders, the encoder or the writer.
    public func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        // LEAD: for video sources, Trickplay.build(...) here, its manifest into output_data["trickplay"].
        try StillJob(kind: .preview, settings: settings, limits: limits).run(context)
    }
}
