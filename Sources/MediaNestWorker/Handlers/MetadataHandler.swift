public import MediaNestCore
public import MediaNestMedia
public import MediaNestQueue
import Logging

/// Runs the `metadata` job: sniffs, probes and hashes the item's file and records the results.
///
/// The item's `media_items.metadata` gets the summary keys (schema: docs/METADATA.md), its
/// checksums are set, its `file_size` is corrected when the bytes read differ from the
/// recorded size, and the full probe is stored as the `media_metadata` row of provider `local`.
/// A declared MIME type that differs from the content is recorded (`mime_note`), not refused,
/// as long as the content is media; content that is not media fails with `mime_mismatch`.
///
/// A file that can be read but not used (`corrupt_media`, `unsupported_format`,
/// `mime_mismatch`) still has its checksums (and a corrected size) recorded in
/// ``MediaNestQueue/JobContext/salvage`` before the error is thrown; a file that changed while
/// it was read fails with `file_changed` and records nothing.
public struct MetadataHandler: JobHandler {
    /// Always ``JobType/metadata``.
    public let jobType: JobType = .metadata
    /// The limits applied to every file.
    public var limits: MediaLimits
    /// The transcode policy, which decides whether a motion photo's video needs a rendition.
    public var transcodeSettings: TranscodeSettings

    /// Creates the handler.
    /// - Parameters:
    ///   - limits: Size, pixel, duration and time limits.
    ///   - transcodeSettings: The transcode policy (for motion photos' videos).
    public init(limits: MediaLimits = .default, transcodeSettings: TranscodeSettings = TranscodeSettings()) {
        self.limits = limits
        self.transcodeSettings = transcodeSettings
    }

    /// Extracts the item's metadata.
    /// - Parameter context: The job, its media item, storage paths, progress, cancellation, logger.
    /// - Returns: A small summary as the job output, and the item changes described above.
    /// - Throws: ``JobError`` from ``MetadataExtractor/extract(root:relativePath:declaredMimeType:limits:computeChecksums:progress:cancellation:logger:salvage:readCounter:)``.
    public func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        let item = context.mediaItem
        let result = try MetadataExtractor.extract(
            root: context.storage.root, relativePath: item.storagePath, declaredMimeType: item.mimeType,
            limits: limits, computeChecksums: true, progress: context.progress,
            cancellation: context.cancellation, logger: context.logger,
            salvage: { checksums in
                var update = MediaItemUpdate()
                update.checksumMD5 = checksums.md5
                update.checksumSHA256 = checksums.sha256
                if item.fileSize != checksums.bytesRead { update.fileSize = checksums.bytesRead }
                context.salvage.record(update)
                context.logger.debug("recorded the checksums of a file that cannot be used")
            },
            readCounter: context.bytesRead)

        var output: [String: JSONValue] = [
            "mime_sniffed": .string(result.mimeSniffed),
            "size": .int(result.fileSize),
            "kind": .string(result.kind.rawValue),
        ]
        if let duration = result.duration { output["duration"] = .double((duration * 1000).rounded() / 1000) }
        if let width = result.width { output["width"] = .int(Int64(width)) }
        if let height = result.height { output["height"] = .int(Int64(height)) }
        if let checksums = result.checksums {
            output["md5"] = .string(checksums.md5)
            output["sha256"] = .string(checksums.sha256)
        }
        if !result.mimeDeclaredMatches {
            output["mime_note"] = .string("declared \(item.mimeType), content is \(result.mimeSniffed)")
        }

        var update = MediaItemUpdate()
        update.metadataMerge = result.summary
        update.checksumMD5 = result.checksums?.md5
        update.checksumSHA256 = result.checksums?.sha256
        if let recorded = item.fileSize, recorded != result.fileSize {
            context.logger.warning("file_size corrected from \(recorded) to \(result.fileSize)")
            update.fileSize = result.fileSize
        } else if item.fileSize == nil {
            // The schema allows uploads without a size; filling it in is routine, not a warning.
            context.logger.debug("file_size set to \(result.fileSize) (was NULL)")
            update.fileSize = result.fileSize
        }
        // A motion photo's video (MotionPhotoStep.swift); never fails the job for a bad video.
        if result.kind == .image, let motion = try MotionPhotoStep.run(context, limits: limits, transcodeSettings: transcodeSettings) {
            update.metadataMerge["motion_photo"] = motion
            output["motion_photo"] = .bool(motion.objectValue?["file"] != nil)
        }
        update.providerMetadata = [ProviderMetadata(provider: "local", data: result.fullProbe, confidence: 1.0)]
        // Half of a Live Photo: the engine pairs it with the other half in the same transaction.
        if let contentID = result.summary["live_photo"]?.objectValue?["content_id"]?.stringValue, result.kind != .audio {
            update.livePhoto = LivePhotoLink(contentID: contentID, role: result.kind == .video ? .motion : .still)
        }
        return JobOutcome(output: .object(output), itemUpdate: update)
    }
}
