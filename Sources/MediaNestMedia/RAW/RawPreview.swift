import CLibRaw
public import MediaNestCore

/// Camera RAW files (CR2, CR3, NEF, ARW, DNG, ORF, RW2, RAF, ...) served from the JPEG preview the
/// camera embedded, read with libraw.
///
/// The worker never demosaics: a full RAW development costs seconds and hundreds of megabytes,
/// and every camera already stores a preview of its own rendering. When that preview is too
/// small for the request, the job fails with `unsupported_format` and says so, instead of
/// producing a blurry upscale.
public enum RawPreview {
    /// A decoded embedded preview and how to turn it upright.
    public struct Result: Sendable, Hashable {
        /// The preview, reduced to the requested size; **not yet oriented**.
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
    }

    /// Largest RAW file read into memory for libraw (libraw's C API reads from a buffer; it is
    /// never given a path). Larger files fail with `too_large`.
    public static let maxFileBytes: Int64 = 512 << 20

    /// Decodes the embedded preview of a camera RAW file, reduced to `maxLongEdge`.
    ///
    /// The preview is used when its long edge covers `maxLongEdge` (or the whole RAW image, for
    /// RAW files smaller than the request).
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: ``MediaLimits/maxPixels`` applies to the preview (checked from its header).
    ///   - maxLongEdge: Longest edge of the result (never upscaled).
    ///   - cancellation: The job's token, polled between steps.
    /// - Returns: The preview and its EXIF-style orientation.
    /// - Throws: ``JobError`` `unsupported_format` (not a RAW format libraw knows, no usable
    ///   preview, or a preview smaller than requested), `too_large`, `pixel_limit`,
    ///   `corrupt_media`, `io_error`, or a stop's code.
    public static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                              cancellation: JobCancellation? = nil) throws(JobError) -> Result {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        let name = file.relativePath
        guard file.size <= maxFileBytes else {
            throw JobError(.tooLarge, "The RAW file \(name) is \(file.size) bytes; at most \(maxFileBytes) bytes are read for its preview.")
        }
        let extracted = try extractPreview(file, stop: stop)
        let camera = extracted.camera
        let what = "the embedded preview of \(name)\(camera.map { " (\($0) RAW)" } ?? "")"
        let (rawWidth, rawHeight, orientation) = (extracted.rawWidth, extracted.rawHeight, extracted.orientation)
        let previewLong = max(extracted.width, extracted.height)
        let needed = min(maxLongEdge, max(rawWidth, rawHeight) > 0 ? max(rawWidth, rawHeight) : maxLongEdge)
        if previewLong > 0 && previewLong < needed {
            throw JobError(.unsupportedFormat, "The RAW file \(name)\(camera.map { " (\($0))" } ?? "") has an embedded preview of only \(extracted.width)×\(extracted.height) pixels, too small for the \(maxLongEdge) px requested; full RAW decoding is not supported.")
        }
        let previewBytes = extracted.bytes
        guard !previewBytes.isEmpty else {
            throw JobError(.unsupportedFormat, "The RAW file \(name) has an empty embedded preview, and full RAW decoding is not supported.")
        }

        let image: RGBAImage
        switch extracted.format {
        case UInt32(CLibRaw_LIBRAW_THUMBNAIL_JPEG):
            image = try PacketImageDecoder.decode(previewBytes, codec: .jpeg, maxLongEdge: maxLongEdge, limits: limits, what: what)
        case UInt32(CLibRaw_LIBRAW_THUMBNAIL_BITMAP):
            image = try bitmap(previewBytes, width: extracted.width, height: extracted.height,
                               colors: extracted.colors, maxLongEdge: maxLongEdge, limits: limits, what: what)
        default:
            throw JobError(.unsupportedFormat, "The embedded preview of \(name) is in a layout the worker does not read (libraw thumbnail format \(extracted.format)); full RAW decoding is not supported.")
        }
        // libraw does not always know the preview's size before decoding it; judge the result then.
        if previewLong == 0, max(image.width, image.height) < needed {
            throw JobError(.unsupportedFormat, "The RAW file \(name) has an embedded preview of only \(image.width)×\(image.height) pixels, too small for the \(maxLongEdge) px requested; full RAW decoding is not supported.")
        }
        return Result(image: image, orientation: orientation, camera: camera, rawWidth: rawWidth, rawHeight: rawHeight)
    }

    /// What libraw found: the preview's bytes and layout, and the RAW image's facts.
    private struct Extracted {
        var bytes: [UInt8]
        var format: UInt32
        var width: Int
        var height: Int
        var colors: Int
        var orientation: Int
        var camera: String?
        var rawWidth: Int
        var rawHeight: Int
    }

    /// Reads the file into a buffer libraw owns for its whole life (libraw keeps the pointer it is
    /// given), lets libraw find the preview, and copies the preview out; the buffer and libraw's
    /// state are gone before the preview is decoded.
    private static func extractPreview(_ file: SafeFile, stop: StopGuard) throws(JobError) -> Extracted {
        let name = file.relativePath
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.size), alignment: 16)
        defer { buffer.deallocate() }
        switch file.readFully(into: buffer, at: 0) {
        case .success(let n) where n == buffer.count: break
        case .success(let n): throw JobError(.ioError, "The file \(name) shrank while being read (\(n) of \(buffer.count) bytes).")
        case .failure(let error): throw JobError(.ioError, "Reading \(name) failed: \(errnoText(error)).")
        }
        try stop.check()

        guard let raw = libraw_init(0) else { throw JobError(.internalError, "libraw could not be initialised.") }
        defer { libraw_close(raw) }
        let opened = libraw_open_buffer(raw, buffer.baseAddress, buffer.count)
        if opened != CLibRaw_LIBRAW_SUCCESS {
            let header = [UInt8](UnsafeRawBufferPointer(rebasing: buffer.prefix(MimeSniffer.headerSize)))
            // libraw reports a file it cannot place as unsupported, or as an I/O error when its
            // format guesses run off the end of the buffer: either way, unless the bytes start like
            // a RAW container, this is simply another format.
            if opened == CLibRaw_LIBRAW_FILE_UNSUPPORTED || !looksLikeRaw(header) {
                let kind = (try? MimeSniffer.sniff(header)) ?? "unknown"
                throw JobError(.unsupportedFormat, "The file \(name) (\(kind)) is not a camera RAW format libraw can read, and no other decoder handles it.")
            }
            throw JobError(.corruptMedia, "The RAW file \(name) cannot be read: \(errorText(opened)).")
        }
        try stop.check()
        let camera = cameraName(raw)
        let unpacked = libraw_unpack_thumb(raw)
        if unpacked != CLibRaw_LIBRAW_SUCCESS {
            if unpacked == CLibRaw_LIBRAW_NO_THUMBNAIL || unpacked == CLibRaw_LIBRAW_UNSUPPORTED_THUMBNAIL {
                throw JobError(.unsupportedFormat, "The RAW file \(name)\(camera.map { " (\($0))" } ?? "") has no usable embedded preview, and full RAW decoding is not supported.")
            }
            throw JobError(.corruptMedia, "The embedded preview of \(name) cannot be read: \(errorText(unpacked)).")
        }
        try stop.check()
        let thumbnail = raw.pointee.thumbnail
        let bytes = thumbnail.thumb.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: Int(thumbnail.tlength))) } ?? []
        return Extracted(bytes: bytes, format: thumbnail.tformat.rawValue, width: Int(thumbnail.twidth), height: Int(thumbnail.theight),
                         colors: Int(thumbnail.tcolors), orientation: exifOrientation(fromFlip: raw.pointee.sizes.flip), camera: camera,
                         rawWidth: Int(raw.pointee.sizes.width), rawHeight: Int(raw.pointee.sizes.height))
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

    private static func cameraName(_ raw: UnsafeMutablePointer<libraw_data_t>) -> String? {
        func text<T>(_ tuple: T) -> String {
            withUnsafeBytes(of: tuple) { buffer in
                String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        let make = text(raw.pointee.idata.make).trimmingSpaces()
        let model = text(raw.pointee.idata.model).trimmingSpaces()
        let name = model.hasPrefix(make) ? model : [make, model].filter { !$0.isEmpty }.joined(separator: " ")
        return name.isEmpty ? nil : name
    }

    private static func errorText(_ code: Int32) -> String {
        libraw_strerror(code).map { String(cString: $0) } ?? "libraw error \(code)"
    }
}
