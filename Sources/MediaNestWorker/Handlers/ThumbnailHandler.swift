public import MediaNestCore
public import MediaNestMedia
public import MediaNestQueue

/// Runs the `thumbnail` job: a small picture of the item (default WebP, quality 80, 320 px on
/// the long edge), upright and in sRGB, written atomically under the derived root.
///
/// Sets `media_items.thumbnail_path` (relative to the storage root) and the ThumbHash placeholder
/// in `media_items.metadata.thumbhash`. This handler runs a thumbnail job claimed alone and makes
/// only the thumbnail; an item's thumbnail and preview jobs claimed together run in
/// ``StillJobsHandler``, from one decode (see docs/THUMBNAILS.md).
public struct ThumbnailHandler: JobHandler {
    /// Always ``JobType/thumbnail``.
    public let jobType: JobType = .thumbnail
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

    /// Makes the thumbnail, decoding at its own size.
    /// - Parameter context: The job, its media item, storage paths, progress, cancellation, logger.
    /// - Returns: `output_data` describing the file written (path, width, height, format, bytes,
    ///   source kind) and the item's new `thumbnail_path`.
    /// - Throws: ``JobError`` from the decoders, the encoder or the writer.
    public func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        try StillJob(settings: settings, limits: [.thumbnail: limits]).run(.thumbnail, context)
    }
}
