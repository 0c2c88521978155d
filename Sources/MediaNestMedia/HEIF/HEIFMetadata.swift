import Logging
import MediaNestCore

/// The metadata job's HEIF/AVIF branch: libheif instead of FFmpeg.
///
/// FFmpeg 5.1 fails HEIC photos (item-based, no `moov`) as corrupt and reads AVIF without its
/// `irot`/`imir`, reporting sideways sizes. Here the size is the displayed size (transforms
/// applied), EXIF comes from the Exif item, and the file gets a normal result.
extension MetadataExtractor {
    /// Whether the metadata job should read this file with libheif: its `ftyp` brands say HEIF
    /// (``HEIFBrands``), whatever libmagic guessed, or libmagic and libheif both say so.
    static func usesHEIF(sniffed: String, header: [UInt8]) -> Bool {
        HEIFBrands.isHEIF(header) || HEIFDecoder.mimeTypes.contains(sniffed) && HEIFDecoder.recognizes(header)
    }

    static func extractHEIF(file: SafeFile, header: [UInt8], sniffed: String, declared: String, limits: MediaLimits,
                            computeChecksums: Bool, progress: JobProgress?, stop: StopGuard, logger: Logger) throws(JobError) -> MetadataResult {
        progress?.report(stage: "probing")
        let info = try HEIFDecoder.probe(file: file, limits: limits, stop: stop)
        var exif = info.exif.flatMap { ImageHeaderParser.parseExif($0[...]) }
        if info.exif != nil && exif == nil {
            logger.warning("ignoring malformed EXIF", metadata: ["file": "\(file.relativePath)", "reason": "the HEIF Exif item is not a valid TIFF block"])
        }
        // HEIF's transforms (irot/imir) are the orientation; the EXIF tag only repeats them and is
        // informative (ISO/IEC 23008-12). Reporting it would make callers rotate a second time.
        exif?.orientation = nil

        var stream = StreamInfo(index: 0, kind: .video, codecName: info.isAVIF ? "av1" : "hevc", rotation: 0, isHDR: false,
                                isAttachedPicture: false, isDefault: true, tags: [:])
        stream.width = info.codedWidth
        stream.height = info.codedHeight
        stream.displayWidth = info.width
        stream.displayHeight = info.height
        stream.bitDepth = info.bitDepth
        let formatName = info.isAVIF ? "avif" : "heif"
        let probe = MediaProbe(formatName: formatName, formatLongName: "HEIF still image (libheif, brand \(info.brand))",
                               streams: [stream], chapters: [], tags: [:])

        let image = ImageHeader(format: formatName, width: info.width, height: info.height, exif: exif, exifProblem: nil)
        return try complete(file: file, probe: probe, exif: exif, imageHeader: image, sniffed: sniffed, declared: declared,
                            computeChecksums: computeChecksums, progress: progress, stop: stop, logger: logger) { summary in
            summary["has_alpha"] = .bool(info.hasAlpha)
        }
    }
}
