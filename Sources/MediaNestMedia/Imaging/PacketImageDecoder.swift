import CFFmpeg
import MediaNestCore

/// Decodes a whole image held in memory (one packet: a JPEG, PNG, BMP or WebP file's bytes) with
/// libavcodec, straight to an ``RGBAImage`` of at most a given size.
///
/// For pictures that are not files of their own: a song's embedded cover art (`attached_pic`), the
/// JPEG preview inside a camera RAW file, a JPEG returned by another library. Files in storage go
/// through ``MediaInput`` instead, with its demuxer allowlist.
///
/// The pixel limit applies before decoding: the header is parsed first where the format allows it
/// (JPEG, PNG, WebP), and libavcodec's own `max_pixels` guards the rest.
public enum PacketImageDecoder {
    /// The codecs a packet image may be in.
    public enum Codec: String, Sendable, Hashable, CaseIterable {
        case jpeg, png, bmp, webp, gif, tiff

        var id: AVCodecID {
            switch self {
            case .jpeg: AV_CODEC_ID_MJPEG
            case .png: AV_CODEC_ID_PNG
            case .bmp: AV_CODEC_ID_BMP
            case .webp: AV_CODEC_ID_WEBP
            case .gif: AV_CODEC_ID_GIF
            case .tiff: AV_CODEC_ID_TIFF
            }
        }

        /// Recognises a codec from the first bytes of an image, or `nil`.
        public static func sniff(_ bytes: [UInt8]) -> Codec? {
            if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
            if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return .png }
            if bytes.starts(with: Array("BM".utf8)) { return .bmp }
            if bytes.count >= 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) { return .webp }
            if bytes.starts(with: Array("GIF8".utf8)) { return .gif }
            if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
            return nil
        }
    }

    /// Decodes `bytes` and reduces the picture to fit `maxLongEdge` (never upscaling).
    ///
    /// JPEGs are decoded at 1/2, 1/4 or 1/8 size when that still covers `maxLongEdge`
    /// (libavcodec's `lowres`), which is most of the speed of a thumbnail.
    /// - Parameters:
    ///   - bytes: The encoded image.
    ///   - codec: Its codec, or `nil` to recognise it from the bytes.
    ///   - maxLongEdge: Longest edge of the result.
    ///   - limits: ``MediaLimits/maxPixels`` applies.
    ///   - what: How to name the picture in error messages ("the cover art of song.mp3").
    /// - Returns: The picture; the orientation of the bytes is not applied.
    /// - Throws: ``JobError`` `pixel_limit`, `unsupported_format` or `corrupt_media`.
    public static func decode(_ bytes: [UInt8], codec: Codec? = nil, maxLongEdge: Int, limits: MediaLimits = .default,
                              what: String = "the embedded picture") throws(JobError) -> RGBAImage {
        guard let codec = codec ?? Codec.sniff(bytes) else {
            throw JobError(.unsupportedFormat, "\(what.prefix(1).uppercased() + what.dropFirst()) is in a format that cannot be recognised.")
        }
        var lowres: Int32 = 0
        if let header = ImageHeaderParser.parse(Array(bytes.prefix(1 << 20))), let w = header.width, let h = header.height {
            if limits.exceedsPixelLimit(width: w, height: h) {
                throw JobError(.pixelLimit, "\(what.prefix(1).uppercased() + what.dropFirst()) is \(w)×\(h) pixels, over the limit of \(limits.maxPixels) pixels.")
            }
            if codec == .jpeg { lowres = jpegLowres(width: w, height: h, maxLongEdge: maxLongEdge) }
        }
        guard let decoderCodec = avcodec_find_decoder(codec.id) else {
            throw JobError(.unsupportedFormat, "This FFmpeg build cannot decode \(codec.rawValue) pictures.", retryable: false)
        }
        let decoder = try DecoderContext(codec: decoderCodec)
        let context = decoder.pointer
        context.pointee.max_pixels = limits.maxPixels
        context.pointee.thread_count = 1
        context.pointee.lowres = lowres
        var status = avcodec_open2(context, decoderCodec, nil)
        guard status >= 0 else { throw ffmpegError(status, code: .corruptMedia, "The decoder for \(what) cannot be opened") }

        guard let packet = av_packet_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a packet.") }
        var packetRef: UnsafeMutablePointer<AVPacket>? = packet
        defer { av_packet_free(&packetRef) }
        status = av_new_packet(packet, Int32(bytes.count))
        guard status >= 0, let data = packet.pointee.data else { throw ffmpegError(status, code: .internalError, "FFmpeg could not allocate a packet") }
        bytes.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: bytes.count) }
        packet.pointee.flags |= CFFmpeg_AV_PKT_FLAG_KEY

        guard let frame = av_frame_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a frame.") }
        var frameRef: UnsafeMutablePointer<AVFrame>? = frame
        defer { av_frame_free(&frameRef) }
        status = avcodec_send_packet(context, packet)
        if status >= 0 { _ = avcodec_send_packet(context, nil) }
        if status >= 0 { status = avcodec_receive_frame(context, frame) }
        guard status >= 0 else {
            if Int64(context.pointee.width) * Int64(context.pointee.height) > limits.maxPixels {
                throw JobError(.pixelLimit, "\(what.prefix(1).uppercased() + what.dropFirst()) is \(context.pointee.width)×\(context.pointee.height) pixels, over the limit of \(limits.maxPixels) pixels.")
            }
            throw ffmpegError(status, code: .corruptMedia, "\(what.prefix(1).uppercased() + what.dropFirst()) cannot be decoded")
        }
        return try FrameConverter.convert(frame, fittingLongEdge: maxLongEdge)
    }

    /// The largest JPEG reduction (0–3: 1/1, 1/2, 1/4, 1/8) whose result still covers `maxLongEdge`.
    public static func jpegLowres(width: Int, height: Int, maxLongEdge: Int) -> Int32 {
        let long = max(width, height)
        var level: Int32 = 0
        while level < 3 && (long >> (level + 1)) >= maxLongEdge { level += 1 }
        return level
    }
}
