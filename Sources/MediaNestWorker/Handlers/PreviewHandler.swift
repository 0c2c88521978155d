public import MediaNestCore
public import MediaNestMedia
public import MediaNestQueue

/// Runs the `preview` job: a large picture of the item (default JPEG, quality 80, 1440 px on the
/// long edge), upright and in sRGB, written atomically under the derived root.
///
/// Sets `media_items.preview_path` (relative to the storage root). This handler runs a preview job
/// claimed alone and makes only the preview; an item's thumbnail and preview jobs claimed together
/// run in ``StillJobsHandler``, from one decode (see docs/THUMBNAILS.md).
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

    /// Makes the preview, decoding at its own size, and a video's trickplay sheets.
    /// - Parameter context: The job, its media item, storage paths, progress, cancellation, logger.
    /// - Returns: `output_data` describing the file written and the item's new `preview_path`.
    /// - Throws: ``JobError`` from the decoders, the encoder or the writer.
    public func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        var outcome = try StillJob(settings: settings, limits: [.preview: limits]).run(.preview, context)
        try PreviewHandler.addTrickplay(to: &outcome, context: context, settings: settings, limits: limits)
        return outcome
    }

    /// Adds a video's trickplay sheets to a preview job's outcome; does nothing for other sources
    /// or when trickplay is off.
    static func addTrickplay(to outcome: inout JobOutcome, context: JobContext, settings: StillImageSettings,
                             limits: MediaLimits) throws(JobError) {
        guard outcome.output["source_kind"] == "video", settings.trickplay.enabled else { return }
        // Scrub previews for players: a keyframe every interval, tiled into JPEG sheets, described
        // in processing_info.trickplay with paths relative to the storage root like every other
        // derived file.
        let item = context.mediaItem
        let file = try SafeFile.open(relativePath: item.storagePath, in: context.storage.root, limits: limits, countingInto: context.bytesRead)
        let directory = try DerivedDirectory.forMediaItem(item.id, derivedRoot: context.storage.derivedRoot, subdirectory: "trickplay",
                                                          writtenBy: context.job.type.rawValue)
        directory.removeTemporariesOfEarlierRuns()
        _ = directory.removeStaleTemporaries(olderThan: .seconds(3600))
        let trickplay = settings.trickplay
        let logger = context.logger
        let manifest = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> TrickplayManifest in
            try Trickplay.build(file: file, limits: limits, into: directory, interval: trickplay.interval, tileWidth: trickplay.tileWidth,
                                columns: trickplay.columns, rows: trickplay.rows, quality: trickplay.quality,
                                progress: context.progress, cancellation: context.cancellation, logger: logger,
                                threads: settings.decoderThreads)
        }
        var json = manifest.json.objectValue ?? [:]
        var sheets: [JSONValue] = []
        for sheet in manifest.sheets {
            guard let path = context.storage.storageRelativePath(ofDerived: sheet) else {
                throw JobError(.internalError, "The derived root is not inside the storage root.", retryable: false)
            }
            sheets.append(.string(path))
        }
        json["sheets"] = .array(sheets)
        outcome.output["trickplay"] = .object(json)
        outcome.itemUpdate.processingInfoMerge["trickplay"] = .object(json)
    }
}
