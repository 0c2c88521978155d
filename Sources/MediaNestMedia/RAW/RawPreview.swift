import CLibRaw
public import MediaNestCore

/// Camera RAW files (CR2, CR3, NEF, ARW, DNG, ORF, RW2, RAF, ...) read with libraw: from the
/// JPEG preview the camera embedded when it is large enough, else developed (``RawDevelop``).
///
/// Every camera stores a preview of its own rendering, usually at full or 1616 px size, and
/// decoding it costs a fraction of developing the sensor data. Some cameras embed only a tiny
/// one (160×120); then the RAW is developed at half size with the camera's white balance.
public enum RawPreview {
    /// A decoded picture and how to turn it upright.
    public struct Result: Sendable, Hashable {
        /// The picture, reduced to the requested size; **not yet oriented**.
        public var image: RGBAImage
        /// The camera's orientation as an EXIF value (1–8) that the caller applies, from libraw's
        /// `sizes.flip`.
        public var orientation: Int
        /// Camera make and model as libraw names them ("Canon EOS R5"), or `nil`.
        public var camera: String?
        /// Size of the full RAW image in pixels (before orientation).
        public var rawWidth: Int
        /// Height of the full RAW image.
        public var rawHeight: Int
        /// Whether the picture was developed from the sensor data (the embedded preview was too
        /// small or missing) rather than taken from the embedded preview.
        public var developed: Bool = false
    }

    /// Largest RAW file read into memory for libraw (libraw's C API reads from a buffer; it is
    /// never given a path). Larger files fail with `too_large`.
    public static let maxFileBytes: Int64 = 512 << 20

    /// Decodes a camera RAW file, reduced to `maxLongEdge`: its embedded preview when that covers
    /// the request, else the RAW developed at half size.
    ///
    /// The preview is used when its long edge covers `maxLongEdge` (or the whole RAW image, for
    /// RAW files smaller than the request). A smaller, missing or unreadable preview makes
    /// ``RawDevelop`` develop the sensor data instead.
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: ``MediaLimits/maxPixels`` applies to the preview (checked from its header) and
    ///     to the sensor (checked before anything is unpacked); ``MediaLimits/timeout`` is the
    ///     deadline.
    ///   - maxLongEdge: Longest edge of the result (never upscaled).
    ///   - cancellation: The job's token, polled between steps and by libraw while it develops.
    /// - Returns: The picture and its EXIF-style orientation.
    /// - Throws: ``JobError`` `unsupported_format` (not a RAW format libraw knows, or a layout
    ///   it cannot develop), `too_large`, `pixel_limit`, `corrupt_media`, `io_error`, or a stop's
    ///   code.
    public static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                              cancellation: JobCancellation? = nil) throws(JobError) -> Result {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        let name = file.relativePath
        let session = try LibRawSession(file: file, stop: stop)
        let camera = session.cameraName
        let orientation = session.exifOrientation
        let (rawWidth, rawHeight) = (Int(session.data.pointee.sizes.width), Int(session.data.pointee.sizes.height))
        let needed = min(maxLongEdge, max(rawWidth, rawHeight) > 0 ? max(rawWidth, rawHeight) : maxLongEdge)
        let what = "the embedded preview of \(name)\(camera.map { " (\($0) RAW)" } ?? "")"

        func developed() throws(JobError) -> Result {
            let image = try RawDevelop.develop(session, camera: camera, limits: limits, maxLongEdge: maxLongEdge)
            return Result(image: image, orientation: orientation, camera: camera, rawWidth: rawWidth, rawHeight: rawHeight, developed: true)
        }

        guard let extracted = try extractPreview(session) else { return try developed() }
        let previewLong = max(extracted.width, extracted.height)
        if previewLong > 0 && previewLong < needed { return try developed() }
        let isJPEG = extracted.format == UInt32(CLibRaw_LIBRAW_THUMBNAIL_JPEG)
        // A preview layout the worker does not read: develop instead.
        guard isJPEG || extracted.format == UInt32(CLibRaw_LIBRAW_THUMBNAIL_BITMAP) else { return try developed() }
        // A preview known to cover the request no longer needs the file's bytes or libraw.
        if previewLong >= needed { session.close() }
        let image = isJPEG
            ? try PacketImageDecoder.decode(extracted.bytes, codec: .jpeg, maxLongEdge: maxLongEdge, limits: limits, what: what)
            : try bitmap(extracted.bytes, width: extracted.width, height: extracted.height,
                         colors: extracted.colors, maxLongEdge: maxLongEdge, limits: limits, what: what)
        // libraw does not always know the preview's size before decoding it; judge the result then.
        if previewLong == 0, max(image.width, image.height) < needed { return try developed() }
        return Result(image: image, orientation: orientation, camera: camera, rawWidth: rawWidth, rawHeight: rawHeight)
    }

    /// What libraw found of the embedded preview: its bytes and layout.
    private struct Extracted {
        var bytes: [UInt8]
        var format: UInt32
        var width: Int
        var height: Int
        var colors: Int
    }

    /// Lets libraw find the embedded preview and copies it out; `nil` when the file has none
    /// (or none libraw can extract), so the RAW is developed instead.
    private static func extractPreview(_ session: LibRawSession) throws(JobError) -> Extracted? {
        let raw = session.data
        let unpacked = libraw_unpack_thumb(raw)
        try session.stop.check()
        guard unpacked == CLibRaw_LIBRAW_SUCCESS else { return nil }
        let thumbnail = raw.pointee.thumbnail
        guard let start = thumbnail.thumb, thumbnail.tlength > 0 else { return nil }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: start, count: Int(thumbnail.tlength)))
        return Extracted(bytes: bytes, format: thumbnail.tformat.rawValue, width: Int(thumbnail.twidth), height: Int(thumbnail.theight),
                         colors: Int(thumbnail.tcolors))
    }

    /// MIME types libmagic gives camera RAW formats (most TIFF-based ones, NEF, ARW, DNG, PEF,
    /// sniff as `image/tiff`; see ``recognizes(_:sniffedMime:)``).
    public static let mimeTypes: Set<String> = [
        "image/x-canon-cr2", "image/x-canon-crw", "image/x-canon-cr3", "image/x-fuji-raf", "image/x-olympus-orf",
        "image/x-panasonic-rw2", "image/x-panasonic-raw", "image/x-nikon-nef", "image/x-sony-arw", "image/x-adobe-dng",
        "image/x-pentax-pef", "image/x-dcraw",
    ]

    /// Whether a file is a camera RAW file that should go to ``decode(file:limits:maxLongEdge:cancellation:)``
    /// rather than to FFmpeg's TIFF decoder (which would render the sensor mosaic or fail).
    ///
    /// True for the RAW MIME types above, RAW-only magic (ORF, RW2, RAF, CR3), and TIFF files
    /// whose first IFD has a DNGVersion tag, a CFA or LinearRaw photometric interpretation, or a
    /// camera's SubIFDs next to a Make tag (NEF, ARW, PEF and CR2 layouts). Plain TIFF images
    /// are not RAW.
    /// - Parameters:
    ///   - header: The file's first bytes (the MIME sniffing header).
    ///   - sniffedMime: libmagic's type for them.
    public static func recognizes(_ header: [UInt8], sniffedMime: String) -> Bool {
        if mimeTypes.contains(sniffedMime) { return true }
        let rawOnly: [[UInt8]] = [Array("IIRO".utf8), Array("IIRS".utf8), Array("MMOR".utf8), [0x49, 0x49, 0x55, 0x00], Array("FUJIFILMCCD-RAW".utf8)]
        if rawOnly.contains(where: { header.starts(with: $0) }) { return true }
        if header.count >= 12, header[4..<8].elementsEqual(Array("ftyp".utf8)), header[8..<12].elementsEqual(Array("crx ".utf8)) { return true }
        // CR2: a TIFF with "CR" at byte 8.
        if header.count >= 10, header.starts(with: [0x49, 0x49, 0x2A, 0x00]), header[8] == 0x43, header[9] == 0x52 { return true }
        guard let tags = firstIFDTags(header) else { return false }
        if tags[50706] != nil { return true }  // DNGVersion
        if let photometric = tags[262], photometric == 32803 || photometric == 34892 { return true }  // CFA, LinearRaw
        return tags[330] != nil && tags[271] != nil  // SubIFDs + Make
    }

    /// The tags of a TIFF's first IFD with their first SHORT/LONG value (0 for other types);
    /// every read is bounds-checked, `nil` when `header` is not a TIFF.
    static func firstIFDTags(_ header: [UInt8]) -> [UInt16: UInt32]? {
        let little: Bool
        if header.starts(with: [0x49, 0x49, 0x2A, 0x00]) { little = true } else if header.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { little = false } else { return nil }
        func u16(_ at: Int) -> UInt16? {
            guard at >= 0, at + 2 <= header.count else { return nil }
            return little ? UInt16(header[at]) | UInt16(header[at + 1]) << 8 : UInt16(header[at]) << 8 | UInt16(header[at + 1])
        }
        func u32(_ at: Int) -> UInt32? {
            guard let a = u16(at), let b = u16(at + 2) else { return nil }
            return little ? UInt32(a) | UInt32(b) << 16 : UInt32(a) << 16 | UInt32(b)
        }
        guard let offset = u32(4).map(Int.init), let count = u16(offset) else { return nil }
        var tags: [UInt16: UInt32] = [:]
        for index in 0..<min(Int(count), 512) {
            let entry = offset + 2 + index * 12
            guard let tag = u16(entry), let type = u16(entry + 2) else { break }
            tags[tag] = type == 3 ? u16(entry + 8).map(UInt32.init) ?? 0 : type == 4 ? u32(entry + 8) ?? 0 : 0
        }
        return tags
    }

    /// Whether the bytes start like a RAW container: TIFF-based (DNG, CR2, NEF, ARW, PEF, ...),
    /// Olympus ORF, Panasonic RW2, Fujifilm RAF, or Canon CR3 (ISO BMFF, brand `crx `).
    static func looksLikeRaw(_ bytes: [UInt8]) -> Bool {
        let prefixes: [[UInt8]] = [[0x49, 0x49, 0x2A, 0x00], [0x4D, 0x4D, 0x00, 0x2A], Array("IIRO".utf8), Array("IIRS".utf8),
                                   Array("MMOR".utf8), [0x49, 0x49, 0x55, 0x00], Array("FUJIFILMCCD-RAW".utf8)]
        if prefixes.contains(where: { bytes.starts(with: $0) }) { return true }
        return bytes.count >= 12 && bytes[4..<8].elementsEqual(Array("ftyp".utf8)) && bytes[8..<12].elementsEqual(Array("crx ".utf8))
    }

    /// libraw's `flip` (dcraw's 0, 3, 5, 6 and mirrored variants) as an EXIF orientation.
    ///
    /// dcraw maps EXIF orientation `o` to `flip = "50132467"[o & 7]`; this is its inverse.
    public static func exifOrientation(fromFlip flip: Int32) -> Int {
        switch flip {
        case 1: 2
        case 3: 3
        case 2: 4
        case 4: 5
        case 6: 6
        case 7: 7
        case 5: 8
        default: 1
        }
    }

    /// An uncompressed 8-bit RGB (or grey) preview.
    private static func bitmap(_ bytes: [UInt8], width: Int, height: Int, colors: Int, maxLongEdge: Int,
                               limits: MediaLimits, what: String) throws(JobError) -> RGBAImage {
        guard width > 0, height > 0, colors == 3 || colors == 1 else {
            throw JobError(.unsupportedFormat, "\(what.prefix(1).uppercased() + what.dropFirst()) has an unusual layout (\(colors) colours).")
        }
        guard Int64(width) * Int64(height) <= limits.maxPixels else {
            throw JobError(.pixelLimit, "\(what.prefix(1).uppercased() + what.dropFirst()) is \(width)×\(height) pixels, over the limit of \(limits.maxPixels) pixels.")
        }
        guard bytes.count >= width * height * colors else {
            throw JobError(.corruptMedia, "\(what.prefix(1).uppercased() + what.dropFirst()) is shorter than its size says.")
        }
        var pixels = [UInt8](repeating: 255, count: width * height * 4)
        for i in 0..<(width * height) {
            for c in 0..<3 { pixels[i * 4 + c] = bytes[i * colors + (colors == 3 ? c : 0)] }
        }
        let full = RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: false)
        let size = RGBAImage.fittedSize(width: width, height: height, maxLongEdge: maxLongEdge)
        return try FrameConverter.resize(full, width: size.width, height: size.height)
    }
}
