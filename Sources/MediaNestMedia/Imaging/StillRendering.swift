public import Logging
public import MediaNestCore

/// What kind of source a still (thumbnail or preview) is made from.
public enum StillSourceKind: String, Sendable, Hashable {
    /// JPEG, PNG, GIF, WebP, BMP or TIFF, decoded with libavcodec (JPEGs with TurboJPEG), or
    /// JPEG XL, decoded with libjxl.
    case image
    /// HEIC/HEIF/AVIF, decoded with libheif.
    case heif
    /// Camera RAW (CR2, NEF, ARW, DNG): its embedded JPEG preview, or the RAW developed at half size.
    case raw
    /// A video: a representative frame.
    case video
    /// Audio: the cover art, else a waveform.
    case audio
}

/// One picture decoded for the still outputs, upright and reduced, with what is known of its source.
public struct RenderedStill: Sendable {
    /// The picture, at most the requested long edge.
    public var image: RGBAImage
    /// The source's kind.
    public var kind: StillSourceKind
    /// Facts for the job output (`source_width`, `orientation`, `codec`, ...).
    public var details: [String: JSONValue]
}

/// The dispatcher behind the thumbnail and preview jobs and the `thumbnail` command: recognises
/// what a file is and has the right decoder turn it into one upright ``RGBAImage``.
///
/// The file is recognised from its content (magic bytes), with the declared MIME type and file
/// name only to tell a camera RAW file from the TIFF it is built on.
public enum StillRendering {
    /// Decodes `file` into a picture of at most `maxLongEdge` on the long edge.
    /// - Parameters:
    ///   - file: The safely opened source.
    ///   - declaredMimeType: The upload's MIME type, if known.
    ///   - fileName: The original file name, if known (its extension helps recognise RAW files).
    ///   - maxLongEdge: Longest edge of the picture.
    ///   - limits: The job's limits.
    ///   - decoderThreads: Most decoder threads.
    ///   - cancellation: The job's token.
    ///   - logger: The job's logger.
    ///   - colourSpace: The outputs' colour space (`stills.colorspace`): sRGB, or Display P3 for
    ///     sources wider than sRGB.
    ///   - reduceFully: `false` lets a JPEG that TurboJPEG decodes without a colour conversion
    ///     stay at its DCT-scaled size (the smallest M/8 that covers `maxLongEdge`, so somewhat
    ///     larger), for a caller that reduces every output from it anyway (``StillOutputs`` turns
    ///     it into the preview's YUV in one libswscale pass instead of two).
    /// - Returns: The picture and its source facts.
    /// - Throws: ``JobError``: `unsupported_format` (naming the format), `pixel_limit`,
    ///   `corrupt_media`, `io_error`, or the stop's code.
    public static func decode(file: SafeFile, declaredMimeType: String?, fileName: String?, maxLongEdge: Int,
                              limits: MediaLimits, decoderThreads: Int, cancellation: JobCancellation?,
                              logger: Logger, colourSpace: StillColourSpace = .srgb, reduceFully: Bool = true) throws(JobError) -> RenderedStill {
        let header = try file.read(at: 0, count: 256)  // a long ftyp's compatible brands too
        let kind = try classify(header: header, declaredMimeType: declaredMimeType, fileName: fileName ?? file.relativePath)
        switch kind {
        case .image:
            // JPEG XL with libjxl itself, at 8 bits (see JPEGXLDecoder); the rest with libavcodec.
            let still = JPEGXLDecoder.recognizes(header)
                ? try JPEGXLDecoder.decode(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: cancellation,
                                           colourSpace: colourSpace)
                : try StillImageDecoder.decode(file: file, limits: limits, maxLongEdge: maxLongEdge,
                                               threads: decoderThreads, cancellation: cancellation, colourSpace: colourSpace,
                                               reduceFully: reduceFully)
            var details: [String: JSONValue] = [
                "source_format": .string(still.format),
                "source_width": .int(Int64(still.sourceWidth)),
                "source_height": .int(Int64(still.sourceHeight)),
                "orientation": .int(Int64(still.orientation)),
            ]
            if let from = still.convertedFrom { details["color_converted_from"] = .string(from) }
            if let scale = still.jpegScale { details["jpeg_scale"] = .string(scale) }
            return RenderedStill(image: still.image, kind: .image, details: details)
        case .heif:
            // libheif applies irot/imir itself: the picture is upright, and the EXIF orientation
            // (which iPhones also write) must not be applied a second time.
            let image = try HEIFDecoder.decode(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: cancellation,
                                               colourSpace: colourSpace)
            return RenderedStill(image: image, kind: .heif, details: ["decoder": "libheif"])
        case .raw:
            // The embedded JPEG preview (or, when it is too small, the RAW developed at half size),
            // turned upright by the RAW file's own orientation.
            let preview = try RawPreview.decode(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: cancellation)
            var details: [String: JSONValue] = [
                "decoder": .string(preview.developed ? "libraw half-size development" : "libraw embedded preview"),
                "source_width": .int(Int64(preview.rawWidth)),
                "source_height": .int(Int64(preview.rawHeight)),
                "orientation": .int(Int64(preview.orientation)),
            ]
            if let camera = preview.camera { details["camera"] = .string(camera) }
            return RenderedStill(image: preview.image.oriented(exifOrientation: preview.orientation), kind: .raw, details: details)
        case .video, .audio:
            let input = try MediaInput.open(file, limits: limits, cancellation: cancellation)
            let format = input.formatLongName ?? input.formatName
            if input.hasMovingPicture, input.probe().isStillImage {
                // A still FFmpeg reads (an image demuxer, or a single-frame video stream): its
                // one picture, and an image, so the preview job makes no trickplay of it.
                let image = try VideoStills.representativeFrame(file: file, limits: limits, maxLongEdge: maxLongEdge,
                                                                cancellation: cancellation, logger: logger, threads: decoderThreads)
                return RenderedStill(image: image, kind: .image, details: ["container": .string(format), "decoder": "ffmpeg"])
            }
            if input.hasMovingPicture {
                // A representative frame: seeks near 10 % and scores a few keyframes, so it is
                // never a black fade-in; upright (display matrix), at its display aspect, tone-mapped.
                let image = try VideoStills.representativeFrame(file: file, limits: limits, maxLongEdge: maxLongEdge,
                                                                cancellation: cancellation, logger: logger, threads: decoderThreads)
                return RenderedStill(image: image, kind: .video, details: ["container": .string(format)])
            }
            // A song: its embedded cover art when it has one that decodes, else its waveform.
            do {
                if let art = try AudioArtwork.coverArt(file: file, limits: limits, maxLongEdge: maxLongEdge) {
                    return RenderedStill(image: art, kind: .audio, details: ["container": .string(format), "picture": "cover art"])
                }
            } catch where error.code == .corruptMedia || error.code == .unsupportedFormat || error.code == .pixelLimit {
                logger.notice("the embedded cover art cannot be used; drawing the waveform instead", metadata: ["error": "\(error.message)"])
            }
            let width = maxLongEdge
            let height = max(1, maxLongEdge / 4)
            let waveform = try Waveform.render(file: file, limits: limits, width: width, height: height, cancellation: cancellation)
            return RenderedStill(image: waveform, kind: .audio, details: ["container": .string(format), "picture": "waveform"])
        }
    }

    /// Recognises the kind of source from its first bytes (and, for RAW, its MIME type or name).
    /// - Throws: ``JobError`` `unsupported_format` naming what the file is, when it is none of them.
    static func classify(header: [UInt8], declaredMimeType: String?, fileName: String) throws(JobError) -> StillSourceKind {
        let lowerName = fileName.lowercased()
        let rawExtensions = ["cr2", "nef", "arw", "dng", "nrw", "srf", "sr2"]
        let isRawByName = rawExtensions.contains { lowerName.hasSuffix("." + $0) }
        let mime = declaredMimeType?.lowercased() ?? ""
        let isRawByMime = ["image/x-canon-cr2", "image/x-nikon-nef", "image/x-sony-arw", "image/x-adobe-dng", "image/dng"].contains(mime)
        // CR2 says so at byte 8; NEF, ARW and DNG are plain TIFF structures, told apart by name.
        let isCR2 = header.count >= 10 && header[8] == 0x43 && header[9] == 0x52 && header.starts(with: [0x49, 0x49, 0x2A, 0x00])
        if let codec = StillImageDecoder.recognise(header) {
            if codec == .tiff && (isCR2 || isRawByName || isRawByMime) { return .raw }
            return .image
        }
        if JPEGXLDecoder.recognizes(header) { return .image }
        // HEIF-family by a major or compatible ftyp brand (HEIFBrands), as in the metadata job.
        if HEIFBrands.isHEIF(header) { return .heif }
        if isRawByName || isRawByMime { return .raw }
        // Everything else is for the demuxer allowlist to judge: video or audio.
        return .video
    }
}
