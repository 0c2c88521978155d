import CFFmpeg
import CJXL
public import MediaNestCore

/// What a JPEG XL header says about the picture, read by libjxl without decoding pixels.
public struct JPEGXLHeader: Sendable, Hashable {
    /// Width as displayed: after the orientation (5–8 swap the stored sides), as libjxl reports it.
    public var width: Int
    /// Height as displayed.
    public var height: Int
    /// The orientation, 1–8 as in EXIF (libjxl applies it while decoding).
    public var orientation: Int
    /// Bits per colour sample (8, 10, 12, 16, 32 …).
    public var bitsPerSample: Int
    /// Exponent bits when the samples are floating point, else 0.
    public var exponentBits: Int
    /// 1 (grey) or 3 (colour).
    public var colorChannels: Int
    /// Bits of the alpha channel, 0 when there is none.
    public var alphaBits: Int
}

/// Decodes JPEG XL stills with libjxl directly, to 8 bits, and reads their headers.
///
/// FFmpeg 5.1 decodes JPEG XL through libjxl too, but asks for 16-bit samples whenever the file
/// has more than 8 bits, and libjxl 0.7 then keeps about 14 bytes per pixel of its own next to
/// the 6-byte RGB48 frame: a 20 MP 16-bit picture peaked at about 21 bytes per source pixel
/// (420 MB). Asked for 8-bit samples, libjxl renders group by group straight into the output
/// buffer: about 3–4 bytes per pixel for the buffer and 2–3 for itself. libswscale then reduces
/// that buffer to the requested size. The 8-bit rounding happens before the reduction instead of
/// after it, a difference of at most half a step of 255 that the Lanczos filter averages away.
///
/// The header (size, orientation, depth, channels) comes from libjxl's basic info, which needs
/// only the first bytes of the file: the metadata job reports it without stream analysis, which
/// in FFmpeg 5.1 means decoding the whole picture (no JPEG XL parser).
///
/// Both forms are read: a bare codestream (`FF 0A`) and the ISOBMFF container (`JXL ` box).
/// The picture is decoded single-threaded (the engine's thread budget is per job); libjxl applies
/// the orientation itself, so the result is upright.
///
/// Colour: a lossy (XYB) picture is rendered by libjxl itself into sRGB (or Display P3 in `p3`
/// mode when the original is wider), in floating point before the 8-bit output. A picture kept in
/// its original space (lossless) comes out in it, and its profile (libjxl's ICC of the pixel
/// data) is converted with LittleCMS like any other (``ColourManagement``).
public enum JPEGXLDecoder {
    /// Whether `header` (the file's first bytes) starts a JPEG XL file, either form.
    public static func recognizes(_ header: [UInt8]) -> Bool {
        let result = header.withUnsafeBufferPointer { JxlSignatureCheck($0.baseAddress, $0.count) }
        return result == JXL_SIG_CODESTREAM || result == JXL_SIG_CONTAINER
    }

    /// The header of the JPEG XL file whose first bytes are `bytes`, or `nil` when libjxl cannot
    /// read one from them (not JPEG XL, damaged, or the header lies further in).
    public static func header(_ bytes: [UInt8]) -> JPEGXLHeader? {
        // libjxl logs its failures to stderr; it is only asked about bytes that are JPEG XL.
        guard recognizes(bytes), let decoder = JxlDecoderCreate(nil) else { return nil }
        defer { JxlDecoderDestroy(decoder) }
        guard JxlDecoderSubscribeEvents(decoder, Int32(JXL_DEC_BASIC_INFO.rawValue)) == JXL_DEC_SUCCESS else { return nil }
        return bytes.withUnsafeBufferPointer { buffer -> JPEGXLHeader? in
            guard JxlDecoderSetInput(decoder, buffer.baseAddress, buffer.count) == JXL_DEC_SUCCESS else { return nil }
            JxlDecoderCloseInput(decoder)
            guard JxlDecoderProcessInput(decoder) == JXL_DEC_BASIC_INFO else { return nil }
            var info = JxlBasicInfo()
            guard JxlDecoderGetBasicInfo(decoder, &info) == JXL_DEC_SUCCESS else { return nil }
            JxlDecoderReleaseInput(decoder)
            return JPEGXLHeader(info)
        }
    }

    /// Decodes the picture (its first frame) and reduces it to fit `maxLongEdge`, upright.
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: ``MediaLimits/maxPixels`` (checked from the header before decoding) and
    ///     ``MediaLimits/timeout`` apply.
    ///   - maxLongEdge: Longest edge of the result (never upscaled).
    ///   - cancellation: The job's token, checked between libjxl's steps.
    /// - Returns: The picture and what was learnt about the source.
    /// - Throws: ``JobError`` `pixel_limit`, `too_large`, `corrupt_media`, `io_error`, or a stop's code.
    public static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int,
                              cancellation: JobCancellation? = nil, colourSpace: StillColourSpace = .srgb) throws(JobError) -> DecodedStill {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        try stop.check()
        let what = "The JPEG XL image \(file.relativePath)"
        guard file.size <= StillImageDecoder.maxImageFileBytes else {
            throw JobError(.tooLarge, "\(what) is \(file.size) bytes; image files over \(StillImageDecoder.maxImageFileBytes) bytes are not decoded.")
        }
        let bytes = try StillImageDecoder.readWhole(file)
        guard let decoder = JxlDecoderCreate(nil) else { throw JobError(.internalError, "libjxl could not make a decoder.") }
        defer { JxlDecoderDestroy(decoder) }
        let events = Int32(JXL_DEC_BASIC_INFO.rawValue | JXL_DEC_COLOR_ENCODING.rawValue | JXL_DEC_FULL_IMAGE.rawValue)
        var usesOriginalProfile = true
        var dataColour = SourceColour.unspecified
        guard JxlDecoderSubscribeEvents(decoder, events) == JXL_DEC_SUCCESS else {
            throw JobError(.internalError, "libjxl refused the decoder's settings.")
        }
        var output: UnsafeMutableRawBufferPointer?
        defer { output?.deallocate() }
        var header: JPEGXLHeader?
        var format = JxlPixelFormat(num_channels: 3, data_type: JXL_TYPE_UINT8, endianness: JXL_NATIVE_ENDIAN, align: 0)
        let finished: Result<Void, JobError> = bytes.withUnsafeBufferPointer { input in
            guard JxlDecoderSetInput(decoder, input.baseAddress, input.count) == JXL_DEC_SUCCESS else {
                return .failure(JobError(.internalError, "libjxl refused the input of \(file.relativePath)."))
            }
            JxlDecoderCloseInput(decoder)
            while true {
                if let reason = stop.stopReason { return .failure(reason.error) }
                let status = JxlDecoderProcessInput(decoder)
                switch status {
                case JXL_DEC_BASIC_INFO:
                    var info = JxlBasicInfo()
                    guard JxlDecoderGetBasicInfo(decoder, &info) == JXL_DEC_SUCCESS else {
                        return .failure(JobError(.corruptMedia, "\(what) has no readable header."))
                    }
                    let read = JPEGXLHeader(info)
                    let pixels = Int64(read.width) * Int64(read.height)
                    guard pixels <= limits.maxPixels else {
                        return .failure(JobError(.pixelLimit, "\(what) is \(read.width)×\(read.height) pixels (\(pixels) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded."))
                    }
                    header = read
                    usesOriginalProfile = info.uses_original_profile != 0
                    format.num_channels = read.alphaBits > 0 ? 4 : 3
                case JXL_DEC_COLOR_ENCODING:
                    if !usesOriginalProfile {
                        // XYB: libjxl renders into the space asked for.
                        let wide = colourSpace == .p3 && Self.profile(decoder, .original).map { ICCProfile($0)?.primariesExceed(.srgb()) ?? false } ?? false
                        var wanted = JxlColorEncoding()
                        wanted.color_space = header?.colorChannels == 1 ? JXL_COLOR_SPACE_GRAY : JXL_COLOR_SPACE_RGB
                        wanted.white_point = JXL_WHITE_POINT_D65
                        wanted.primaries = wide ? JXL_PRIMARIES_P3 : JXL_PRIMARIES_SRGB
                        wanted.transfer_function = JXL_TRANSFER_FUNCTION_SRGB
                        wanted.rendering_intent = JXL_RENDERING_INTENT_RELATIVE
                        _ = JxlDecoderSetPreferredColorProfile(decoder, &wanted)
                    }
                    if let icc = Self.profile(decoder, .data) { dataColour = .icc(icc) }
                case JXL_DEC_NEED_IMAGE_OUT_BUFFER:
                    guard let read = header else { return .failure(JobError(.corruptMedia, "\(what) has no readable header.")) }
                    var size = 0
                    guard JxlDecoderImageOutBufferSize(decoder, &format, &size) == JXL_DEC_SUCCESS,
                          size == read.width * read.height * Int(format.num_channels) else {
                        return .failure(JobError(.corruptMedia, "\(what) asks for an output buffer that does not match its size."))
                    }
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
                    output = buffer
                    guard JxlDecoderSetImageOutBuffer(decoder, &format, buffer.baseAddress, size) == JXL_DEC_SUCCESS else {
                        return .failure(JobError(.internalError, "libjxl refused the output buffer for \(file.relativePath)."))
                    }
                case JXL_DEC_FULL_IMAGE, JXL_DEC_SUCCESS:
                    return output == nil ? .failure(JobError(.corruptMedia, "\(what) contains no picture.")) : .success(())
                case JXL_DEC_NEED_MORE_INPUT:
                    return .failure(JobError(.corruptMedia, "\(what) is truncated: libjxl needs more data than the file holds."))
                default:
                    return .failure(JobError(.corruptMedia, "\(what) cannot be decoded: libjxl reports an error (status \(status.rawValue))."))
                }
            }
        }
        try finished.get()
        try stop.check()
        guard let header, let output, let base = output.baseAddress else {
            throw JobError(.corruptMedia, "\(what) contains no picture.")
        }
        let alpha = format.num_channels == 4
        let fitted = RGBAImage.fittedSize(width: header.width, height: header.height, maxLongEdge: maxLongEdge)
        var planes: [UnsafePointer<UInt8>?] = [UnsafePointer(base.assumingMemoryBound(to: UInt8.self)), nil, nil, nil]
        var strides: [Int32] = [Int32(header.width * Int(format.num_channels)), 0, 0, 0]
        let colourPlan = ColourManagement.plan(for: dataColour, layout: .rgba16, target: colourSpace)
        var image = try FrameConverter.convert(planes: &planes, strides: &strides, width: header.width, height: header.height,
                                               format: alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24, fullRange: true, matrix: nil,
                                               toWidth: fitted.width, height: fitted.height, colour: colourPlan)
        image.clearAlphaIfOpaque()
        let stored = header.orientation >= 5 ? (header.height, header.width) : (header.width, header.height)
        var still = DecodedStill(image: image, sourceWidth: stored.0, sourceHeight: stored.1, format: "jpegxl",
                                 orientation: header.orientation, lowres: 0)
        still.convertedFrom = colourPlan?.transform == nil ? nil : colourPlan?.sourceName
        return still
    }

    /// The ICC profile of the original picture of the JPEG XL file whose first bytes are `bytes`
    /// (libjxl's, from the header alone), or `nil`.
    static func originalProfile(_ bytes: [UInt8]) -> [UInt8]? {
        guard recognizes(bytes), let decoder = JxlDecoderCreate(nil) else { return nil }
        defer { JxlDecoderDestroy(decoder) }
        guard JxlDecoderSubscribeEvents(decoder, Int32(JXL_DEC_COLOR_ENCODING.rawValue)) == JXL_DEC_SUCCESS else { return nil }
        return bytes.withUnsafeBufferPointer { buffer -> [UInt8]? in
            guard JxlDecoderSetInput(decoder, buffer.baseAddress, buffer.count) == JXL_DEC_SUCCESS else { return nil }
            JxlDecoderCloseInput(decoder)
            guard JxlDecoderProcessInput(decoder) == JXL_DEC_COLOR_ENCODING else { return nil }
            defer { JxlDecoderReleaseInput(decoder) }
            return profile(decoder, .original)
        }
    }

    /// Which of libjxl's colour profiles to read.
    enum ProfileTarget { case original, data }

    /// libjxl's ICC profile of the original picture or of the pixel data it renders, at most
    /// ``EmbeddedColour/maxProfileBytes``; `nil` when it has none.
    static func profile(_ decoder: OpaquePointer, _ target: ProfileTarget) -> [UInt8]? {
        let which = target == .original ? JXL_COLOR_PROFILE_TARGET_ORIGINAL : JXL_COLOR_PROFILE_TARGET_DATA
        var size = 0
        guard JxlDecoderGetICCProfileSize(decoder, nil, which, &size) == JXL_DEC_SUCCESS,
              size > 0, size <= EmbeddedColour.maxProfileBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        guard JxlDecoderGetColorAsICCProfile(decoder, nil, which, &bytes, size) == JXL_DEC_SUCCESS else { return nil }
        return bytes
    }
}

extension JPEGXLHeader {
    init(_ info: JxlBasicInfo) {
        self.init(width: Int(info.xsize), height: Int(info.ysize), orientation: Int(info.orientation.rawValue),
                  bitsPerSample: Int(info.bits_per_sample), exponentBits: Int(info.exponent_bits_per_sample),
                  colorChannels: Int(info.num_color_channels), alphaBits: Int(info.alpha_bits))
    }
}
