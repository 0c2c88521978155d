import CFFmpeg
import MediaNestCore

/// Turns decoded FFmpeg frames into ``RGBAImage``s, and resizes ``RGBAImage``s, with libswscale.
///
/// The colour handling is the part that is easy to get wrong and that users notice:
/// - JPEG's full-range YUV (`yuvj*` pixel formats, or `color_range = JPEG`) and video's limited
///   range are both expanded correctly; the deprecated `yuvj*` formats are mapped to their plain
///   twins with an explicit range, so libswscale never prints "deprecated pixel format used".
/// - The YUV matrix follows the frame (BT.601, BT.709, BT.2020); an unspecified matrix is BT.709
///   for HD frames and BT.601 otherwise, as players do.
/// - Scaling uses a high-quality filter with accurate rounding and full chroma interpolation.
///
/// Tone-mapping of PQ/HLG frames is not done here: callers that meet HDR video map it first.
enum FrameConverter {
    /// Scaling flags: Lanczos for quality, accurate rounding, full chroma interpolation.
    static let qualityFlags = CFFmpeg_SWS_LANCZOS | CFFmpeg_SWS_ACCURATE_RND | CFFmpeg_SWS_FULL_CHR_H_INT | CFFmpeg_SWS_FULL_CHR_H_INP

    /// Converts `frame` to an RGBA picture of exactly `width` × `height`.
    /// - Parameters:
    ///   - frame: A decoded video or image frame.
    ///   - width: Output width (at least 1).
    ///   - height: Output height (at least 1).
    ///   - colour: The source's colour plan, if its colours need converting (see ``ColourManagement``).
    /// - Returns: The picture, 8-bit sRGB (or the plan's output space).
    /// - Throws: ``JobError`` `unsupported_format` for a pixel format libswscale cannot read.
    static func convert(_ frame: UnsafePointer<AVFrame>, width: Int, height: Int, colour: ColourPlan? = nil) throws(JobError) -> RGBAImage {
        let source = sourceFormat(of: frame)
        let matrix: Int32? = CFFmpeg_pix_fmt_is_rgb(source.format.rawValue) == 0 ? yuvMatrix(of: frame) : nil
        return try withUnsafePointer(to: frame.pointee.data) { dataTuple throws(JobError) -> RGBAImage in
            try withUnsafePointer(to: frame.pointee.linesize) { strideTuple throws(JobError) -> RGBAImage in
                try dataTuple.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src throws(JobError) -> RGBAImage in
                    try strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { srcStride throws(JobError) -> RGBAImage in
                        try convert(planes: src, strides: srcStride, width: Int(frame.pointee.width), height: Int(frame.pointee.height),
                                    format: source.format, fullRange: source.fullRange, matrix: matrix,
                                    toWidth: width, height: height, colour: colour)
                    }
                }
            }
        }
    }

    /// Converts a picture held in planes (a decoder's own buffers: libavcodec's frame, libheif's
    /// planes) to an RGBA picture of exactly `width` × `height`, in one pass of libswscale.
    ///
    /// libswscale reads the source a few rows at a time through its filter's ring buffer, so the
    /// only full-size memory is the caller's planes: no RGBA, RGB48 or float copy of the source
    /// is ever made, whatever its bit depth.
    /// - Parameters:
    ///   - planes: Up to four plane pointers in libswscale's order for `format`.
    ///   - strides: Their strides in bytes.
    ///   - width: Source width.
    ///   - height: Source height.
    ///   - format: The source pixel format (never a deprecated `yuvj*` one).
    ///   - fullRange: Whether YUV samples use the full range.
    ///   - matrix: The libswscale YUV matrix constant (`SWS_CS_*`), or `nil` for RGB sources.
    ///   - toWidth: Output width.
    ///   - outHeight: Output height.
    ///   - colour: The source's colour plan, when its colours need converting: libswscale then
    ///     reduces to 16-bit RGBA in the source's colour space and LittleCMS converts that reduced
    ///     picture to 8-bit sRGB (or Display P3), so 10- and 16-bit sources keep their precision up
    ///     to the conversion and only the output's pixels are transformed.
    /// - Returns: The picture, 8-bit sRGB (or the plan's output space), with alpha when `format` has it.
    /// - Throws: ``JobError`` `unsupported_format` for a pixel format libswscale cannot read.
    static func convert(planes: UnsafePointer<UnsafePointer<UInt8>?>, strides: UnsafePointer<Int32>, width sourceWidth: Int, height sourceHeight: Int,
                        format: AVPixelFormat, fullRange: Bool, matrix: Int32?, toWidth width: Int, height: Int,
                        colour: ColourPlan? = nil) throws(JobError) -> RGBAImage {
        let scaler = try SliceScaler(width: sourceWidth, height: sourceHeight, format: format, fullRange: fullRange, matrix: matrix,
                                     toWidth: width, height: height, colour: colour)
        try scaler.feed(planes: planes, strides: strides, firstRow: 0, rows: sourceHeight)
        return try scaler.finish()
    }

    /// One libswscale reduction fed the source a slice of rows at a time, top to bottom: for
    /// decoders that produce rows as they go (``TIFFStripDecoder``), so no full-size copy of the
    /// source is ever held. libswscale keeps the few source rows its vertical filter still needs
    /// in its own ring buffer, so the result is the same as one call over the whole picture.
    ///
    /// Sources of more than 8 bits are reduced to 16-bit RGBA and, when a colour plan converts
    /// them, turned into 8 bits by LittleCMS only at the output size; 8-bit ones are reduced to
    /// 8-bit RGBA and converted by LittleCMS's 8-bit matrix-shaper path, which is several times
    /// faster and loses nothing their samples had.
    final class SliceScaler {
        private let context: OpaquePointer
        private let sourceFormat: AVPixelFormat
        private let sourceWidth: Int
        private let width: Int
        private let height: Int
        private let hasAlpha: Bool
        private let transform: ColourTransform?
        private let deep: Bool
        private let colour: ColourPlan?
        private var pixels: [UInt8]
        /// The reduced picture at 16 bits in the source's space, when LittleCMS converts a deep source.
        private var wide: [UInt16]
        private var rowsWritten = 0

        init(width sourceWidth: Int, height sourceHeight: Int, format: AVPixelFormat, fullRange: Bool, matrix: Int32?,
             toWidth width: Int, height: Int, colour: ColourPlan?) throws(JobError) {
            let deep = CFFmpeg_pix_fmt_depth(format.rawValue) > 8
            let transform = deep ? colour?.transform : colour?.with(layout: .rgba8)?.transform
            let outputFormat = transform == nil || !deep ? AV_PIX_FMT_RGBA : FrameConverter.rgba64Native
            guard let context = sws_getContext(Int32(sourceWidth), Int32(sourceHeight), format,
                                               Int32(width), Int32(height), outputFormat,
                                               FrameConverter.qualityFlags, nil, nil, nil) else {
                let name = CFFmpeg_pix_fmt_name(format.rawValue).map { String(cString: $0) } ?? "format \(format.rawValue)"
                throw JobError(.unsupportedFormat, "The picture's pixel format (\(name)) cannot be converted.")
            }
            if let matrix {
                let coefficients = sws_getCoefficients(matrix)
                let rgbMatrix = sws_getCoefficients(CFFmpeg_SWS_CS_ITU601)
                _ = sws_setColorspaceDetails(context, coefficients, fullRange ? 1 : 0, rgbMatrix, 1, 0, 1 << 16, 1 << 16)
            }
            self.context = context
            self.sourceFormat = format
            self.sourceWidth = sourceWidth
            self.width = width
            self.height = height
            self.hasAlpha = CFFmpeg_pix_fmt_has_alpha(format.rawValue) != 0
            self.transform = transform
            self.deep = deep
            self.colour = colour
            // libswscale writes past a narrow plane's end (ScalerOutput); the padding goes in finish().
            self.pixels = ScalerOutput.plane(width * height * 4)
            self.wide = transform != nil && deep ? ScalerOutput.plane(width * height * 4, of: UInt16.self) : []
        }

        deinit { sws_freeContext(context) }

        /// Hands libswscale the source rows `firstRow ..< firstRow + rows`; slices must come in
        /// order, the first at row 0, with no gap.
        func feed(planes: UnsafePointer<UnsafePointer<UInt8>?>, strides: UnsafePointer<Int32>, firstRow: Int, rows: Int) throws(JobError) {
            // A sliver's rows are copied first: libswscale reads past narrow rows (ScalerOutput).
            let status = ScalerOutput.withReadableSource(planes: planes, strides: strides, format: sourceFormat, width: sourceWidth, rows: rows) {
                planes, strides in scale(planes: planes, strides: strides, firstRow: firstRow, rows: rows)
            }
            guard status >= 0 else { throw ffmpegError(status, code: .corruptMedia, "The picture could not be converted") }
            rowsWritten += Int(status)
        }

        private func scale(planes: UnsafePointer<UnsafePointer<UInt8>?>, strides: UnsafePointer<Int32>, firstRow: Int, rows: Int) -> Int32 {
            let status: Int32
            if !wide.isEmpty {
                status = wide.withUnsafeMutableBytes { out in
                    var dst: [UnsafeMutablePointer<UInt8>?] = [out.baseAddress?.assumingMemoryBound(to: UInt8.self), nil, nil, nil]
                    var dstStride: [Int32] = [Int32(width * 8), 0, 0, 0]
                    return sws_scale(context, planes, strides, Int32(firstRow), Int32(rows), &dst, &dstStride)
                }
            } else {
                status = pixels.withUnsafeMutableBufferPointer { out in
                    var dst: [UnsafeMutablePointer<UInt8>?] = [out.baseAddress, nil, nil, nil]
                    var dstStride: [Int32] = [Int32(width * 4), 0, 0, 0]
                    return sws_scale(context, planes, strides, Int32(firstRow), Int32(rows), &dst, &dstStride)
                }
            }
            return status
        }

        /// The reduced picture, converted by the colour plan, once every source row was fed.
        func finish() throws(JobError) -> RGBAImage {
            guard rowsWritten > 0 else { throw ffmpegError(0, code: .corruptMedia, "The picture could not be converted") }
            ScalerOutput.dropPadding(&pixels)
            if let transform {
                if deep {
                    wide.withUnsafeBytes { source in
                        pixels.withUnsafeMutableBytes { transform.apply(source.baseAddress!, to: $0.baseAddress!, pixels: width * height) }
                    }
                    wide = []
                } else {
                    // In place: LittleCMS allows the same buffer for input and output of one layout.
                    pixels.withUnsafeMutableBytes { transform.apply(UnsafeRawPointer($0.baseAddress!), to: $0.baseAddress!, pixels: width * height) }
                }
            }
            var image = RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: hasAlpha)
            image.colourSpace = colour?.output ?? .srgb
            return image
        }
    }

    /// 16-bit RGBA in the machine's byte order, as LittleCMS's `TYPE_RGBA_16` reads it.
    static var rgba64Native: AVPixelFormat {
        #if _endian(big)
        AV_PIX_FMT_RGBA64BE
        #else
        AV_PIX_FMT_RGBA64LE
        #endif
    }

    /// Converts `frame` to fit `maxLongEdge`, correcting a non-square sample aspect ratio first
    /// (anamorphic video is shown at its display aspect, never squashed). Never upscales.
    /// - Parameters:
    ///   - frame: A decoded frame.
    ///   - maxLongEdge: Longest output edge in pixels.
    ///   - sampleAspectRatio: The stream's or frame's SAR; `0/1` or `nil` means square pixels.
    ///   - colour: The source's colour plan, if its colours need converting.
    static func convert(_ frame: UnsafePointer<AVFrame>, fittingLongEdge maxLongEdge: Int, sampleAspectRatio: AVRational? = nil,
                        colour: ColourPlan? = nil) throws(JobError) -> RGBAImage {
        let (w, h) = displaySize(width: Int(frame.pointee.width), height: Int(frame.pointee.height),
                                 sampleAspectRatio: sampleAspectRatio ?? frame.pointee.sample_aspect_ratio)
        let size = RGBAImage.fittedSize(width: w, height: h, maxLongEdge: maxLongEdge)
        return try convert(frame, width: size.width, height: size.height, colour: colour)
    }

    /// The display size of a `width` × `height` frame with the given SAR (the width is stretched).
    static func displaySize(width: Int, height: Int, sampleAspectRatio sar: AVRational) -> (Int, Int) {
        guard sar.num > 0, sar.den > 0, sar.num != sar.den else { return (width, height) }
        let stretched = Int((Double(width) * Double(sar.num) / Double(sar.den)).rounded())
        return (max(1, stretched), height)
    }

    /// Resizes an RGBA picture to exactly `width` × `height`.
    ///
    /// libswscale scales RGBA into planar G, B, R (and A) planes, which are then interleaved:
    /// the same bytes as scaling RGBA to RGBA (``resizePacked(_:width:height:)``, checked by the
    /// tests), about three times faster, because libswscale writes packed RGB through a scalar
    /// per-pixel path and planar RGB through its vectorised one (a 1500 × 1125 photo reduced to
    /// 1440 × 1080: about 10 ms instead of 30 ms of CPU).
    static func resize(_ image: RGBAImage, width: Int, height: Int) throws(JobError) -> RGBAImage {
        if image.width == width && image.height == height { return image }
        // An opaque picture's alpha is 255 everywhere, and stays so through the filter.
        let planeCount = image.hasAlpha ? 4 : 3
        guard let context = sws_getContext(Int32(image.width), Int32(image.height), AV_PIX_FMT_RGBA,
                                           Int32(width), Int32(height), image.hasAlpha ? AV_PIX_FMT_GBRAP : AV_PIX_FMT_GBRP,
                                           qualityFlags, nil, nil, nil) else {
            throw JobError(.internalError, "The picture could not be resized.")
        }
        defer { sws_freeContext(context) }
        let planeSize = width * height
        // Each plane is followed by the room libswscale writes past a narrow plane (ScalerOutput).
        let planeStride = planeSize + ScalerOutput.tailPadding
        let planes = [UInt8](unsafeUninitializedCapacity: planeStride * planeCount) { buffer, count in
            let base = buffer.baseAddress!
            image.withReadablePixels { srcPlanes, srcStride in
                // libswscale's order for GBR(A)P: G, B, R, A.
                var dstPlanes: [UnsafeMutablePointer<UInt8>?] = (0..<4).map { $0 < planeCount ? base + $0 * planeStride : nil }
                var dstStride: [Int32] = (0..<4).map { $0 < planeCount ? Int32(width) : 0 }
                _ = sws_scale(context, srcPlanes, srcStride, 0, Int32(image.height), &dstPlanes, &dstStride)
            }
            count = planeStride * planeCount
        }
        let out = [UInt8](unsafeUninitializedCapacity: planeSize * 4) { buffer, count in
            planes.withUnsafeBufferPointer { planar in
                let g = planar.baseAddress!, b = g + planeStride, r = b + planeStride
                // One 32-bit store per pixel: R, G, B, A in memory order.
                let rgba = UnsafeMutableRawPointer(buffer.baseAddress!)
                if planeCount == 4 {
                    let a = r + planeStride
                    for i in 0..<planeSize {
                        let pixel = UInt32(r[i]) | UInt32(g[i]) << 8 | UInt32(b[i]) << 16 | UInt32(a[i]) << 24
                        rgba.storeBytes(of: UInt32(littleEndian: pixel), toByteOffset: i * 4, as: UInt32.self)
                    }
                } else {
                    for i in 0..<planeSize {
                        let pixel = UInt32(r[i]) | UInt32(g[i]) << 8 | UInt32(b[i]) << 16 | 0xFF00_0000
                        rgba.storeBytes(of: UInt32(littleEndian: pixel), toByteOffset: i * 4, as: UInt32.self)
                    }
                }
            }
            count = planeSize * 4
        }
        var resized = RGBAImage(width: width, height: height, pixels: out, hasAlpha: image.hasAlpha)
        resized.colourSpace = image.colourSpace
        return resized
    }

    /// Resizes RGBA to RGBA in one libswscale call: what ``resize(_:width:height:)`` did before
    /// it went through planar RGB, kept for the tests that hold the two to the same bytes.
    static func resizePacked(_ image: RGBAImage, width: Int, height: Int) throws(JobError) -> RGBAImage {
        guard let context = sws_getContext(Int32(image.width), Int32(image.height), AV_PIX_FMT_RGBA,
                                           Int32(width), Int32(height), AV_PIX_FMT_RGBA, qualityFlags, nil, nil, nil) else {
            throw JobError(.internalError, "The picture could not be resized.")
        }
        defer { sws_freeContext(context) }
        var out: [UInt8] = ScalerOutput.plane(width * height * 4)
        image.withReadablePixels { srcPlanes, srcStride in
            out.withUnsafeMutableBufferPointer { dst in
                var dstPlanes: [UnsafeMutablePointer<UInt8>?] = [dst.baseAddress, nil, nil, nil]
                var dstStride: [Int32] = [Int32(width * 4), 0, 0, 0]
                _ = sws_scale(context, srcPlanes, srcStride, 0, Int32(image.height), &dstPlanes, &dstStride)
            }
        }
        ScalerOutput.dropPadding(&out)
        var resized = RGBAImage(width: width, height: height, pixels: out, hasAlpha: image.hasAlpha)
        resized.colourSpace = image.colourSpace
        return resized
    }

    /// The pixel format to hand libswscale, and whether the YUV is full range.
    static func sourceFormat(of frame: UnsafePointer<AVFrame>) -> (format: AVPixelFormat, fullRange: Bool) {
        let format = AVPixelFormat(rawValue: frame.pointee.format)
        let fullRange = frame.pointee.color_range == AVCOL_RANGE_JPEG
        switch format {
        case AV_PIX_FMT_YUVJ420P: return (AV_PIX_FMT_YUV420P, true)
        case AV_PIX_FMT_YUVJ422P: return (AV_PIX_FMT_YUV422P, true)
        case AV_PIX_FMT_YUVJ444P: return (AV_PIX_FMT_YUV444P, true)
        case AV_PIX_FMT_YUVJ440P: return (AV_PIX_FMT_YUV440P, true)
        case AV_PIX_FMT_YUVJ411P: return (AV_PIX_FMT_YUV411P, true)
        default: return (format, fullRange)
        }
    }

    /// The libswscale matrix constant for the frame's YUV matrix.
    static func yuvMatrix(of frame: UnsafePointer<AVFrame>) -> Int32 {
        switch frame.pointee.colorspace {
        case AVCOL_SPC_BT709: return CFFmpeg_SWS_CS_ITU709
        case AVCOL_SPC_BT2020_NCL, AVCOL_SPC_BT2020_CL: return CFFmpeg_SWS_CS_BT2020
        case AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M, AVCOL_SPC_FCC: return CFFmpeg_SWS_CS_ITU601
        default:
            // Unspecified: JPEG (full range) is BT.601 by definition; video follows its size.
            let isJPEGRange = sourceFormat(of: frame).fullRange
            return !isJPEGRange && frame.pointee.height >= 720 ? CFFmpeg_SWS_CS_ITU709 : CFFmpeg_SWS_CS_ITU601
        }
    }
}
