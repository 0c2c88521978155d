import CFFmpeg
import CHeif
import MediaNestCore

/// A libheif decoder plugin for HEVC, backed by libavcodec, that hands libheif a whole picture
/// already reduced to the output size, so no full-size copy of it ever reaches libheif.
///
/// Why: libheif 1.15 decodes an HEVC image with libde265, copies libde265's picture into an image
/// of its own, and may convert that to 4:4:4 as well; a 20 MP 10-bit HEIC peaked at 13.3 bytes
/// per source pixel, and no decoding option avoids the copies. Registered on one context only
/// (``HEIFDecoder`` does so for a primary image without alpha whose transforms keep its size),
/// this plugin decodes the HEVC stream with libavcodec and, when the decoded picture is the
/// whole image (its `ispe` size), reduces it with libswscale to the output size in 4:4:4
/// samples of the same depth, matrix and range; libheif then applies `irot`/`imir` to
/// that small picture and ``HEIFDecoder`` converts it to RGB and through LittleCMS as before.
/// The full-size memory is libavcodec's one frame.
///
/// Anything else the stream yields (a grid's tiles, a picture of another size) is handed over
/// whole, in its own format, as libde265's plugin would.
///
/// The request (sizes, limits) travels in ``current``, a task-local value: libheif calls the
/// plugin on the thread that called `heif_decode_image` (the context decodes without threads).
enum HEVCReducingDecoder {
    /// What the decode in progress asks of the plugin.
    final class Request: @unchecked Sendable {
        /// The whole image's coded size (`ispe`): a decoded picture of this size is reduced.
        let codedWidth: Int
        let codedHeight: Int
        /// The reduced size, in the coded orientation.
        let reducedWidth: Int
        let reducedHeight: Int
        let limits: MediaLimits
        /// Whether the whole picture was reduced (for the tests and the caller's checks).
        var reduced = false
        /// The first error, in the worker's words.
        var failure: JobError?

        init(codedWidth: Int, codedHeight: Int, reducedWidth: Int, reducedHeight: Int, limits: MediaLimits) {
            self.codedWidth = codedWidth
            self.codedHeight = codedHeight
            self.reducedWidth = reducedWidth
            self.reducedHeight = reducedHeight
            self.limits = limits
        }
    }

    @TaskLocal static var current: Request?

    /// The plugin table libheif keeps a pointer to (for as long as the process runs); written
    /// once, then only read.
    nonisolated(unsafe) static let plugin: UnsafeMutablePointer<heif_decoder_plugin> = {
        let table = UnsafeMutablePointer<heif_decoder_plugin>.allocate(capacity: 1)
        table.initialize(to: heif_decoder_plugin())
        table.pointee.plugin_api_version = 3
        table.pointee.get_plugin_name = { UnsafePointer(HEVCReducingDecoder.name) }
        table.pointee.does_support_format = { format in format == heif_compression_HEVC ? 1000 : 0 }
        table.pointee.new_decoder = { out in
            out?.pointee = Unmanaged.passRetained(StreamBuffer()).toOpaque()
            return HEVCReducingDecoder.ok
        }
        table.pointee.free_decoder = { decoder in
            if let decoder { Unmanaged<StreamBuffer>.fromOpaque(decoder).release() }
        }
        table.pointee.push_data = { decoder, data, size in
            guard let decoder, let data else { return HEVCReducingDecoder.failure }
            let stream = Unmanaged<StreamBuffer>.fromOpaque(decoder).takeUnretainedValue()
            return stream.append(UnsafeRawBufferPointer(start: data, count: size)) ? HEVCReducingDecoder.ok : HEVCReducingDecoder.failure
        }
        table.pointee.decode_image = { decoder, out in
            guard let decoder, let out else { return HEVCReducingDecoder.failure }
            let stream = Unmanaged<StreamBuffer>.fromOpaque(decoder).takeUnretainedValue()
            let request = HEVCReducingDecoder.current
            switch HEVCReducingDecoder.decode(stream, request: request) {
            case .success(let image):
                out.pointee = image
                return HEVCReducingDecoder.ok
            case .failure(let error):
                if request?.failure == nil { request?.failure = error }
                return HEVCReducingDecoder.failure
            }
        }
        table.pointee.set_strict_decoding = { _, _ in }
        table.pointee.id_name = UnsafePointer(HEVCReducingDecoder.identifier)
        return table
    }()

    nonisolated(unsafe) private static let name = strdup("libavcodec HEVC decoder, reducing (MediaNest)")!
    nonisolated(unsafe) private static let identifier = strdup("medianest-hevc")!
    nonisolated(unsafe) private static let success = strdup("Success")!
    nonisolated(unsafe) private static let failed = strdup("The HEVC stream could not be decoded")!
    private static var ok: heif_error { heif_error(code: heif_error_Ok, subcode: heif_suberror_Unspecified, message: UnsafePointer(success)) }
    private static var failure: heif_error {
        heif_error(code: heif_error_Decoder_plugin_error, subcode: heif_suberror_Unspecified, message: UnsafePointer(failed))
    }

    /// The stream libheif pushes (NAL units each after a 4-byte big-endian size, as in `hvcC`
    /// and the item's data), rewritten with Annex B start codes for libavcodec.
    final class StreamBuffer {
        var bytes: [UInt8] = []

        func append(_ data: UnsafeRawBufferPointer) -> Bool {
            var at = 0
            while at < data.count {
                guard data.count - at >= 4 else { return false }
                let size = Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
                at += 4
                guard size <= data.count - at else { return false }
                bytes += [0, 0, 0, 1]
                bytes += data[at..<(at + size)]
                at += size
            }
            return true
        }
    }

    /// Decodes the stream's picture and makes libheif's image of it: reduced when it is the
    /// whole image the request describes, else whole.
    static func decode(_ stream: StreamBuffer, request: Request?) -> Result<OpaquePointer, JobError> {
        do throws(JobError) {
            let limits = request?.limits ?? .default
            guard let codec = avcodec_find_decoder(AV_CODEC_ID_HEVC) else {
                throw JobError(.unsupportedFormat, "This FFmpeg build cannot decode HEVC.", retryable: false)
            }
            let frame = try OwnedFrame()
            do {
                // The decoder's own buffers (parameter sets, per-block tables) go with it, before the copy.
                let decoder = try DecoderContext(codec: codec)
                let context = decoder.pointer
                context.pointee.max_pixels = limits.maxPixels
                context.pointee.thread_count = 1
                var status = avcodec_open2(context, codec, nil)
                guard status >= 0 else { throw ffmpegError(status, code: .corruptMedia, "The HEVC decoder cannot be opened") }
                guard let packet = av_packet_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a packet.") }
                var packetRef: UnsafeMutablePointer<AVPacket>? = packet
                defer { av_packet_free(&packetRef) }
                status = av_new_packet(packet, Int32(stream.bytes.count))
                guard status >= 0, let data = packet.pointee.data else { throw ffmpegError(status, code: .internalError, "FFmpeg could not allocate a packet") }
                stream.bytes.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: $0.count) }
                stream.bytes = []
                packet.pointee.flags |= CFFmpeg_AV_PKT_FLAG_KEY
                status = avcodec_send_packet(context, packet)
                if status >= 0 { _ = avcodec_send_packet(context, nil) }
                let received = avcodec_receive_frame(context, frame.pointer)
                guard received >= 0 else {
                    throw ffmpegError(status < 0 ? status : received, code: .corruptMedia, "The HEVC picture cannot be decoded")
                }
            }
            let width = Int(frame.pointer.pointee.width), height = Int(frame.pointer.pointee.height)
            guard width > 0, height > 0, Int64(width) * Int64(height) <= limits.maxPixels else {
                throw JobError(.corruptMedia, "The HEVC picture decoded to an unusable size (\(width)×\(height)).")
            }
            let format = AVPixelFormat(rawValue: frame.pointer.pointee.format)
            guard let layout = Layout(format) else {
                throw JobError(.unsupportedFormat, "The HEVC picture's pixel format (\(CFFmpeg_pix_fmt_name(format.rawValue).map { String(cString: $0) } ?? "?")) is not supported.")
            }
            let image: OpaquePointer
            if let request, width == request.codedWidth, height == request.codedHeight,
               request.reducedWidth < width || request.reducedHeight < height {
                image = try reduce(frame.pointer, layout: layout, toWidth: request.reducedWidth, height: request.reducedHeight)
                request.reduced = true
            } else {
                image = try copy(frame.pointer, layout: layout)
            }
            setColourProfile(of: image, from: frame.pointer)
            return .success(image)
        } catch {
            return .failure(error)
        }
    }

    /// How libavcodec's frame maps to libheif's planes.
    struct Layout {
        var monochrome: Bool
        var chroma: heif_chroma
        var depth: Int
        var chromaShift: (x: Int, y: Int)

        init?(_ format: AVPixelFormat) {
            switch format {
            case AV_PIX_FMT_GRAY8: self.init(true, heif_chroma_monochrome, 8, (0, 0))
            case AV_PIX_FMT_GRAY10LE: self.init(true, heif_chroma_monochrome, 10, (0, 0))
            case AV_PIX_FMT_GRAY12LE: self.init(true, heif_chroma_monochrome, 12, (0, 0))
            case AV_PIX_FMT_YUV420P: self.init(false, heif_chroma_420, 8, (1, 1))
            case AV_PIX_FMT_YUV420P10LE: self.init(false, heif_chroma_420, 10, (1, 1))
            case AV_PIX_FMT_YUV420P12LE: self.init(false, heif_chroma_420, 12, (1, 1))
            case AV_PIX_FMT_YUV422P: self.init(false, heif_chroma_422, 8, (1, 0))
            case AV_PIX_FMT_YUV422P10LE: self.init(false, heif_chroma_422, 10, (1, 0))
            case AV_PIX_FMT_YUV422P12LE: self.init(false, heif_chroma_422, 12, (1, 0))
            case AV_PIX_FMT_YUV444P: self.init(false, heif_chroma_444, 8, (0, 0))
            case AV_PIX_FMT_YUV444P10LE: self.init(false, heif_chroma_444, 10, (0, 0))
            case AV_PIX_FMT_YUV444P12LE: self.init(false, heif_chroma_444, 12, (0, 0))
            default: return nil
            }
        }

        private init(_ monochrome: Bool, _ chroma: heif_chroma, _ depth: Int, _ shift: (Int, Int)) {
            self.monochrome = monochrome
            self.chroma = chroma
            self.depth = depth
            self.chromaShift = (shift.0, shift.1)
        }

        var channels: [heif_channel] { monochrome ? [heif_channel_Y] : [heif_channel_Y, heif_channel_Cb, heif_channel_Cr] }
    }

    /// A libheif image with `layout`'s planes at `width` × `height` and `depth` bits.
    private static func makeImage(width: Int, height: Int, layout: Layout, chroma: heif_chroma, depth: Int) throws(JobError) -> OpaquePointer {
        var image: OpaquePointer?
        let colorspace = layout.monochrome ? heif_colorspace_monochrome : heif_colorspace_YCbCr
        guard heif_image_create(Int32(width), Int32(height), colorspace, chroma, &image).code == heif_error_Ok, let image else {
            throw JobError(.internalError, "libheif could not allocate an image.")
        }
        for (index, channel) in layout.channels.enumerated() {
            let shift = index == 0 || chroma == heif_chroma_444 ? (x: 0, y: 0) : layout.chromaShift
            let w = (width + (1 << shift.x) - 1) >> shift.x, h = (height + (1 << shift.y) - 1) >> shift.y
            guard heif_image_add_plane(image, channel, Int32(w), Int32(h), Int32(depth)).code == heif_error_Ok else {
                heif_image_release(image)
                throw JobError(.internalError, "libheif could not allocate an image plane.")
            }
        }
        return image
    }

    /// The whole picture, plane by plane, as libde265's plugin hands it over.
    private static func copy(_ frame: UnsafeMutablePointer<AVFrame>, layout: Layout) throws(JobError) -> OpaquePointer {
        let width = Int(frame.pointee.width), height = Int(frame.pointee.height)
        let image = try makeImage(width: width, height: height, layout: layout, chroma: layout.chroma, depth: layout.depth)
        let bytesPerSample = layout.depth > 8 ? 2 : 1
        let sources = [frame.pointee.data.0, frame.pointee.data.1, frame.pointee.data.2]
        let strides = [Int(frame.pointee.linesize.0), Int(frame.pointee.linesize.1), Int(frame.pointee.linesize.2)]
        for (index, channel) in layout.channels.enumerated() {
            var stride: Int32 = 0
            guard let destination = heif_image_get_plane(image, channel, &stride), let source = sources[index] else {
                heif_image_release(image)
                throw JobError(.internalError, "libheif gave no image plane.")
            }
            let w = Int(heif_image_get_width(image, channel)), h = Int(heif_image_get_height(image, channel))
            for y in 0..<h {
                (destination + y * Int(stride)).update(from: source + y * strides[index], count: w * bytesPerSample)
            }
        }
        return image
    }

    /// The picture reduced by libswscale to `width` × `height` in 4:4:4 YCbCr (or grey) of the
    /// same depth, matrix and range: the same samples, only fewer of them.
    private static func reduce(_ frame: UnsafeMutablePointer<AVFrame>, layout: Layout, toWidth width: Int, height: Int) throws(JobError) -> OpaquePointer {
        // libheif checks the depth against the stream's, so the samples keep theirs.
        let image = try makeImage(width: width, height: height, layout: layout,
                                  chroma: layout.monochrome ? heif_chroma_monochrome : heif_chroma_444, depth: layout.depth)
        let target: AVPixelFormat = switch (layout.monochrome, layout.depth) {
        case (true, 8): AV_PIX_FMT_GRAY8
        case (true, 10): AV_PIX_FMT_GRAY10LE
        case (true, _): AV_PIX_FMT_GRAY12LE
        case (false, 8): AV_PIX_FMT_YUV444P
        case (false, 10): AV_PIX_FMT_YUV444P10LE
        case (false, _): AV_PIX_FMT_YUV444P12LE
        }
        let source = AVPixelFormat(rawValue: frame.pointee.format)
        guard let scaler = sws_getContext(frame.pointee.width, frame.pointee.height, source, Int32(width), Int32(height), target,
                                          FrameConverter.qualityFlags, nil, nil, nil) else {
            heif_image_release(image)
            throw JobError(.internalError, "The HEVC picture could not be reduced.")
        }
        defer { sws_freeContext(scaler) }
        // libswscale writes into planes of our own, each followed by the room it takes past a
        // narrow plane's end (ScalerOutput); libheif's planes are only 16-byte aligned rows.
        let rowBytes = width * (layout.depth > 8 ? 2 : 1)
        let planeStride = rowBytes * height + ScalerOutput.tailPadding
        var reduced = [UInt8](repeating: 0, count: planeStride * layout.channels.count)
        let status = reduced.withUnsafeMutableBufferPointer { buffer in
            var planes: [UnsafeMutablePointer<UInt8>?] = (0..<4).map { $0 < layout.channels.count ? buffer.baseAddress! + $0 * planeStride : nil }
            var strides: [Int32] = (0..<4).map { $0 < layout.channels.count ? Int32(rowBytes) : 0 }
            return withUnsafePointer(to: frame.pointee.data) { data in
                withUnsafePointer(to: frame.pointee.linesize) { linesize in
                    data.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                        linesize.withMemoryRebound(to: Int32.self, capacity: 8) { srcStride in
                            sws_scale(scaler, src, srcStride, 0, frame.pointee.height, &planes, &strides)
                        }
                    }
                }
            }
        }
        guard status > 0 else {
            heif_image_release(image)
            throw ffmpegError(status, code: .corruptMedia, "The HEVC picture could not be reduced")
        }
        for (index, channel) in layout.channels.enumerated() {
            var stride: Int32 = 0
            guard let destination = heif_image_get_plane(image, channel, &stride) else {
                heif_image_release(image)
                throw JobError(.internalError, "libheif gave no image plane.")
            }
            reduced.withUnsafeBufferPointer { buffer in
                let plane = buffer.baseAddress! + index * planeStride
                for y in 0..<height {
                    (destination + y * Int(stride)).update(from: plane + y * rowBytes, count: rowBytes)
                }
            }
        }
        return image
    }

    /// The stream's colour description (VUI), as libde265's plugin attaches it; libheif prefers
    /// the item's own `colr` when there is one.
    private static func setColourProfile(of image: OpaquePointer, from frame: UnsafeMutablePointer<AVFrame>) {
        guard let nclx = heif_nclx_color_profile_alloc() else { return }
        defer { heif_nclx_color_profile_free(nclx) }
        _ = heif_nclx_color_profile_set_color_primaries(nclx, UInt16(truncatingIfNeeded: frame.pointee.color_primaries.rawValue))
        _ = heif_nclx_color_profile_set_transfer_characteristics(nclx, UInt16(truncatingIfNeeded: frame.pointee.color_trc.rawValue))
        _ = heif_nclx_color_profile_set_matrix_coefficients(nclx, UInt16(truncatingIfNeeded: frame.pointee.colorspace.rawValue))
        nclx.pointee.full_range_flag = frame.pointee.color_range == AVCOL_RANGE_JPEG ? 1 : 0
        _ = heif_image_set_nclx_color_profile(image, nclx)
    }
}
