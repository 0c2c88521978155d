public import MediaNestCore
public import MediaNestMedia
public import MediaNestQueue
import Foundation
import Logging

/// Runs the `transcode` job: makes a web-playable rendition of the item's video or audio, or
/// records why none is needed.
///
/// The decision is ``TranscodePolicy/decide(_:settings:)`` over the probe; the work is
/// ``TranscodeJob/run(output:progress:logger:)`` on the same open input, into
/// `renditions/<name>.mp4|m4a` of the item's derived directory (temporary file, fsync, rename).
/// The rendition is described in `media_items.processing_info.renditions[]` (path relative to
/// the storage root, container, codecs, width, height, bitrate, size, duration) and in the job's
/// `output_data`. The time limit scales with the duration
/// (``TranscodeSettings/timeout(forDuration:)``), on top of the engine's own `--job-timeout`.
public struct TranscodeHandler: JobHandler {
    /// Always ``JobType/transcode``.
    public let jobType: JobType = .transcode
    /// The policy and encoder settings.
    public var settings: TranscodeSettings
    /// Input limits; the timeout is replaced by the duration-scaled one for the encode.
    public var limits: MediaLimits

    /// Creates the handler.
    public init(settings: TranscodeSettings = TranscodeSettings(), limits: MediaLimits = .default) {
        self.settings = settings
        self.limits = limits
    }

    /// Decides and, when needed, transcodes or remuxes.
    /// - Throws: ``JobError``: `corrupt_media`, `unsupported_format`, `io_error`, `disk_full`,
    ///   `path_outside_storage`, or the stop's code.
    public func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        let item = context.mediaItem
        let file = try SafeFile.open(relativePath: item.storagePath, in: context.storage.root, limits: limits, countingInto: context.bytesRead)
        context.progress.report(stage: "probing")
        let job = try FFmpegLog.withJobLogger(context.logger) { () throws(JobError) in
            try TranscodeJob(file, settings: settings, limits: limits, cancellation: context.cancellation)
        }
        let (probe, decision) = (job.probe, job.decision)
        var output: [String: JSONValue] = [
            "action": .string(decision.action.rawValue),
            "reason": .string(decision.reason),
        ]
        var update = MediaItemUpdate()
        let components = try DerivedLayout.itemComponents(mediaItemID: item.id) + ["renditions"]
        guard decision.action != .none else {
            context.logger.info("no rendition needed: \(decision.reason)")
            // A rendition an earlier policy made is stale now; an item that never had one gets no
            // empty directories.
            if FileManager.default.fileExists(atPath: context.storage.derivedRoot + "/" + components.joined(separator: "/")) {
                let directory = try DerivedDirectory.open(derivedRoot: context.storage.derivedRoot, components: components)
                for ext in ["mp4", "m4a"] { directory.remove(named: "\(settings.renditionName).\(ext)") }
            }
            output["rendition_needed"] = false
            update.processingInfoMerge = ["renditions": .array([])]
            return JobOutcome(output: .object(output), itemUpdate: update)
        }
        guard decision.action == .remux || Transcoder.encodersAvailable(settings).available else {
            throw JobError(.unsupportedFormat, "The encoders \(Transcoder.encodersAvailable(settings).missing.joined(separator: ", ")) are missing from this FFmpeg build.", retryable: false)
        }
        let directory = try DerivedDirectory.open(derivedRoot: context.storage.derivedRoot, components: components, writtenBy: context.job.type.rawValue)
        directory.removeTemporariesOfEarlierRuns()
        _ = directory.removeStaleTemporaries(olderThan: .seconds(24 * 3600))
        let name = "\(settings.renditionName).\(decision.container.fileExtension)"
        let pending = try directory.createOutput(named: name)
        context.logger.info("\(decision.action.rawValue): \(decision.reason)", metadata: ["duration": "\(probe.duration ?? 0)"])
        let result = try job.run(output: pending, progress: context.progress, logger: context.logger)
        try context.cancellation.check()
        try pending.commit()
        // The other container's file (an audio-only source that became a video, or the reverse) is stale.
        for ext in ["mp4", "m4a"] where ext != decision.container.fileExtension { directory.remove(named: "\(settings.renditionName).\(ext)") }

        let relative = "renditions/" + name
        let derivedRelative = (try DerivedLayout.itemComponents(mediaItemID: item.id)).joined(separator: "/") + "/" + relative
        guard let storagePath = context.storage.storageRelativePath(ofDerived: derivedRelative) else {
            throw JobError(.pathOutsideStorage, "The derived root \(context.storage.derivedRoot) is outside the storage root \(context.storage.root); rendition paths must be relative to the storage root.", retryable: false)
        }
        var rendition = result.json
        rendition["name"] = .string(settings.renditionName)
        rendition["path"] = .string(storagePath)
        output["rendition_needed"] = true
        output["rendition"] = .object(rendition)
        output["skipped_packets"] = .int(Int64(result.skippedPackets))
        output["elapsed"] = .double((result.elapsed * 1000).rounded() / 1000)
        if !decision.droppedStreams.isEmpty { output["dropped_streams"] = .array(decision.droppedStreams.map { .int(Int64($0)) }) }
        update.processingInfoMerge = ["renditions": .array([.object(rendition)])]
        return JobOutcome(output: .object(output), itemUpdate: update)
    }
}
