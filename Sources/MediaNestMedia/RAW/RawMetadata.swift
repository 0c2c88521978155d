import CLibRaw
import Glibc
import Logging
public import MediaNestCore

/// What libraw reads from a camera RAW file's headers: the facts the metadata job records.
public struct RawInfo: Sendable, Hashable {
    /// Camera make and model as libraw normalises them ("Canon", "EOS R5").
    public var make: String?
    public var model: String?
    /// The lens, from EXIF LensModel or the maker notes.
    public var lens: String?
    /// Exposure time in seconds.
    public var exposureTime: Double?
    /// Aperture as an f-number.
    public var fNumber: Double?
    /// ISO speed.
    public var iso: Double?
    /// Focal length in millimetres.
    public var focalLength: Double?
    /// The visible image size as stored (before orientation).
    public var width: Int
    public var height: Int
    /// EXIF orientation 1–8, from libraw's `flip`.
    public var orientation: Int
    /// Capture time as the camera's clock showed it, EXIF style (`YYYY:MM:DD HH:MM:SS`, no zone).
    public var dateTimeOriginal: String?
    /// Whether the file is a DNG.
    public var isDNG: Bool
}

/// Camera RAW metadata through libraw (instead of FFmpeg's `tiff_pipe`, which sees a DNG or NEF
/// as a TIFF and reports the size of whatever its first IFD holds, usually the preview).
public enum RawMetadata {
    /// Reads the metadata of a RAW file (libraw identification only; nothing is unpacked).
    /// - Throws: ``JobError`` as ``LibRawSession``'s open: `too_large`, `io_error`,
    ///   `unsupported_format`, `corrupt_media`, or a stop's code.
    public static func read(file: SafeFile, cancellation: JobCancellation? = nil, limits: MediaLimits = .default) throws(JobError) -> RawInfo {
        try read(file: file, stop: StopGuard(cancellation: cancellation, timeout: limits.timeout))
    }

    static func read(file: SafeFile, stop: StopGuard) throws(JobError) -> RawInfo {
        let session = try LibRawSession(file: file, stop: stop)
        let raw = session.data
        let other = raw.pointee.other
        let lensInfo = raw.pointee.lens
        let lens = [LibRawSession.text(lensInfo.Lens), LibRawSession.text(lensInfo.makernotes.Lens)].first { !$0.isEmpty }
        func positive(_ value: Float) -> Double? { value.isFinite && value > 0 ? (Double(value) * 1e6).rounded() / 1e6 : nil }
        let make = LibRawSession.text(raw.pointee.idata.make)
        let model = LibRawSession.text(raw.pointee.idata.model)
        return RawInfo(make: make.isEmpty ? nil : make, model: model.isEmpty ? nil : model, lens: lens,
                       exposureTime: positive(other.shutter), fNumber: positive(other.aperture), iso: positive(other.iso_speed),
                       focalLength: positive(other.focal_len),
                       width: Int(raw.pointee.sizes.width), height: Int(raw.pointee.sizes.height), orientation: session.exifOrientation,
                       dateTimeOriginal: wallClock(other.timestamp), isDNG: raw.pointee.idata.dng_version != 0)
    }

    /// libraw turns the EXIF date into a `time_t` with `mktime`, in this process's time zone; the
    /// inverse (`localtime_r`) gives back the camera's wall clock.
    static func wallClock(_ timestamp: time_t) -> String? {
        guard timestamp > 0 else { return nil }
        var parts = tm()
        var copy = timestamp
        guard localtime_r(&copy, &parts) != nil else { return nil }
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = Int(parts.tm_year) + 1900
        guard (1900...9999).contains(year) else { return nil }
        return "\(year):\(two(parts.tm_mon + 1)):\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}

/// The metadata job's camera RAW branch: libraw instead of FFmpeg's TIFF demuxer.
extension MetadataExtractor {
    /// Whether the metadata job should read this file with libraw (see ``RawPreview/recognizes(_:sniffedMime:)``).
    static func usesLibRaw(sniffed: String, header: [UInt8]) -> Bool {
        RawPreview.recognizes(header, sniffedMime: sniffed)
    }

    static func extractRAW(file: SafeFile, sniffed: String, declared: String, limits: MediaLimits,
                           computeChecksums: Bool, progress: JobProgress?, stop: StopGuard, logger: Logger) throws(JobError) -> MetadataResult {
        progress?.report(stage: "probing")
        let info = try RawMetadata.read(file: file, stop: stop)
        guard info.width > 0, info.height > 0 else {
            throw JobError(.corruptMedia, "The RAW file \(file.relativePath) declares no image size.")
        }
        if limits.exceedsPixelLimit(width: info.width, height: info.height) {
            throw JobError(.pixelLimit, "The RAW file \(file.relativePath) is \(info.width)x\(info.height) (\(Int64(info.width) * Int64(info.height)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }
        // libmagic calls DNG (and NEF, ARW, PEF) image/tiff; libraw knows a DNG.
        let mime = info.isDNG && sniffed == "image/tiff" ? "image/x-adobe-dng" : sniffed
        var exif = ExifData()
        exif.make = info.make
        exif.model = info.model
        exif.orientation = info.orientation
        exif.dateTimeOriginal = info.dateTimeOriginal

        var stream = StreamInfo(index: 0, kind: .video, codecName: "raw", rotation: 0, isHDR: false,
                                isAttachedPicture: false, isDefault: true, tags: [:])
        stream.width = info.width
        stream.height = info.height
        stream.displayWidth = info.width
        stream.displayHeight = info.height
        let formatName = info.isDNG ? "dng" : "raw"
        let probe = MediaProbe(formatName: formatName, formatLongName: "camera RAW (libraw)", streams: [stream], chapters: [], tags: [:])

        let image = ImageHeader(format: formatName, width: info.width, height: info.height, exif: exif, exifProblem: nil)
        return try complete(file: file, probe: probe, exif: exif, imageHeader: image, sniffed: mime, declared: declared,
                            computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger) { summary in
            if let lens = info.lens { summary["lens"] = .string(lens) }
            if let value = info.exposureTime { summary["exposure_time"] = .double(value) }
            if let value = info.fNumber { summary["f_number"] = .double(value) }
            if let value = info.iso { summary["iso"] = .double(value) }
            if let value = info.focalLength { summary["focal_length"] = .double(value) }
        }
    }
}
