import Foundation
public import Logging
public import MediaNestCore

/// Extracts the video of a motion photo into the item's derived directory and describes it for
/// `metadata.motion_photo`.
///
/// The video is located (``MotionPhotoLocator``), bounded (``maxVideoBytes``), copied through the
/// derived directory's safe writer (temporary file, fsync), probed from that temporary file by
/// ``MediaInput`` with the same demuxer allowlist as every upload, required to be an MP4 with a
/// video stream, and only then renamed into place as `motion-photo.mp4`. A video that cannot be
/// used leaves nothing behind, and the photo keeps its still: the record then says why, with a
/// stable code and a sentence.
public enum MotionPhotoExtraction {
    /// The file name of the extracted video in the item's derived directory.
    public static let fileName = "motion-photo.mp4"
    /// Largest embedded video extracted (phones record 1.5–3 s clips of a few MB).
    public static let maxVideoBytes: Int64 = 64 << 20

    /// Extracts the video of `file` if it is a motion photo.
    /// - Parameters:
    ///   - file: The photo, opened safely.
    ///   - directory: Opens the item's derived directory
    ///     (``DerivedDirectory/forMediaItem(_:derivedRoot:subdirectory:writtenBy:)``); called only
    ///     for a motion photo, so other photos get no directory.
    ///   - derivedRoot: The derived root `directory` lives in (to re-open the temporary file).
    ///   - storageRelativePrefix: The derived root relative to the storage root (`.derived`), for
    ///     the recorded `file`.
    ///   - limits: The job's limits (probe size, pixels, duration, time).
    ///   - transcodeSettings: The transcode policy the rendition decision is made with.
    ///   - maxVideoBytes: The bound on the embedded video.
    ///   - cancellation: The job's token.
    ///   - logger: The job's logger.
    /// - Returns: `nil` when the photo is not a motion photo; otherwise the `metadata.motion_photo`
    ///   object: `{layout, file, size, duration, width, height, codec, rendition: {action, reason}}`,
    ///   or `{layout, error: {code, message}}` when its video cannot be used.
    /// - Throws: ``JobError`` only for what stops the whole job: a stop's code, `io_error` reading
    ///   the photo, or `io_error`/`disk_full` writing the derived directory.
    public static func extract(file: SafeFile, into openDirectory: () throws(JobError) -> DerivedDirectory, derivedRoot: String, storageRelativePrefix: String,
                               limits: MediaLimits, transcodeSettings: TranscodeSettings, maxVideoBytes: Int64 = maxVideoBytes,
                               cancellation: JobCancellation?, logger: Logger) throws(JobError) -> JSONValue? {
        // FFmpeg's own lines (the probe below) go to the job's logger, as in the metadata job.
        try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> JSONValue? in
            try extract(file: file, openDirectory: openDirectory, derivedRoot: derivedRoot, storageRelativePrefix: storageRelativePrefix,
                        limits: limits, transcodeSettings: transcodeSettings, maxVideoBytes: maxVideoBytes,
                        cancellation: cancellation, logger: logger)
        }
    }

    private static func extract(file: SafeFile, openDirectory: () throws(JobError) -> DerivedDirectory, derivedRoot: String,
                                storageRelativePrefix: String, limits: MediaLimits, transcodeSettings: TranscodeSettings,
                                maxVideoBytes: Int64, cancellation: JobCancellation?, logger: Logger) throws(JobError) -> JSONValue? {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        let finding = try MotionPhotoLocator.locate(size: file.size) { (offset: Int64, count: Int) throws(JobError) -> [UInt8] in
            try stop.check()
            return try file.read(at: offset, count: count)
        }
        if case .none = finding { return nil }
        // An earlier run's video is replaced, or removed when this run finds none usable.
        let directory = try openDirectory()
        func failure(_ layout: MotionPhotoLocator.Layout, _ code: JobError.Code, _ reason: String) -> JSONValue {
            directory.remove(named: fileName)
            logger.notice("the motion photo's video cannot be used", metadata: ["code": "\(code.rawValue)", "reason": "\(reason)"])
            return ["layout": .string(layout.rawValue), "error": ["code": .string(code.rawValue),
                                                                  "message": .string("The video embedded in \(file.relativePath) cannot be used. \(reason)")]]
        }
        let location: MotionPhotoLocator.Location
        switch finding {
        case .none:
            return nil
        case .unusable(let layout, let code, let reason):
            return failure(layout, JobError.Code(code), reason)
        case .video(let found):
            location = found
        }
        guard location.length <= maxVideoBytes else {
            return failure(location.layout, .tooLarge, "It is \(location.length) bytes, over the limit of \(maxVideoBytes) bytes for an embedded video.")
        }
        let head = try file.read(at: location.offset, count: 8)
        guard head.count == 8, head[4..<8].elementsEqual(Array("ftyp".utf8)) else {
            return failure(location.layout, .corruptMedia, "The bytes where it should start are not an MP4 (no ftyp box).")
        }

        // Copy it through the safe writer, in bounded chunks, polling the stop.
        let output = try directory.createOutput(named: fileName)
        var copied: Int64 = 0
        let chunk: Int64 = 1 << 20
        while copied < location.length {
            try stop.check()
            let bytes = try file.read(at: location.offset + copied, count: Int(min(chunk, location.length - copied)))
            guard !bytes.isEmpty else { break }
            try output.write(bytes)
            copied += Int64(bytes.count)
        }
        guard copied == location.length else {
            output.discard()
            return failure(location.layout, .corruptMedia, "The file ends \(location.length - copied) bytes before the video does: the video is truncated.")
        }

        // Probe the temporary file exactly as an uploaded video would be.
        let probe: MediaProbe
        do throws(JobError) {
            let temporary = try SafeFile.open(relativePath: output.temporaryRelativePath, in: derivedRoot, limits: limits)
            let input = try MediaInput.open(temporary, limits: limits, sniffedMimeType: nil, stop: stop)
            probe = input.probe()
        } catch where [.cancelled, .shutdown, .timeout, .leaseLost].contains(error.code) {
            throw error
        } catch {
            output.discard()
            // The probe names the hidden temporary file; name what it is instead.
            let message = error.message.replacingOccurrences(of: output.temporaryRelativePath, with: "the embedded video")
            return failure(location.layout, error.code, message)
        }
        guard TranscodePolicy.playableContainers.contains(probe.formatName), let video = probe.primaryVideo else {
            output.discard()
            return failure(location.layout, .unsupportedFormat, "It is \(probe.formatLongName ?? probe.formatName) without a video stream, not an MP4 video.")
        }
        try output.commit()

        let decision = TranscodePolicy.decide(probe, settings: transcodeSettings)
        let relative = storageRelativePrefix.isEmpty ? output.relativePath : storageRelativePrefix + "/" + output.relativePath
        var record: [String: JSONValue] = [
            "layout": .string(location.layout.rawValue),
            "file": .string(relative),
            "size": .int(location.length),
            "codec": .string(video.codecName),
            "rendition": ["action": .string(decision.action.rawValue), "reason": .string(decision.reason)],
        ]
        if let duration = probe.duration { record["duration"] = .double((duration * 1000).rounded() / 1000) }
        if let width = video.displayWidth ?? video.width { record["width"] = .int(Int64(width)) }
        if let height = video.displayHeight ?? video.height { record["height"] = .int(Int64(height)) }
        return .object(record)
    }
}

extension PendingOutput {
    /// The temporary file's path relative to the derived root (to read it back before commit).
    var temporaryRelativePath: String {
        directory.relativePath.isEmpty ? temporaryName : directory.relativePath + "/" + temporaryName
    }
}
