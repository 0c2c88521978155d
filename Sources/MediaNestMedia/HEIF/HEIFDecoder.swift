import CFFmpeg
import CHeif
public import MediaNestCore

/// What ``HEIFDecoder/probe(file:limits:cancellation:)`` learns about a HEIF/AVIF still without
/// decoding any pixels.
public struct HEIFInfo: Sendable, Hashable {
    /// Display width: after the file's `irot`/`imir`/`clap` transforms (what a viewer shows).
    public var width: Int
    /// Display height, after the transforms.
    public var height: Int
    /// Coded width from the `ispe` box, before any transform (the size the decoder allocates).
    public var codedWidth: Int
    /// Coded height from the `ispe` box.
    public var codedHeight: Int
    /// The EXIF block of the primary image, starting at its TIFF header (`II`/`MM`), ready for
    /// ``ImageHeaderParser/parseExif(_:)``; `nil` when there is none or it is malformed.
    public var exif: [UInt8]?
    /// Whether the primary image has an alpha plane.
    public var hasAlpha: Bool
    /// Luma bit depth (8, 10, 12), when the file says.
    public var bitDepth: Int?
    /// The major brand of the `ftyp` box: `heic`, `heix`, `mif1`, `avif`, ...
    public var brand: String
    /// Whether the coded images are AV1 (an AVIF file) rather than HEVC.
    public var isAVIF: Bool
}

/// Decodes HEIC/HEIF and AVIF stills with libheif.
///
/// FFmpeg 5.1 cannot read HEIF's item-based structure (every iPhone photo is a grid of HEVC
/// tiles described by items, not a track), and reads AVIF without applying `irot`/`imir`, so
/// such files come here.
///
/// Safety, in order:
/// - libheif reads through the job's ``SafeFile`` descriptor (a `heif_reader` over `pread`),
///   never by path, and each read polls the job's cancellation and deadline.
/// - libheif's own security limits stay on; its per-dimension image size limit is set to the
///   tighter of its default (32768) and ``MediaLimits/maxPixels``.
/// - The primary image's `ispe` size is checked against ``MediaLimits/maxPixels`` **before
///   anything is decoded**; then the per-dimension limit is lowered to the `ispe` size, so a grid
///   whose descriptor claims a larger canvas than its `ispe` is refused too.
/// - Errors become ``JobError``s; libheif never aborts the process on bad input.
///
/// The output is **already upright**: libheif applies `irot`/`imir` (and `clap`). HEIF's EXIF
/// orientation is informative only and must not be applied again.
public enum HEIFDecoder {
    /// libheif's own default per-dimension limit (`MAX_IMAGE_WIDTH` in 1.15).
    static let libheifMaximumDimension = 32768

    /// Decodes the primary image, applies its transforms, and reduces it to `maxLongEdge`.
    ///
    /// libheif 1.15 cannot decode at a reduced size, so the full image is decoded and its planes
    /// scaled with libswscale; the pixel limit bounds that memory. A whole HEVC picture of more
    /// than 8 bits is decoded by libavcodec and reduced before libheif copies it
    /// (``HEVCReducingDecoder``). When the file embeds a thumbnail of the
    /// same picture that still covers `maxLongEdge` (iPhones store 320×240), that is decoded
    /// instead, unless `useEmbeddedThumbnail` is `false`.
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: ``MediaLimits/maxPixels`` and ``MediaLimits/timeout`` apply.
    ///   - maxLongEdge: Longest edge of the result (never upscaled).
    ///   - cancellation: The job's token, polled on every read.
    ///   - useEmbeddedThumbnail: Whether a covering embedded thumbnail may stand in for the image.
    ///   - colourSpace: The output's colour space; the image's `colr` profile (ICC or nclx) is
    ///     converted to it with LittleCMS (``ColourManagement``).
    /// - Returns: The upright picture, 8-bit sRGB (or Display P3); `hasAlpha` when the image has an alpha plane.
    /// - Throws: ``JobError`` `pixel_limit` (checked before decoding), `corrupt_media`,
    ///   `unsupported_format` (a HEIF feature or codec libheif cannot handle), `io_error`, or a
    ///   stop's code.
    public static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                              cancellation: JobCancellation? = nil, useEmbeddedThumbnail: Bool = true,
                              colourSpace: StillColourSpace = .srgb) throws(JobError) -> RGBAImage {
        try decode(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: cancellation, useEmbeddedThumbnail: useEmbeddedThumbnail,
                   colourSpace: colourSpace, reduceInDecoder: true)
    }

    /// ``decode(file:limits:maxLongEdge:cancellation:useEmbeddedThumbnail:colourSpace:)``, with
    /// the choice of libheif's own HEVC decoding (`reduceInDecoder: false`), which the tests
    /// compare ``HEVCReducingDecoder`` to.
    static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int, cancellation: JobCancellation?, useEmbeddedThumbnail: Bool,
                       colourSpace: StillColourSpace, reduceInDecoder: Bool) throws(JobError) -> RGBAImage {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        let context = try HEIFContext(file: file, limits: limits, stop: stop)
        let primary = try context.primaryHandle()
        defer { heif_image_handle_release(primary) }
        _ = try checkedSize(primary, file: file, limits: limits)
        let thumbnail = useEmbeddedThumbnail ? coveringThumbnail(of: primary, maxLongEdge: maxLongEdge, limits: limits) : nil
        defer { if let thumbnail { heif_image_handle_release(thumbnail) } }
        let handle = thumbnail ?? primary
        let (codedWidth, codedHeight) = try checkedSize(handle, file: file, limits: limits)
        // From here a grid may not assemble a canvas larger than its ispe claims.
        heif_context_set_maximum_image_size_limit(context.pointer, Int32(max(codedWidth, codedHeight) + 1))
        try stop.check()

        // The decoded item's own colr, else the primary's (a thumbnail item may have none).
        var colour = sourceColour(of: handle)
        if colour == .unspecified, thumbnail != nil { colour = sourceColour(of: primary) }
        let colourPlan = ColourManagement.plan(for: colour, layout: .rgba16, target: colourSpace)
        let hasAlpha = heif_image_handle_has_alpha_channel(handle) != 0
        let premultiplied = hasAlpha && heif_image_handle_is_premultiplied_alpha(handle) != 0
        // A whole HEVC picture is reduced by libavcodec and libswscale before libheif sees it
        // (``HEVCReducingDecoder``): libheif's copies of it, and its 4:4:4 conversion, are then of
        // the output's size. Only for more than 8 bits (an 8-bit picture costs libheif far less
        // than the budget, and its samples would be rounded to 8 bits once more on the way), not
        // for alpha (its plane must match the picture's) nor for a crop (`clap`), which libheif
        // measures in the full picture's pixels.
        let displayWidth = Int(heif_image_handle_get_width(handle)), displayHeight = Int(heif_image_handle_get_height(handle))
        let reducedSize = RGBAImage.fittedSize(width: codedWidth, height: codedHeight, maxLongEdge: maxLongEdge)
        var request: HEVCReducingDecoder.Request?
        if thumbnail == nil, !hasAlpha, reduceInDecoder, heif_image_handle_get_luma_bits_per_pixel(handle) > 8,
           (displayWidth, displayHeight) == (codedWidth, codedHeight) || (displayWidth, displayHeight) == (codedHeight, codedWidth),
           reducedSize.width < codedWidth || reducedSize.height < codedHeight,
           heif_register_decoder(context.pointer, HEVCReducingDecoder.plugin).code == heif_error_Ok {
            request = HEVCReducingDecoder.Request(codedWidth: codedWidth, codedHeight: codedHeight,
                                                  reducedWidth: reducedSize.width, reducedHeight: reducedSize.height, limits: limits)
        }
        let result: Result<RGBAImage, JobError> = HEVCReducingDecoder.$current.withValue(request) {
            do throws(JobError) {
                return .success(try decodeUpright(handle, context: context, file: file, limits: limits, maxLongEdge: maxLongEdge,
                                                  hasAlpha: hasAlpha, premultiplied: premultiplied, stop: stop, colour: colourPlan))
            } catch {
                // The plugin's own words when it failed (libheif only says "plugin error").
                return .failure(request?.failure ?? error)
            }
        }
        return try result.get()
    }

    /// The decode proper: libheif's planes reduced by libswscale, else libheif's RGBA conversion.
    private static func decodeUpright(_ handle: OpaquePointer, context: HEIFContext, file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                                      hasAlpha: Bool, premultiplied: Bool, stop: StopGuard, colour colourPlan: ColourPlan?) throws(JobError) -> RGBAImage {
        // The decoder's own planes, reduced straight to the output size (about 1.5 to 3 bytes per
        // pixel for the YCbCr planes instead of those plus two full-size RGBA copies); libheif's
        // RGBA conversion only for what libswscale cannot read (e.g. GBR or YCgCo matrices).
        if let image = try decodePlanar(handle, context: context, file: file, limits: limits, maxLongEdge: maxLongEdge,
                                        hasAlpha: hasAlpha, stop: stop, colour: colourPlan) {
            return premultiplied ? image.unpremultiplied() : image
        }
        try stop.check()
        let decoded = try decodeImage(handle, context: context, file: file, colorspace: heif_colorspace_RGB,
                                      chroma: heif_chroma_interleaved_RGBA, hdrTo8Bit: true)
        defer { heif_image_release(decoded) }

        let width = Int(heif_image_get_width(decoded, heif_channel_interleaved))
        let height = Int(heif_image_get_height(decoded, heif_channel_interleaved))
        var stride: Int32 = 0
        guard width > 0, height > 0, Int64(width) * Int64(height) <= limits.maxPixels,
              let plane = heif_image_get_plane_readonly(decoded, heif_channel_interleaved, &stride),
              Int(stride) >= width * 4 else {
            throw JobError(.corruptMedia, "The HEIF image \(file.relativePath) decoded to an unusable picture (\(width)×\(height)).")
        }
        // Scaled straight from libheif's buffer (rows may be padded): no copy of the full picture.
        let size = RGBAImage.fittedSize(width: width, height: height, maxLongEdge: maxLongEdge)
        var planes: [UnsafePointer<UInt8>?] = [plane, nil, nil, nil]
        var strides: [Int32] = [stride, 0, 0, 0]
        var image = try FrameConverter.convert(planes: &planes, strides: &strides, width: width, height: height, format: AV_PIX_FMT_RGBA,
                                               fullRange: true, matrix: nil, toWidth: size.width, height: size.height, colour: colourPlan)
        image.hasAlpha = hasAlpha
        // RGBAImage is straight alpha; libheif 1.15 hands premultiplied images over as stored.
        return premultiplied ? image.unpremultiplied() : image
    }

    /// Runs libheif's decode of `handle` into `colorspace`/`chroma` (pinned to one CPU, see
    /// ``OneCPU``); the caller releases the image.
    private static func decodeImage(_ handle: OpaquePointer, context: HEIFContext, file: SafeFile, colorspace: heif_colorspace,
                                    chroma: heif_chroma, hdrTo8Bit: Bool) throws(JobError) -> OpaquePointer {
        guard let options = heif_decoding_options_alloc() else {
            throw JobError(.internalError, "libheif could not allocate decoding options.")
        }
        defer { heif_decoding_options_free(options) }
        options.pointee.convert_hdr_to_8bit = hdrTo8Bit ? 1 : 0
        var decoded: OpaquePointer?
        let status = OneCPU.run { heif_decode_image(handle, &decoded, colorspace, chroma, options) }
        try context.throwIfFailed(status, doing: "decoded")
        guard let decoded else { throw JobError(.corruptMedia, "The HEIF image \(file.relativePath) decoded to nothing.") }
        return decoded
    }

    /// Decodes `handle` in its own YCbCr or monochrome planes and has libswscale reduce them to
    /// fit `maxLongEdge`, with the matrix and range of the file's `nclx` (as libheif's own
    /// conversion would); `nil` when the planes are in a layout or matrix libswscale cannot take,
    /// for the caller to use libheif's RGBA conversion instead.
    private static func decodePlanar(_ handle: OpaquePointer, context: HEIFContext, file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                                     hasAlpha: Bool, stop: StopGuard, colour: ColourPlan?) throws(JobError) -> RGBAImage? {
        guard let matrix = swscaleMatrix(handleProfile(handle)) else { return nil }
        // YCbCr with the chroma left as coded: libheif 1.15 converts "undefined" to planar RGB.
        let decoded = try decodeImage(handle, context: context, file: file, colorspace: heif_colorspace_YCbCr,
                                      chroma: heif_chroma_undefined, hdrTo8Bit: false)
        defer { heif_image_release(decoded) }
        try stop.check()
        // The matrix of the decoded picture when the codec stream carries one.
        var imageMatrix = matrix
        var imageFullRange = handleProfile(handle)?.fullRange ?? true
        if let profile = imageProfile(decoded) {
            guard let m = swscaleMatrix(profile) else { return nil }
            imageMatrix = m
            imageFullRange = profile.fullRange
        }

        let width = Int(heif_image_get_width(decoded, heif_channel_Y))
        let height = Int(heif_image_get_height(decoded, heif_channel_Y))
        guard width > 0, height > 0, Int64(width) * Int64(height) <= limits.maxPixels else {
            throw JobError(.corruptMedia, "The HEIF image \(file.relativePath) decoded to an unusable picture (\(width)×\(height)).")
        }
        let depth = Int(heif_image_get_bits_per_pixel_range(decoded, heif_channel_Y))
        let alpha = hasAlpha && heif_image_has_channel(decoded, heif_channel_Alpha) != 0
        if alpha && Int(heif_image_get_bits_per_pixel_range(decoded, heif_channel_Alpha)) != depth { return nil }
        let colorspace = heif_image_get_colorspace(decoded)
        let chroma = heif_image_get_chroma_format(decoded)
        guard let format = planarFormat(colorspace: colorspace, chroma: chroma, depth: depth, alpha: alpha) else { return nil }
        var channels: [heif_channel] = colorspace == heif_colorspace_monochrome ? [heif_channel_Y] : [heif_channel_Y, heif_channel_Cb, heif_channel_Cr]
        if alpha { channels.append(heif_channel_Alpha) }
        var planes: [UnsafePointer<UInt8>?] = [nil, nil, nil, nil]
        var strides: [Int32] = [0, 0, 0, 0]
        for (index, channel) in channels.enumerated() {
            if channel != heif_channel_Y && channel != heif_channel_Alpha,
               Int(heif_image_get_bits_per_pixel_range(decoded, channel)) != depth { return nil }
            var stride: Int32 = 0
            guard let plane = heif_image_get_plane_readonly(decoded, channel, &stride), stride > 0 else { return nil }
            planes[index] = plane
            strides[index] = stride
        }
        let size = RGBAImage.fittedSize(width: width, height: height, maxLongEdge: maxLongEdge)
        var image = try FrameConverter.convert(planes: &planes, strides: &strides, width: width, height: height, format: format,
                                               fullRange: imageFullRange,
                                               matrix: colorspace == heif_colorspace_monochrome ? nil : imageMatrix,
                                               toWidth: size.width, height: size.height, colour: colour)
        image.hasAlpha = alpha
        return image
    }

    /// The libswscale pixel format of libheif's planes, or `nil` when there is none.
    static func planarFormat(colorspace: heif_colorspace, chroma: heif_chroma, depth: Int, alpha: Bool) -> AVPixelFormat? {
        switch (colorspace, chroma, depth, alpha) {
        case (heif_colorspace_monochrome, heif_chroma_monochrome, 8, false): AV_PIX_FMT_GRAY8
        case (heif_colorspace_monochrome, heif_chroma_monochrome, 10, false): AV_PIX_FMT_GRAY10LE
        case (heif_colorspace_monochrome, heif_chroma_monochrome, 12, false): AV_PIX_FMT_GRAY12LE
        case (heif_colorspace_YCbCr, heif_chroma_420, 8, false): AV_PIX_FMT_YUV420P
        case (heif_colorspace_YCbCr, heif_chroma_420, 10, false): AV_PIX_FMT_YUV420P10LE
        case (heif_colorspace_YCbCr, heif_chroma_420, 12, false): AV_PIX_FMT_YUV420P12LE
        case (heif_colorspace_YCbCr, heif_chroma_422, 8, false): AV_PIX_FMT_YUV422P
        case (heif_colorspace_YCbCr, heif_chroma_422, 10, false): AV_PIX_FMT_YUV422P10LE
        case (heif_colorspace_YCbCr, heif_chroma_422, 12, false): AV_PIX_FMT_YUV422P12LE
        case (heif_colorspace_YCbCr, heif_chroma_444, 8, false): AV_PIX_FMT_YUV444P
        case (heif_colorspace_YCbCr, heif_chroma_444, 10, false): AV_PIX_FMT_YUV444P10LE
        case (heif_colorspace_YCbCr, heif_chroma_444, 12, false): AV_PIX_FMT_YUV444P12LE
        case (heif_colorspace_YCbCr, heif_chroma_420, 8, true): AV_PIX_FMT_YUVA420P
        case (heif_colorspace_YCbCr, heif_chroma_420, 10, true): AV_PIX_FMT_YUVA420P10LE
        case (heif_colorspace_YCbCr, heif_chroma_422, 8, true): AV_PIX_FMT_YUVA422P
        case (heif_colorspace_YCbCr, heif_chroma_422, 10, true): AV_PIX_FMT_YUVA422P10LE
        case (heif_colorspace_YCbCr, heif_chroma_422, 12, true): AV_PIX_FMT_YUVA422P12LE
        case (heif_colorspace_YCbCr, heif_chroma_444, 8, true): AV_PIX_FMT_YUVA444P
        case (heif_colorspace_YCbCr, heif_chroma_444, 10, true): AV_PIX_FMT_YUVA444P10LE
        case (heif_colorspace_YCbCr, heif_chroma_444, 12, true): AV_PIX_FMT_YUVA444P12LE
        default: nil
        }
    }

    /// An `nclx` profile's matrix and range.
    struct ColourProfile { var matrix: UInt32; var fullRange: Bool }

    private static func handleProfile(_ handle: OpaquePointer) -> ColourProfile? {
        nclxProfile({ heif_image_handle_get_nclx_color_profile(handle, $0) }) {
            ColourProfile(matrix: $0.matrix_coefficients.rawValue, fullRange: $0.full_range_flag != 0)
        }
    }

    private static func imageProfile(_ image: OpaquePointer) -> ColourProfile? {
        nclxProfile({ heif_image_get_nclx_color_profile(image, $0) }) {
            ColourProfile(matrix: $0.matrix_coefficients.rawValue, fullRange: $0.full_range_flag != 0)
        }
    }

    /// The libswscale matrix for an `nclx` matrix, with libheif's fallback for none or
    /// unspecified (BT.601); `nil` for matrices libswscale has no coefficients for.
    static func swscaleMatrix(_ profile: ColourProfile?) -> Int32? {
        switch profile?.matrix ?? 2 {
        case 1: CFFmpeg_SWS_CS_ITU709
        case 2, 5, 6: CFFmpeg_SWS_CS_ITU601
        case 9, 10: CFFmpeg_SWS_CS_BT2020
        default: nil
        }
    }

    /// Reads the primary image's size, EXIF, alpha and brand without decoding pixels.
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: ``MediaLimits/maxPixels`` applies (a bomb is refused here already).
    ///   - cancellation: The job's token, polled on every read.
    /// - Returns: What was found.
    /// - Throws: ``JobError`` `pixel_limit`, `corrupt_media`, `unsupported_format`, `io_error`, or a stop's code.
    public static func probe(file: SafeFile, limits: MediaLimits, cancellation: JobCancellation? = nil) throws(JobError) -> HEIFInfo {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        return try probe(file: file, limits: limits, stop: stop)
    }

    static func probe(file: SafeFile, limits: MediaLimits, stop: StopGuard) throws(JobError) -> HEIFInfo {
        let header = try file.read(at: 0, count: 64)
        let context = try HEIFContext(file: file, limits: limits, stop: stop)
        let handle = try context.primaryHandle()
        defer { heif_image_handle_release(handle) }
        let (codedWidth, codedHeight) = try checkedSize(handle, file: file, limits: limits)
        let luma = Int(heif_image_handle_get_luma_bits_per_pixel(handle))
        let brand = majorBrand(header)
        let isAVIF = brand == "avif" || brand == "avis" || header.withUnsafeBufferPointer {
            heif_has_compatible_brand($0.baseAddress, Int32($0.count), "avif") == 1
        }
        return HEIFInfo(width: Int(heif_image_handle_get_width(handle)), height: Int(heif_image_handle_get_height(handle)),
                        codedWidth: codedWidth, codedHeight: codedHeight, exif: exifBlock(handle),
                        hasAlpha: heif_image_handle_has_alpha_channel(handle) != 0,
                        bitDepth: luma > 0 ? luma : nil, brand: brand, isAVIF: isAVIF)
    }

    /// The MIME types libmagic gives HEIF-family stills: route these here (when
    /// ``recognizes(_:)`` agrees), not to FFmpeg.
    public static let mimeTypes: Set<String> = ["image/heic", "image/heif", "image/avif", "image/heic-sequence", "image/heif-sequence"]

    /// Whether `header` (the file's first bytes) is a HEIF-family file libheif says it can read.
    public static func recognizes(_ header: [UInt8]) -> Bool {
        guard header.count >= 12 else { return false }
        let result = header.withUnsafeBufferPointer { heif_check_filetype($0.baseAddress, Int32(min($0.count, 4096))) }
        return result == heif_filetype_yes_supported
    }

    /// The smallest embedded thumbnail (iPhones store a 320×240 one) that covers `maxLongEdge` and
    /// shows the same picture: same displayed aspect ratio, so also the same orientation. Decoding
    /// it instead of a 12 MP grid is most of the cost of a small thumbnail. The caller releases it.
    private static func coveringThumbnail(of primary: OpaquePointer, maxLongEdge: Int, limits: MediaLimits) -> OpaquePointer? {
        let count = Int(heif_image_handle_get_number_of_thumbnails(primary))
        guard count > 0 else { return nil }
        var ids = [heif_item_id](repeating: 0, count: min(count, 8))
        let listed = Int(heif_image_handle_get_list_of_thumbnail_IDs(primary, &ids, Int32(ids.count)))
        let width = Double(heif_image_handle_get_width(primary)), height = Double(heif_image_handle_get_height(primary))
        guard width > 0, height > 0 else { return nil }
        var best: (handle: OpaquePointer, long: Int)?
        for id in ids.prefix(max(0, listed)) {
            var candidate: OpaquePointer?
            guard heif_image_handle_get_thumbnail(primary, id, &candidate).code == heif_error_Ok, let candidate else { continue }
            let w = Int(heif_image_handle_get_width(candidate)), h = Int(heif_image_handle_get_height(candidate))
            let iw = Int64(heif_image_handle_get_ispe_width(candidate)), ih = Int64(heif_image_handle_get_ispe_height(candidate))
            let sameShape = w > 0 && h > 0 && abs(Double(w) / Double(h) - width / height) <= 0.02 * (width / height)
            let long = max(w, h)
            if sameShape, long >= maxLongEdge, Double(long) < max(width, height), iw * ih <= limits.maxPixels,
               best.map({ long < $0.long }) ?? true {
                if let previous = best?.handle { heif_image_handle_release(previous) }
                best = (candidate, long)
            } else {
                heif_image_handle_release(candidate)
            }
        }
        return best?.handle
    }

    /// The `ispe` size of the primary image, refused with `pixel_limit` when over the limit.
    private static func checkedSize(_ handle: OpaquePointer, file: SafeFile, limits: MediaLimits) throws(JobError) -> (Int, Int) {
        var width = Int(heif_image_handle_get_ispe_width(handle))
        var height = Int(heif_image_handle_get_ispe_height(handle))
        if width <= 0 || height <= 0 {
            // No ispe (invalid per the standard, but seen): fall back to the handle's size.
            width = Int(heif_image_handle_get_width(handle))
            height = Int(heif_image_handle_get_height(handle))
        }
        guard width > 0, height > 0 else {
            throw JobError(.corruptMedia, "The HEIF image \(file.relativePath) does not declare its size.")
        }
        let pixels = Int64(width) * Int64(height)
        if pixels > limits.maxPixels {
            throw JobError(.pixelLimit, "The image \(file.relativePath) is \(width)x\(height) (\(pixels) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }
        return (width, height)
    }

    /// The first EXIF block, starting at its TIFF header; at most 4 MiB.
    private static func exifBlock(_ handle: OpaquePointer) -> [UInt8]? {
        var id: heif_item_id = 0
        guard heif_image_handle_get_list_of_metadata_block_IDs(handle, "Exif", &id, 1) == 1 else { return nil }
        let size = heif_image_handle_get_metadata_size(handle, id)
        guard size >= 8, size <= 4 << 20 else { return nil }
        var block = [UInt8](repeating: 0, count: size)
        let status = block.withUnsafeMutableBytes { heif_image_handle_get_metadata(handle, id, $0.baseAddress) }
        guard status.code == heif_error_Ok else { return nil }
        return tiffPart(ofExifItem: block)
    }

    /// Skips the HEIF Exif item's 4-byte big-endian offset (and what it skips, usually Apple's
    /// `Exif\0\0`) to reach the TIFF header.
    static func tiffPart(ofExifItem block: [UInt8]) -> [UInt8]? {
        guard block.count >= 8 else { return nil }
        let offset = Int(block[0]) << 24 | Int(block[1]) << 16 | Int(block[2]) << 8 | Int(block[3])
        func isTIFF(_ at: Int) -> Bool {
            at >= 0 && at + 4 <= block.count && (block[at..<at + 4].elementsEqual([0x49, 0x49, 0x2A, 0x00]) || block[at..<at + 4].elementsEqual([0x4D, 0x4D, 0x00, 0x2A]))
        }
        if offset <= block.count - 4, isTIFF(4 + offset) { return Array(block[(4 + offset)...]) }
        // Some writers get the offset wrong; accept a TIFF header right after "Exif\0\0".
        for candidate in [4, 10] where isTIFF(candidate) { return Array(block[candidate...]) }
        return nil
    }

    private static func majorBrand(_ header: [UInt8]) -> String {
        guard header.count >= 12, header[4..<8].elementsEqual(Array("ftyp".utf8)) else { return "" }
        return String(decoding: header[8..<12], as: UTF8.self)
    }
}

/// One libheif context reading one ``SafeFile`` through `pread`: the single owner of the
/// `heif_context`, the `heif_reader` table (libheif keeps a pointer to it) and the read state.
final class HEIFContext {
    let pointer: OpaquePointer
    private let reader: UnsafeMutablePointer<heif_reader>
    private let source: HEIFSource
    private let file: SafeFile

    /// libheif loads its codec plugins in `heif_init`; once per process is enough (it is reference counted).
    private static let initialized: Bool = {
        _ = heif_init(nil)
        return true
    }()

    init(file: SafeFile, limits: MediaLimits, stop: StopGuard) throws(JobError) {
        _ = HEIFContext.initialized
        guard let context = heif_context_alloc() else {
            throw JobError(.internalError, "libheif could not allocate a context.")
        }
        self.pointer = context
        self.file = file
        self.source = HEIFSource(file: file, stop: stop)
        self.reader = .allocate(capacity: 1)
        reader.initialize(to: heif_reader(reader_api_version: 1, get_position: heifGetPosition, read: heifRead,
                                          seek: heifSeek, wait_for_file_size: heifWaitForFileSize))
        // Tiles are decoded on the calling thread: the engine's thread budget is per job.
        heif_context_set_max_decoding_threads(context, 0)
        let dimension = min(Int64(HEIFDecoder.libheifMaximumDimension), max(limits.maxPixels, 1))
        heif_context_set_maximum_image_size_limit(context, Int32(dimension))
        try stop.check()
        let status = heif_context_read_from_reader(context, reader, Unmanaged.passUnretained(source).toOpaque(), nil)
        try throwIfFailed(status, doing: "read")
    }

    deinit {
        heif_context_free(pointer)
        reader.deinitialize(count: 1)
        reader.deallocate()
    }

    func primaryHandle() throws(JobError) -> OpaquePointer {
        var handle: OpaquePointer?
        let status = heif_context_get_primary_image_handle(pointer, &handle)
        try throwIfFailed(status, doing: "read")
        guard let handle else { throw JobError(.corruptMedia, "The HEIF file \(file.relativePath) has no primary image.") }
        return handle
    }

    /// Turns a libheif error into a ``JobError``; a failed read reports its own cause first.
    func throwIfFailed(_ status: heif_error, doing verb: String) throws(JobError) {
        guard status.code != heif_error_Ok else { return }
        if let failure = source.failure { throw failure }
        let detail = status.message.map { String(cString: $0) } ?? "error \(status.code.rawValue)"
        let name = file.relativePath
        switch status.code {
        case heif_error_Memory_allocation_error where status.subcode == heif_suberror_Security_limit_exceeded:
            throw JobError(.pixelLimit, "The HEIF image \(name) cannot be \(verb): it exceeds a safety limit (\(detail)); nothing was decoded.")
        case heif_error_Unsupported_filetype, heif_error_Unsupported_feature:
            throw JobError(.unsupportedFormat, "The HEIF file \(name) uses something libheif cannot handle: \(detail).")
        case heif_error_Plugin_loading_error:
            throw JobError(.unsupportedFormat, "The HEIF file \(name) needs a codec this libheif build lacks: \(detail).", retryable: false)
        default:
            throw JobError(.corruptMedia, "The HEIF file \(name) cannot be \(verb): \(detail).")
        }
    }
}

/// The read position and the first failure of one libheif reader.
private final class HEIFSource {
    let file: SafeFile
    let stop: StopGuard
    var position: Int64 = 0
    var failure: JobError?

    init(file: SafeFile, stop: StopGuard) {
        self.file = file
        self.stop = stop
    }
}

private func heifSource(_ userdata: UnsafeMutableRawPointer?) -> HEIFSource {
    Unmanaged<HEIFSource>.fromOpaque(userdata!).takeUnretainedValue()
}

private let heifGetPosition: @convention(c) (UnsafeMutableRawPointer?) -> Int64 = { userdata in
    heifSource(userdata).position
}

private let heifRead: @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32 = { data, size, userdata in
    let source = heifSource(userdata)
    if let reason = source.stop.stopReason {
        source.failure = source.failure ?? reason.error
        return 1
    }
    guard size > 0 else { return 0 }
    guard let data else { return 1 }
    switch source.file.readFully(into: UnsafeMutableRawBufferPointer(start: data, count: size), at: source.position) {
    case .success(let n):
        source.position += Int64(n)
        // libheif only asks for bytes it was told exist; a short read means the file shrank.
        return n == size ? 0 : 1
    case .failure(let error):
        source.failure = source.failure ?? JobError(.ioError, "Reading \(source.file.relativePath) at byte \(source.position) failed: \(errnoText(error)).")
        return 1
    }
}

private let heifSeek: @convention(c) (Int64, UnsafeMutableRawPointer?) -> Int32 = { position, userdata in
    let source = heifSource(userdata)
    guard position >= 0, position <= source.file.size else { return 1 }
    source.position = position
    return 0
}

private let heifWaitForFileSize: @convention(c) (Int64, UnsafeMutableRawPointer?) -> heif_reader_grow_status = { target, userdata in
    target <= heifSource(userdata).file.size ? heif_reader_grow_status_size_reached : heif_reader_grow_status_size_beyond_eof
}

extension RGBAImage {
    /// The picture with premultiplied colour turned back into straight alpha.
    func unpremultiplied() -> RGBAImage {
        var copy = self
        copy.pixels.withUnsafeMutableBufferPointer { p in
            for i in stride(from: 0, to: p.count, by: 4) {
                let a = Int(p[i + 3])
                guard a > 0, a < 255 else { continue }
                for c in 0..<3 { p[i + c] = UInt8(min(255, (Int(p[i + c]) * 255 + a / 2) / a)) }
            }
        }
        return copy
    }
}

/// Runs a libheif decode with the calling thread allowed on one CPU only, then restores its
/// affinity.
///
/// libheif 1.15 has no way to set the AV1 decoder's threads, and libdav1d sizes them from the
/// calling thread's CPU affinity (`sched_getaffinity`). With two or more CPUs it decodes with
/// frame threading, which keeps every coefficient of the frame in a buffer of its own: 12 bytes
/// per pixel for a 10-bit 4:4:4 picture, doubling libheif's peak (measured on a 20 MP AVIF: 480
/// to 238 MB). A still is one frame, so frame threads gain nothing, and the engine's thread budget
/// is per job anyway. Tiles of HEVC grids decode on the calling thread already.
enum OneCPU {
    static func run<T>(_ body: () -> T) -> T {
        #if os(Linux)
        // A mask of 1024 CPUs, the kernel's usual size. The CPU kept is the one the thread is on
        // (so parallel jobs stay spread), else the lowest it may use.
        var original = [UInt64](repeating: 0, count: 16)
        let size = UInt(original.count * 8)
        let got = original.withUnsafeMutableBytes { CHeif_thread_affinity_get($0.baseAddress, size) }
        guard got > 0, let lowestWord = original.firstIndex(where: { $0 != 0 }) else { return body() }
        var single = [UInt64](repeating: 0, count: original.count)
        let current = Int(CHeif_current_cpu())
        if current >= 0, current < original.count * 64, original[current / 64] & (1 << UInt64(current % 64)) != 0 {
            single[current / 64] = 1 << UInt64(current % 64)
        } else {
            single[lowestWord] = original[lowestWord] & (~original[lowestWord] &+ 1)
        }
        guard single.withUnsafeBytes({ CHeif_thread_affinity_set($0.baseAddress, size) }) == 0 else { return body() }
        defer { _ = original.withUnsafeBytes { CHeif_thread_affinity_set($0.baseAddress, size) } }
        #endif
        return body()
    }
}
