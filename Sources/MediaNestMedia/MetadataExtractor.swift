import Foundation
public import Logging
public import MediaNestCore

/// The broad kind of a media item.
public enum MediaKind: String, Sendable, Hashable {
    case image, video, audio
}

/// Everything the metadata job learns about one file.
public struct MetadataResult: Sendable, Hashable {
    /// The MIME type found from the content (libmagic, or FFmpeg's container when libmagic cannot tell).
    public var mimeSniffed: String
    /// The MIME type the upload declared.
    public var mimeDeclared: String
    /// Whether the declared type names the same type as the content (after alias folding).
    public var mimeDeclaredMatches: Bool
    /// MD5 and SHA-256, unless checksums were skipped.
    public var checksums: FileChecksums?
    /// The file size found: bytes hashed, or the `fstat` size when checksums were skipped.
    public var fileSize: Int64
    /// Image, video or audio.
    public var kind: MediaKind
    /// Display width (after EXIF orientation or rotation), when known.
    public var width: Int?
    /// Display height (after EXIF orientation or rotation), when known.
    public var height: Int?
    /// Duration in seconds (video and audio).
    public var duration: Double?
    /// The summary written to `media_items.metadata`; schema in docs/METADATA.md.
    public var summary: [String: JSONValue]
    /// The full probe, for the `media_metadata` row of provider `local`.
    public var fullProbe: JSONValue
    /// The FFmpeg probe the summary was built from.
    public var probe: MediaProbe
    /// EXIF, for images that have it.
    public var exif: ExifData?
}

/// The metadata job's work on one file, without any database: safe open, MIME sniffing, probe,
/// EXIF, checksums, and the summary.
public enum MetadataExtractor {
    /// Extracts the metadata of one stored file.
    /// - Parameters:
    ///   - root: Absolute path of the storage root.
    ///   - relativePath: The item's `storage_path`, relative to `root` (untrusted).
    ///   - declaredMimeType: The MIME type the upload declared.
    ///   - limits: Size, pixel, duration and time limits.
    ///   - computeChecksums: Whether to hash the file (the slowest step).
    ///   - progress: Receives stages `sniffing`, `probing`, `hashing`.
    ///   - cancellation: The job's token; polled between steps, per read buffer, and by FFmpeg.
    ///   - logger: The job's logger; FFmpeg's own lines are routed to it too.
    ///   - salvage: Called just before a `corrupt_media`, `unsupported_format` or `mime_mismatch`
    ///     error is thrown, with the checksums of the whole file (when `computeChecksums`), once
    ///     the file is known not to have changed while it was read: the file is intact on disk
    ///     even though it cannot be used, and its checksums still find duplicates and verify
    ///     storage.
    ///   - readCounter: Receives the bytes read from the file (see ``SafeFile/open(relativePath:in:limits:countingInto:)``).
    /// - Returns: The result.
    /// - Throws: ``JobError``: `path_outside_storage`, `file_missing`, `not_a_regular_file`,
    ///   `empty_file`, `too_large`, `mime_mismatch` (content is not media at all),
    ///   `unsupported_format` (playlists, unrecognised or disallowed containers, random bytes,
    ///   image formats this FFmpeg cannot decode), `corrupt_media`, `pixel_limit`,
    ///   `duration_limit`, `io_error`, `file_changed` (the file's size, modification time or
    ///   inode changed while it was read, or the path names another file now; checked after the
    ///   last read, whatever else went wrong), or a stop's code.
    public static func extract(
        root: String,
        relativePath: String,
        declaredMimeType: String,
        limits: MediaLimits = .default,
        computeChecksums: Bool = true,
        progress: JobProgress? = nil,
        cancellation: JobCancellation? = nil,
        logger: Logger = Logger(label: "medianest.media"),
        salvage: (FileChecksums) -> Void = { _ in },
        readCounter: ByteCounter? = nil
    ) throws(JobError) -> MetadataResult {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        return try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> MetadataResult in
            let file = try SafeFile.open(relativePath: relativePath, in: root, limits: limits, countingInto: readCounter)
            var result: MetadataResult
            do throws(JobError) {
                result = try extract(file: file, declaredMimeType: declaredMimeType, limits: limits,
                                     computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger)
                // The colour space the file declares (Colour/ColourMetadata.swift).
                if let color = ColourMetadata.describe(file: file, limits: limits) { result.summary["color"] = color }
            } catch where stopCodes.contains(error.code) {
                throw error
            } catch {
                var checksums: FileChecksums?
                if computeChecksums, salvageableCodes.contains(error.code) {
                    checksums = try Checksummer.compute(file, progress: progress, stop: stop, bufferSize: Checksummer.defaultBufferSize)
                }
                // A file truncated or rewritten under the reader often looks damaged; say what
                // really happened, and keep nothing of it.
                beforeChangeCheck?(file)
                try file.checkUnchanged()
                if let checksums { salvage(checksums) }
                throw error
            }
            beforeChangeCheck?(file)
            try file.checkUnchanged()
            return result
        }
    }

    private static let stopCodes: Set<JobError.Code> = [.cancelled, .shutdown, .timeout, .leaseLost]

    /// The failures after which the file's checksums are still worth recording.
    public static let salvageableCodes: Set<JobError.Code> = [.corruptMedia, .unsupportedFormat, .mimeMismatch]

    /// A test seam: called with the open file after the last read, just before the check that it
    /// did not change, so a test can change the file at exactly that point.
    @TaskLocal static var beforeChangeCheck: (@Sendable (SafeFile) -> Void)?

    private static func extract(file: SafeFile, declaredMimeType: String, limits: MediaLimits,
                                computeChecksums: Bool, progress: JobProgress?, stop: StopGuard, logger: Logger) throws(JobError) -> MetadataResult {
        let relativePath = file.relativePath
        try stop.check()

        progress?.report(stage: "sniffing")
        let header = try file.read(at: 0, count: MimeSniffer.headerSize)
        if MimeSniffer.looksLikePlaylist(header) {
            throw JobError(.unsupportedFormat, "The file \(relativePath) is a playlist (M3U/HLS, PLS or DASH manifest), not media; playlists are never followed.")
        }
        var sniffed = MimeSniffer.normalize(try MimeSniffer.sniff(header))
        // HEIF/AVIF stills are read with libheif (HEIF/HEIFMetadata.swift): FFmpeg 5.1 cannot read
        // item-based HEIF and ignores AVIF's irot/imir. The ftyp brands decide (HEIFBrands), not
        // libmagic's guess, which may be QuickTime or MP4.
        if usesHEIF(sniffed: sniffed, header: header) {
            if !HEIFDecoder.mimeTypes.contains(sniffed), let byBrand = HEIFBrands.mimeType(header) { sniffed = byBrand }
            return try extractHEIF(file: file, header: header, sniffed: sniffed, declared: declaredMimeType, limits: limits,
                                   computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger)
        }
        switch MimeSniffer.classify(sniffed) {
        case .notMedia:
            throw JobError(.mimeMismatch, "The file \(relativePath) was declared as \(declaredMimeType) but its content is \(sniffed), which is not image, video or audio.")
        case .playlist:
            throw JobError(.unsupportedFormat, "The file \(relativePath) is a playlist (\(sniffed)), not media; playlists are never followed.")
        case .image, .video, .audio, .unknown:
            break
        }

        // Camera RAW (DNG, NEF, CR2, ...) is read with libraw (RAW/RawMetadata.swift), not as a TIFF.
        if usesLibRaw(sniffed: sniffed, header: header) {
            return try extractRAW(file: file, sniffed: sniffed, declared: declaredMimeType, limits: limits,
                                  computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger)
        }

        let image = ImageHeaderParser.parse(header)
        if let image, let w = image.width, let h = image.height, limits.exceedsPixelLimit(width: w, height: h) {
            throw JobError(.pixelLimit, "The image \(relativePath) is \(w)x\(h) (\(UInt64(w) * UInt64(h)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }
        // FFmpeg's TIFF demuxer reports no size before decoding, and its decoder's refusal of an
        // oversized frame only leaves the size unknown: check the first IFD here, as the still
        // decoder does.
        if sniffed == "image/tiff", let size = ImageHeaderParser.tiffDimensions(header), Int64(size.width) * Int64(size.height) > limits.maxPixels {
            throw JobError(.pixelLimit, "The image \(relativePath) is \(size.width)x\(size.height) (\(Int64(size.width) * Int64(size.height)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }
        if let problem = image?.exifProblem {
            logger.warning("ignoring malformed EXIF", metadata: ["file": "\(relativePath)", "reason": "\(problem)"])
        }

        progress?.report(stage: "probing")
        let input = try MediaInput.open(file, limits: limits, sniffedMimeType: sniffed, stop: stop)
        let probe = input.probe()
        if MimeSniffer.classify(sniffed) == .unknown, let fromContainer = mimeType(forContainer: probe.formatName) {
            sniffed = fromContainer
        }

        return try complete(file: file, probe: probe, exif: image?.exif, imageHeader: image, sniffed: sniffed, declared: declaredMimeType,
                            computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger)
    }

    /// How every reader (FFmpeg's, libheif's, libraw's) ends: the checksums when asked for, the
    /// declared type checked against the content, the summary, and the full probe.
    /// - Parameter extras: Adds the reader's own summary keys (`has_alpha`, `lens`, ...).
    static func complete(file: SafeFile, probe: MediaProbe, exif: ExifData?, imageHeader: ImageHeader?, sniffed: String, declared: String,
                         computeChecksums: Bool, progress: JobProgress?, stop: StopGuard, logger: Logger,
                         extras: (inout [String: JSONValue]) -> Void = { _ in }) throws(JobError) -> MetadataResult {
        var checksums: FileChecksums?
        if computeChecksums {
            checksums = try Checksummer.compute(file, progress: progress, stop: stop, bufferSize: Checksummer.defaultBufferSize)
        }
        try stop.check()

        let declaredMatches = MimeSniffer.normalize(declared) == sniffed
        if !declaredMatches {
            logger.info("declared MIME type differs from content", metadata: ["file": "\(file.relativePath)", "declared": "\(declared)", "sniffed": "\(sniffed)"])
        }
        var result = try summarize(probe: probe, exif: exif, imageHeader: imageHeader, sniffed: sniffed, declared: declared,
                                   relativePath: file.relativePath)
        extras(&result.summary)
        result.mimeDeclaredMatches = declaredMatches
        result.summary["mime_declared_matches"] = .bool(declaredMatches)
        result.checksums = checksums
        result.fileSize = checksums?.bytesRead ?? file.size
        result.fullProbe = fullProbe(probe: probe, image: imageHeader, sniffed: sniffed, fileSize: result.fileSize)
        return result
    }

    static func summarize(probe: MediaProbe, exif: ExifData?, imageHeader: ImageHeader?, sniffed: String, declared: String,
                          relativePath: String) throws(JobError) -> MetadataResult {
        let video = probe.primaryVideo
        let audio = probe.primaryAudio
        let kind: MediaKind
        if video != nil, MimeSniffer.classify(sniffed) == .image || probe.isStillImage {
            kind = .image
        } else if video != nil {
            kind = .video
        } else if audio != nil {
            kind = .audio
        } else {
            throw JobError(.corruptMedia, "The file \(relativePath) (\(probe.formatLongName ?? probe.formatName)) has no readable image, video or audio stream.")
        }

        var summary: [String: JSONValue] = [
            "kind": .string(kind.rawValue),
            "mime_sniffed": .string(sniffed),
            "container": .string(containerName(probe.formatName, sniffed: sniffed)),
        ]
        var width: Int?
        var height: Int?
        var duration: Double?
        var tags = probe.tags
        for (key, value) in video?.tags ?? [:] where tags[key] == nil { tags[key] = value }

        if let video {
            summary["video_codec"] = .string(video.codecName)
            if let depth = video.bitDepth { summary["bit_depth"] = .int(Int64(depth)) }
            width = video.displayWidth ?? imageHeader?.width
            height = video.displayHeight ?? imageHeader?.height
        } else if let imageHeader {
            width = imageHeader.width
            height = imageHeader.height
        }
        if kind == .image {
            if let orientation = exif?.orientation {
                summary["orientation"] = .int(Int64(orientation))
                if orientation >= 5, let w = width, let h = height { (width, height) = (h, w) }
            }
        } else if let video {
            summary["rotation"] = .int(Int64(video.rotation))
            summary["hdr"] = .bool(video.isHDR)
            if let rate = video.averageFrameRate ?? video.realFrameRate { summary["frame_rate"] = .double((rate * 1000).rounded() / 1000) }
        }
        if kind != .image, let d = probe.duration {
            duration = d
            summary["duration"] = .double((d * 1000).rounded() / 1000)
        }
        if let width { summary["width"] = .int(Int64(width)) }
        if let height { summary["height"] = .int(Int64(height)) }
        if let audio {
            summary["audio_codec"] = .string(audio.codecName)
            summary["audio"] = .object(compact([
                "channels": audio.channels.map { .int(Int64($0)) },
                "sample_rate": audio.sampleRate.map { .int(Int64($0)) },
                "layout": audio.channelLayout.map(JSONValue.string),
            ]))
        }
        if probe.streams.contains(where: \.isAttachedPicture) { summary["cover_art"] = .bool(true) }

        if let takenAt = captureTime(exif: exif, tags: tags) {
            summary["taken_at"] = .string(takenAt.value)
            summary["taken_at_source"] = .string(takenAt.source)
        }
        // Apple Live Photo: the still's MakerNote ContentIdentifier, the video's QuickTime key.
        let contentID = kind == .image ? exif?.appleContentIdentifier
            : kind == .video ? firstTag(tags, ["com.apple.quicktime.content.identifier"]) : nil
        if let contentID, contentID.utf8.count <= 128 {
            summary["live_photo"] = ["content_id": .string(contentID)]
        }
        let make = exif?.make ?? firstTag(tags, ["com.apple.quicktime.make", "make"])
        let model = exif?.model ?? firstTag(tags, ["com.apple.quicktime.model", "model"])
        if make != nil || model != nil {
            summary["camera"] = .object(compact(["make": make.map(JSONValue.string), "model": model.map(JSONValue.string)]))
        }
        if let lat = exif?.latitude, let lon = exif?.longitude {
            summary["gps"] = ["lat": .double(lat), "lon": .double(lon)]
        } else if let text = firstTag(tags, ["com.apple.quicktime.location.iso6709", "location", "location-eng"]), let (lat, lon) = parseISO6709(text) {
            summary["gps"] = ["lat": .double(lat), "lon": .double(lon)]
        }
        let textTags = compact([
            "title": firstTag(tags, ["title"]).map(JSONValue.string),
            "artist": firstTag(tags, ["artist", "album_artist"]).map(JSONValue.string),
            "album": firstTag(tags, ["album"]).map(JSONValue.string),
            "date": firstTag(tags, ["date"]).map(JSONValue.string),
        ])
        if !textTags.isEmpty { summary["tags"] = .object(textTags) }

        return MetadataResult(mimeSniffed: sniffed, mimeDeclared: declared, mimeDeclaredMatches: false, checksums: nil, fileSize: 0,
                              kind: kind, width: width, height: height, duration: duration, summary: summary, fullProbe: .null,
                              probe: probe, exif: exif)
    }

    static func fullProbe(probe: MediaProbe, image: ImageHeader?, sniffed: String, fileSize: Int64) -> JSONValue {
        var object = probe.json.objectValue ?? [:]
        object["mime_sniffed"] = .string(sniffed)
        object["size"] = .int(fileSize)
        if let exif = image?.exif, !exif.isEmpty {
            object["exif"] = .object(compact([
                "orientation": exif.orientation.map { .int(Int64($0)) },
                "date_time_original": exif.dateTimeOriginal.map(JSONValue.string),
                "sub_sec_time_original": exif.subSecTimeOriginal.map(JSONValue.string),
                "offset_time_original": exif.offsetTimeOriginal.map(JSONValue.string),
                "date_time_digitized": exif.dateTimeDigitized.map(JSONValue.string),
                "sub_sec_time_digitized": exif.subSecTimeDigitized.map(JSONValue.string),
                "offset_time_digitized": exif.offsetTimeDigitized.map(JSONValue.string),
                "offset_time": exif.offsetTime.map(JSONValue.string),
                "gps_date_time": exif.gpsTime.map { JSONValue.string($0.value) },
                "apple_content_identifier": exif.appleContentIdentifier.map(JSONValue.string),
                "make": exif.make.map(JSONValue.string),
                "model": exif.model.map(JSONValue.string),
                "gps_latitude": exif.latitude.map(JSONValue.double),
                "gps_longitude": exif.longitude.map(JSONValue.double),
            ]))
        }
        return .object(object)
    }

    /// The capture time, in Immich's order: EXIF DateTimeOriginal, then DateTimeDigitized
    /// (``ExifData/creationTime``), then QuickTime's `com.apple.quicktime.creationdate` (local
    /// time with its zone) and the container's `creation_time` (UTC), and only when none of them
    /// is there, the EXIF GPS date and time (UTC). IPTC is not read, so IPTC TimeCreated alone
    /// never dates a file.
    static func captureTime(exif: ExifData?, tags: [String: String]) -> CaptureTime? {
        if let fromExif = exif?.creationTime { return fromExif }
        for key in ["com.apple.quicktime.creationdate", "creation_time"] {
            if let raw = firstTag(tags, [key]) { return CaptureTime(value: normalizedQuickTimeDate(raw), source: key) }
        }
        return exif?.gpsTime
    }

    /// A QuickTime date as ISO 8601 with an extended offset: Apple writes
    /// `2024-05-01T12:34:56+0200`, which becomes `2024-05-01T12:34:56+02:00`. Anything that is
    /// not of that shape is kept as stored.
    static func normalizedQuickTimeDate(_ raw: String) -> String {
        let bytes = Array(raw.utf8)
        guard bytes.count >= 24, let sign = bytes.dropFirst(19).lastIndex(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }),
              bytes.count - sign == 5, bytes[(sign + 1)...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return raw }
        return String(decoding: bytes[..<(sign + 3)], as: UTF8.self) + ":" + String(decoding: bytes[(sign + 3)...], as: UTF8.self)
    }

    private static func firstTag(_ tags: [String: String], _ keys: [String]) -> String? {
        for key in keys { if let value = tags[key]?.trimmingSpaces(), !value.isEmpty { return value } }
        return nil
    }

    /// A short container name: `mp4`, `mov`, `m4a`, `avif`, `webm`, `matroska`, `jpeg`, `png`, ...
    static func containerName(_ formatName: String, sniffed: String) -> String {
        switch formatName {
        case "mov,mp4,m4a,3gp,3g2,mj2":
            switch sniffed {
            case "video/quicktime": return "mov"
            case "audio/mp4": return "m4a"
            case "image/avif": return "avif"
            case "image/heic", "image/heif": return "heif"
            case "video/3gpp": return "3gp"
            default: return "mp4"
            }
        case "matroska,webm":
            return sniffed.hasSuffix("/webm") ? "webm" : "matroska"
        default:
            return formatName.hasSuffix("_pipe") ? String(formatName.dropLast(5)) : formatName
        }
    }

    /// A MIME type for containers libmagic reports as `application/octet-stream`.
    static func mimeType(forContainer formatName: String) -> String? {
        [
            "mpegts": "video/mp2t", "aac": "audio/aac", "mp3": "audio/mpeg", "ac3": "audio/ac3", "eac3": "audio/eac3",
            "flac": "audio/flac", "wav": "audio/wav", "mpeg": "video/mpeg", "ogg": "audio/ogg", "matroska,webm": "video/x-matroska",
            "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "avi": "video/x-msvideo", "flv": "video/x-flv", "asf": "video/x-ms-asf",
            "wv": "audio/x-wavpack", "ape": "audio/x-ape", "aiff": "audio/aiff", "w64": "audio/x-w64", "caf": "audio/x-caf",
        ][formatName]
    }

    /// Parses an ISO 6709 point such as `+37.3318-122.0312+010.000/` into latitude and longitude.
    /// - Parameter text: The location string.
    /// - Returns: Signed decimal degrees, or `nil` when malformed or out of range.
    public static func parseISO6709(_ text: String) -> (Double, Double)? {
        var parts: [String] = []
        var current = ""
        for character in text {
            if character == "+" || character == "-" {
                if !current.isEmpty { parts.append(current) }
                current = String(character)
            } else if character.isNumber || character == "." {
                guard !current.isEmpty else { return nil }
                current.append(character)
            } else {
                break  // '/' terminator, or a CRS suffix
            }
        }
        if !current.isEmpty { parts.append(current) }
        guard parts.count >= 2, let lat = sexagesimal(parts[0], degreeDigits: 2), let lon = sexagesimal(parts[1], degreeDigits: 3),
              abs(lat) <= 90, abs(lon) <= 180 else { return nil }
        return (lat, lon)
    }

    /// `±DD.D`, `±DDMM.M` or `±DDMMSS.S` (latitude; longitude has three degree digits).
    private static func sexagesimal(_ part: String, degreeDigits: Int) -> Double? {
        let sign: Double = part.hasPrefix("-") ? -1 : 1
        let body = part.dropFirst()
        let integer = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let value = Double(body) else { return nil }
        switch integer.count {
        case degreeDigits:
            return sign * value
        case degreeDigits + 2:
            let degrees = (value / 100).rounded(.towardZero)
            return sign * (degrees + (value - degrees * 100) / 60)
        case degreeDigits + 4:
            let degrees = (value / 10_000).rounded(.towardZero)
            let minutes = ((value - degrees * 10_000) / 100).rounded(.towardZero)
            let seconds = value - degrees * 10_000 - minutes * 100
            return sign * (degrees + minutes / 60 + seconds / 3600)
        default:
            return nil
        }
    }
}
