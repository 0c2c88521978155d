import CFFmpeg
import MediaNestCore

/// A still-image output format of the derived files.
public enum ImageFormat: String, Sendable, Hashable, CaseIterable, Codable {
    case webp, jpeg, png

    /// The file name extension, without the dot.
    public var fileExtension: String {
        switch self {
        case .webp: "webp"
        case .jpeg: "jpg"
        case .png: "png"
        }
    }

    /// The MIME type of files in this format.
    public var mimeType: String {
        switch self {
        case .webp: "image/webp"
        case .jpeg: "image/jpeg"
        case .png: "image/png"
        }
    }

    /// The libavcodec encoder that writes this format (`libwebp`, `mjpeg`, `png`).
    public var encoderName: String {
        switch self {
        case .webp: "libwebp"
        case .jpeg: "mjpeg"
        case .png: "png"
        }
    }
}

/// Encodes ``RGBAImage``s as WebP, JPEG or PNG with libavcodec, in memory.
///
/// - WebP keeps alpha: BT.601 limited-range YUV 4:2:0 (with an alpha plane when the picture has
///   alpha), which is what lossy WebP stores; converting here with libswscale's accurate
///   rounding also keeps libwebp from warning about doing the conversion itself on every image.
/// - JPEG has no alpha: the picture is flattened onto a neutral background, converted to
///   full-range BT.601 YUV 4:2:0 (what JFIF means) and written with optimal Huffman tables.
/// - PNG is lossless; RGBA when the picture has alpha, RGB otherwise.
/// - A Display P3 picture (``RGBAImage/colourSpace``) carries the Display P3 ICC profile
///   (``ICCEmbedding``); an sRGB one carries none, which every reader takes as sRGB.
public enum ImageEncoder {
    /// Whether this FFmpeg build has the encoder `format` needs (checked at start-up so that a
    /// type whose encoder is missing is not served).
    public static func isAvailable(_ format: ImageFormat) -> Bool {
        avcodec_find_encoder_by_name(format.encoderName) != nil
    }

    /// Encodes `image`.
    /// - Parameters:
    ///   - image: The picture.
    ///   - format: WebP, JPEG or PNG.
    ///   - quality: 1–100 (ignored for PNG). 80 is a good default for thumbnails.
    ///   - maxLongEdge: Reduce the picture to fit this long edge first (never upscaling). For WebP
    ///     and JPEG the reduction and the conversion to YUV are one libswscale pass (the same
    ///     Lanczos filter as ``RGBAImage/fitted(maxLongEdge:)``), with no reduced RGBA copy made.
    /// - Returns: The encoded file's bytes.
    /// - Throws: ``JobError`` `internal_error` when the encoder is missing or fails.
    public static func encode(_ image: RGBAImage, as format: ImageFormat, quality: Int = 80, fittingLongEdge maxLongEdge: Int? = nil) throws(JobError) -> [UInt8] {
        let size: (width: Int, height: Int) = maxLongEdge.map { RGBAImage.fittedSize(width: image.width, height: image.height, maxLongEdge: $0) } ?? (image.width, image.height)
        if format == .png && (size.width != image.width || size.height != image.height) {
            return try encode(image.fitted(maxLongEdge: maxLongEdge ?? image.width), as: .png, quality: quality)
        }
        guard let codec = avcodec_find_encoder_by_name(format.encoderName) else {
            throw JobError(.internalError, "This FFmpeg build has no \(format.encoderName) encoder, so \(format.rawValue) output is impossible.", retryable: false)
        }
        guard let context = avcodec_alloc_context3(codec) else {
            throw JobError(.internalError, "FFmpeg could not allocate an encoder context.")
        }
        var contextRef: UnsafeMutablePointer<AVCodecContext>? = context
        defer { avcodec_free_context(&contextRef) }
        let q = min(100, max(1, quality))

        let picture: RGBAImage
        let pixelFormat: AVPixelFormat
        switch format {
        case .webp:
            picture = image
            pixelFormat = image.hasAlpha ? AV_PIX_FMT_YUVA420P : AV_PIX_FMT_YUV420P
            context.pointee.color_range = AVCOL_RANGE_MPEG
            context.pointee.colorspace = AVCOL_SPC_BT470BG
            _ = av_opt_set(context.pointee.priv_data, "quality", String(q), 0)
            _ = av_opt_set_int(context.pointee.priv_data, "compression_level", 4, 0)
        case .jpeg:
            picture = image.flattened()
            pixelFormat = AV_PIX_FMT_YUV420P
            context.pointee.color_range = AVCOL_RANGE_JPEG
            context.pointee.colorspace = AVCOL_SPC_BT470BG
            context.pointee.flags |= CFFmpeg_AV_CODEC_FLAG_QSCALE
            // libavcodec's JPEG scale: 2 is best, 31 worst. Quality 80 maps to about 6.
            let qscale = 2.0 + Double(100 - q) * 29.0 / 100.0 * 0.75
            context.pointee.global_quality = Int32((qscale * Double(CFFmpeg_FF_QP2LAMBDA)).rounded())
            _ = av_opt_set(context.pointee.priv_data, "huffman", "optimal", 0)
        case .png:
            picture = image
            pixelFormat = image.hasAlpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24
            context.pointee.compression_level = 6
        }
        context.pointee.width = Int32(size.width)
        context.pointee.height = Int32(size.height)
        context.pointee.pix_fmt = pixelFormat
        context.pointee.time_base = AVRational(num: 1, den: 25)
        context.pointee.thread_count = 1
        let opened = avcodec_open2(context, codec, nil)
        guard opened >= 0 else { throw ffmpegError(opened, code: .internalError, "The \(format.rawValue) encoder could not start") }

        guard let frame = av_frame_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a frame.") }
        var frameRef: UnsafeMutablePointer<AVFrame>? = frame
        defer { av_frame_free(&frameRef) }
        frame.pointee.width = Int32(size.width)
        frame.pointee.height = Int32(size.height)
        frame.pointee.format = pixelFormat.rawValue
        frame.pointee.color_range = context.pointee.color_range
        frame.pointee.colorspace = context.pointee.colorspace
        if format == .jpeg { frame.pointee.quality = context.pointee.global_quality }
        let allocated = av_frame_get_buffer(frame, 0)
        guard allocated >= 0 else { throw ffmpegError(allocated, code: .internalError, "FFmpeg could not allocate frame memory") }
        try fill(frame, from: picture, format: pixelFormat)

        guard let packet = av_packet_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a packet.") }
        var packetRef: UnsafeMutablePointer<AVPacket>? = packet
        defer { av_packet_free(&packetRef) }
        var output: [UInt8] = []
        var status = avcodec_send_frame(context, frame)
        guard status >= 0 else { throw ffmpegError(status, code: .internalError, "The \(format.rawValue) encoder refused the picture") }
        _ = avcodec_send_frame(context, nil)
        while true {
            status = avcodec_receive_packet(context, packet)
            if status == CFFmpeg_AVERROR_EOF || status == CFFmpeg_AVERROR_EAGAIN { break }
            guard status >= 0 else { throw ffmpegError(status, code: .internalError, "The \(format.rawValue) encoder failed") }
            if let data = packet.pointee.data, packet.pointee.size > 0 {
                output.append(contentsOf: UnsafeBufferPointer(start: data, count: Int(packet.pointee.size)))
            }
            av_packet_unref(packet)
        }
        guard !output.isEmpty else { throw JobError(.internalError, "The \(format.rawValue) encoder produced no data.") }
        guard image.colourSpace == .p3 else { return output }
        let profile = ColourManagement.displayP3Profile
        let tagged: [UInt8]?
        switch format {
        case .jpeg: tagged = ICCEmbedding.jpeg(output, profile: profile)
        case .webp: tagged = ICCEmbedding.webp(output, profile: profile, width: size.width, height: size.height, hasAlpha: picture.hasAlpha)
        case .png: tagged = ICCEmbedding.png(output, profile: profile, name: "Display P3")
        }
        guard let tagged else {
            throw JobError(.internalError, "The Display P3 profile could not be embedded in the \(format.rawValue) output.")
        }
        return tagged
    }

    /// Copies `picture` into `frame`'s planes in `format`, reduced to the frame's size for YUV
    /// formats (RGB ones are the picture's own size).
    private static func fill(_ frame: UnsafeMutablePointer<AVFrame>, from picture: RGBAImage, format: AVPixelFormat) throws(JobError) {
        let width = picture.width, height = picture.height
        switch format {
        case AV_PIX_FMT_BGRA, AV_PIX_FMT_RGBA, AV_PIX_FMT_RGB24:
            let stride = Int(frame.pointee.linesize.0)
            guard let base = frame.pointee.data.0 else { return }
            picture.pixels.withUnsafeBufferPointer { src in
                for y in 0..<height {
                    let row = base + y * stride
                    let s = y * width * 4
                    for x in 0..<width {
                        let p = s + x * 4
                        switch format {
                        case AV_PIX_FMT_BGRA:
                            row[x * 4] = src[p + 2]; row[x * 4 + 1] = src[p + 1]; row[x * 4 + 2] = src[p]; row[x * 4 + 3] = src[p + 3]
                        case AV_PIX_FMT_RGBA:
                            row[x * 4] = src[p]; row[x * 4 + 1] = src[p + 1]; row[x * 4 + 2] = src[p + 2]; row[x * 4 + 3] = src[p + 3]
                        default:
                            row[x * 3] = src[p]; row[x * 3 + 1] = src[p + 1]; row[x * 3 + 2] = src[p + 2]
                        }
                    }
                }
            }
        default:
            // RGBA → BT.601 YUV through libswscale: full range for JPEG (JFIF), limited for WebP.
            guard let context = sws_getContext(Int32(width), Int32(height), AV_PIX_FMT_RGBA, frame.pointee.width, frame.pointee.height, format,
                                               FrameConverter.qualityFlags, nil, nil, nil) else {
                throw JobError(.internalError, "The picture could not be converted for the encoder.")
            }
            defer { sws_freeContext(context) }
            let table = sws_getCoefficients(CFFmpeg_SWS_CS_ITU601)
            let fullRange: Int32 = frame.pointee.color_range == AVCOL_RANGE_JPEG ? 1 : 0
            _ = sws_setColorspaceDetails(context, table, 1, table, fullRange, 0, 1 << 16, 1 << 16)
            // A sliver is copied first: libswscale reads past narrow rows (ScalerOutput).
            picture.withReadablePixels { srcPlanes, srcStride in
                withUnsafeMutablePointer(to: &frame.pointee.data) { dataTuple in
                    withUnsafeMutablePointer(to: &frame.pointee.linesize) { strideTuple in
                        dataTuple.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: 8) { dst in
                            strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { dstStride in
                                _ = sws_scale(context, srcPlanes, srcStride, 0, Int32(height), dst, dstStride)
                            }
                        }
                    }
                }
            }
        }
    }
}
