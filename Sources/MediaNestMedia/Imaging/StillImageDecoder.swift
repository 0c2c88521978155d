import CFFmpeg
public import MediaNestCore

/// A still picture decoded from a file, reduced and turned upright.
public struct DecodedStill: Sendable, Hashable {
    /// The picture, upright (EXIF orientation applied), at most the requested long edge.
    public var image: RGBAImage
    /// The stored width of the source, before orientation (from the header, else the decoder).
    public var sourceWidth: Int
    /// The stored height of the source, before orientation.
    public var sourceHeight: Int
    /// The source format: `jpeg`, `png`, `gif`, `webp`, `bmp` or `tiff`.
    public var format: String
    /// The EXIF orientation that was applied (1 when the file has none).
    public var orientation: Int
    /// The JPEG reduction used while decoding (0: none, 1–3: 1/2, 1/4, 1/8). JPEGs decoded with
    /// TurboJPEG may use a finer factor (3/8, 3/4 …); this is then its power-of-two part.
    public var lowres: Int
    /// The DCT-domain scaling factor TurboJPEG decoded a JPEG at ("3/8": 4000 px decoded as
    /// 1500 px), or `nil` when the picture was not decoded by TurboJPEG.
    public var jpegScale: String?
    /// What the source's colours were converted from ("Display P3", "Adobe RGB (1998)"), or `nil`
    /// when they were sRGB or untagged and left as they are.
    public var convertedFrom: String?

    public init(image: RGBAImage, sourceWidth: Int, sourceHeight: Int, format: String, orientation: Int, lowres: Int) {
        self.image = image
        self.sourceWidth = sourceWidth
        self.sourceHeight = sourceHeight
        self.format = format
        self.orientation = orientation
        self.lowres = lowres
    }
}

/// Decodes image files from storage (JPEG, PNG, GIF, WebP, BMP, TIFF) with libavcodec, straight to
/// an upright ``RGBAImage`` of at most a requested size.
///
/// What makes it fast and safe on hostile uploads:
/// - **Header first.** The format is recognised from the file's magic bytes and its width and
///   height are read from the header before anything is decoded; a picture over
///   ``MediaLimits/maxPixels`` is refused with `pixel_limit` without allocating a frame (a 40000 ×
///   40000 PNG "bomb" of a few MB costs a few kilobytes of memory). The decoder's own `max_pixels`
///   guards formats whose header is not parsed here.
/// - **One read, one packet.** A still image is one codec packet, so the file is read once and
///   handed to the decoder whole. FFmpeg's image demuxers would only split it through a parser and
///   `avformat_find_stream_info` would decode it a second time at full size to learn its size.
///   The formats accepted are exactly the image demuxers on ``MediaInput/allowedDemuxers``.
/// - **Shrink on load.** JPEGs are decoded with libjpeg-turbo (TurboJPEG, ``TurboJPEGDecoder``)
///   scaled in the DCT domain in eighths (1/8 … 7/8), the largest reduction that still covers the
///   requested long edge; CMYK/YCCK JPEGs and JPEGs TurboJPEG refuses go to libavcodec at 1/2,
///   1/4 or 1/8 (`lowres`).
/// - **TIFF strips streamed.** Plain TIFFs (uncompressed or deflated strips of 8- or 16-bit grey
///   or RGB) are read a few rows at a time straight into the reduction by ``TIFFStripDecoder``
///   instead of FFmpeg, which holds the file, a deflated strip inflated whole and the frame at once.
/// - **Bounded threads.** The decoder uses at most the given number of threads.
/// - **Damage.** A truncated file yields what decoded (JPEG fills the rest with grey) or
///   `corrupt_media`; never a crash.
/// - **Orientation.** The EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF, TIFF IFD0) is applied
///   to the reduced picture.
/// - **Colour.** CMYK and YCCK JPEGs (Adobe) are converted to RGB by libavcodec, or through
///   their embedded CMYK profile; YUV is expanded with the right range and matrix by
///   ``FrameConverter``; an embedded ICC profile (JPEG APP2, PNG iCCP/cICP, WebP ICCP, TIFF) is
///   converted with LittleCMS (``ColourManagement``); output is 8-bit sRGB (or Display P3).
/// - **Animation.** GIF and WebP give their first frame. FFmpeg 5.1 cannot decode animated WebP,
///   so the first `ANMF` frame is rewritten as a still WebP first.
public enum StillImageDecoder {
    /// The largest image file read into memory (512 MiB); bigger ones fail with `too_large`.
    public static let maxImageFileBytes: Int64 = 512 << 20

    /// The image codec of a file, recognised from its first bytes, or `nil` when it is not a still
    /// image format this decoder reads.
    /// - Parameter header: The file's first bytes (16 are enough).
    public static func recognise(_ header: [UInt8]) -> PacketImageDecoder.Codec? {
        PacketImageDecoder.Codec.sniff(header)
    }

    /// Decodes the image file and reduces it to fit `maxLongEdge` (never upscaling), upright.
    /// - Parameters:
    ///   - file: The safely opened file.
    ///   - limits: ``MediaLimits/maxPixels`` and ``MediaLimits/timeout`` apply.
    ///   - maxLongEdge: Longest edge of the result, after orientation.
    ///   - threads: Most decoder threads (at least 1).
    ///   - cancellation: The job's token, checked before and after the decode.
    ///   - colourSpace: The output's colour space (`stills.colorspace`).
    ///   - reduceFully: `false` leaves a JPEG decoded by TurboJPEG without a colour conversion at
    ///     its DCT-scaled size (see ``StillRendering``).
    /// - Returns: The picture and what was learnt about the source.
    /// - Throws: ``JobError`` `unsupported_format`, `pixel_limit`, `corrupt_media`, `too_large`,
    ///   `io_error`, or the stop's code.
    public static func decode(file: SafeFile, limits: MediaLimits = .default, maxLongEdge: Int, threads: Int = 1,
                              cancellation: JobCancellation? = nil, colourSpace: StillColourSpace = .srgb,
                              reduceFully: Bool = true) throws(JobError) -> DecodedStill {
        try decode(file: file, limits: limits, maxLongEdge: maxLongEdge, threads: threads, cancellation: cancellation,
                   colourSpace: colourSpace, streamTIFF: true, reduceFully: reduceFully)
    }

    /// ``decode(file:limits:maxLongEdge:threads:cancellation:colourSpace:reduceFully:)``, with the choice of
    /// FFmpeg for every TIFF (`streamTIFF: false`), which the tests compare the streaming reader to.
    static func decode(file: SafeFile, limits: MediaLimits, maxLongEdge: Int, threads: Int, cancellation: JobCancellation?,
                       colourSpace: StillColourSpace, streamTIFF: Bool, reduceFully: Bool = true) throws(JobError) -> DecodedStill {
        FFmpegLog.install()
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        try stop.check()
        let header = try file.read(at: 0, count: Int(min(file.size, 256 << 10)))
        guard let codec = recognise(header) else {
            throw JobError(.unsupportedFormat, "The file \(file.relativePath) is not a JPEG, PNG, GIF, WebP, BMP or TIFF image.")
        }
        let what = "the \(codec.rawValue.uppercased()) image \(file.relativePath)"

        // Header first: size and orientation before a single pixel is decoded.
        var width: Int?, height: Int?, orientation = 1
        switch codec {
        case .jpeg, .png, .webp:
            if let parsed = ImageHeaderParser.parse(header) {
                (width, height) = (parsed.width, parsed.height)
                orientation = parsed.exif?.orientation ?? 1
            }
        case .gif:
            if header.count >= 10 {
                width = Int(header[6]) | Int(header[7]) << 8
                height = Int(header[8]) | Int(header[9]) << 8
            }
        case .bmp:
            if header.count >= 26 {
                let infoSize = Int(ImageHeaderParser.le32(header, 14))
                if infoSize == 12 {
                    width = Int(header[18]) | Int(header[19]) << 8
                    height = Int(header[20]) | Int(header[21]) << 8
                } else if infoSize >= 40 {
                    width = abs(Int(Int32(bitPattern: ImageHeaderParser.le32(header, 18))))
                    height = abs(Int(Int32(bitPattern: ImageHeaderParser.le32(header, 22))))
                }
            }
        case .tiff:
            if let size = ImageHeaderParser.tiffDimensions(header) { (width, height) = (size.width, size.height) }
            orientation = ImageHeaderParser.parseExif(header[...])?.orientation ?? 1
        }
        if let width, let height, limits.exceedsPixelLimit(width: width, height: height) {
            throw JobError(.pixelLimit, "\(capitalised(what)) is \(width)×\(height) pixels (\(UInt64(width) * UInt64(height)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }
        guard file.size <= maxImageFileBytes else {
            throw JobError(.tooLarge, "\(capitalised(what)) is \(file.size) bytes; image files over \(maxImageFileBytes) bytes are not decoded.")
        }
        try stop.check()

        // The packet is filled straight from the file: no zeroed array, no second copy.
        var payload: PacketPayload = .file(file)
        var colourPlan: ColourPlan?
        if header.count == Int(file.size) { payload = .bytes(header) }
        if codec == .webp {
            let bytes = header.count == Int(file.size) ? header : try file.read(at: 0, count: Int(file.size))
            payload = .bytes(WebPAnimation.firstFrameAsStill(bytes) ?? bytes)
        }
        try stop.check()

        let orientationToApply = ImageOrientation(exifValue: orientation)
        if codec == .jpeg {
            // TurboJPEG first; libavcodec for CMYK/YCCK and for what TurboJPEG refuses outright.
            let bytes = header.count == Int(file.size) ? header : try readWhole(file)
            let embedded = try EmbeddedColour.jpeg(ByteReader(bytes))
            if let still = try decodeWithTurboJPEG(bytes, maxLongEdge: maxLongEdge, limits: limits, what: what,
                                                   orientation: orientationToApply, stop: stop, colour: embedded, colourSpace: colourSpace,
                                                   reduceFully: reduceFully) {
                return still
            }
            payload = .bytes(bytes)
            colourPlan = ColourManagement.plan(for: embedded.colour, layout: .rgba16, target: colourSpace)
        } else {
            // The profile (or cICP/sRGB chunk) from the header: a few small reads, no decoding.
            let embedded = try EmbeddedColour.read(codec: codec, from: header.count == Int(file.size) ? ByteReader(header) : ByteReader(file))
            colourPlan = ColourManagement.plan(for: embedded.colour, layout: .rgba16, target: colourSpace)
        }
        if codec == .tiff, streamTIFF, let layout = try TIFFStripDecoder.layout(ByteReader(file), limits: limits) {
            // Plain strips: read a few rows at a time straight into the reduction (no packet, no frame).
            let size = RGBAImage.fittedSize(width: layout.width, height: layout.height, maxLongEdge: maxLongEdge)
            var image = try TIFFStripDecoder.decode(file: file, layout: layout, toWidth: size.width, height: size.height,
                                                    colour: colourPlan, stop: stop, what: what)
            image.clearAlphaIfOpaque()
            image = orientationToApply.apply(to: image)
            var still = DecodedStill(image: image, sourceWidth: layout.width, sourceHeight: layout.height,
                                     format: codec.rawValue, orientation: orientationToApply.rawValue, lowres: 0)
            still.convertedFrom = colourPlan?.transform == nil ? nil : colourPlan?.sourceName
            return still
        }
        let lowres: Int32 = codec == .jpeg ? (width.flatMap { w in height.map { h in PacketImageDecoder.jpegLowres(width: w, height: h, maxLongEdge: maxLongEdge) } } ?? 0) : 0
        let decoded = try decodePacket(payload, codec: codec, lowres: lowres, threads: threads, limits: limits, what: what)
        try stop.check()
        var image = try FrameConverter.convert(decoded.frame.pointer, fittingLongEdge: maxLongEdge, colour: colourPlan)
        image.clearAlphaIfOpaque()
        image = orientationToApply.apply(to: image)
        var still = DecodedStill(image: image, sourceWidth: width ?? decoded.width, sourceHeight: height ?? decoded.height,
                                 format: codec.rawValue, orientation: orientationToApply.rawValue, lowres: Int(lowres))
        still.convertedFrom = colourPlan?.transform == nil ? nil : colourPlan?.sourceName
        return still
    }

    /// The whole file in memory, without zeroing the buffer first; a file that shrank since it
    /// was opened gives what is left.
    static func readWhole(_ file: SafeFile) throws(JobError) -> [UInt8] {
        let size = Int(file.size)
        var failure: Errno?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            switch file.readFully(into: UnsafeMutableRawBufferPointer(buffer), at: 0) {
            case .success(let n): count = n
            case .failure(let code): failure = code; count = 0
            }
        }
        if let failure { throw JobError(.ioError, "Reading \(file.relativePath) failed: \(errnoText(failure)).") }
        return bytes
    }

    /// Decodes a JPEG with TurboJPEG (DCT-domain scaling, then the same Lanczos reduction and
    /// orientation as the libavcodec path), or `nil` when libavcodec should decode it instead:
    /// CMYK/YCCK (TurboJPEG 2.1 gives no RGB for them) or data TurboJPEG refuses with a hard error.
    ///
    /// With an embedded profile the picture is converted with LittleCMS: an RGB one while it is
    /// reduced (``RGBAImage/fitted(maxLongEdge:colour:)``), a CMYK one (for CMYK/YCCK JPEGs, which
    /// TurboJPEG then decodes as CMYK) before it is reduced.
    static func decodeWithTurboJPEG(_ bytes: [UInt8], maxLongEdge: Int, limits: MediaLimits, what: String,
                                    orientation: ImageOrientation, stop: StopGuard,
                                    colour: EmbeddedColour = EmbeddedColour(), colourSpace: StillColourSpace = .srgb,
                                    reduceFully: Bool = true) throws(JobError) -> DecodedStill? {
        var cmykPlan: ColourPlan?
        let result: Result<(TurboJPEGDecoder.Header, RGBAImage, (num: Int, denom: Int))?, JobError> = bytes.withUnsafeBytes { raw in
            guard let handle = try? TurboJPEGDecoder.Handle(),
                  let header = try? TurboJPEGDecoder.header(raw, handle: handle) else { return .success(nil) }
            if !header.decodesToRGB {
                // CMYK/YCCK: only through its own profile; without one, libavcodec's conversion as before.
                cmykPlan = ColourManagement.plan(for: colour.colour, layout: colour.adobeInverted ? .cmyk8Inverted : .cmyk8, target: colourSpace)
                guard cmykPlan?.transform != nil else { return .success(nil) }
            }
            // The pixel limit again from TurboJPEG's own reading of the header, before decoding.
            guard Int64(header.width) * Int64(header.height) <= limits.maxPixels else {
                return .failure(JobError(.pixelLimit, "\(capitalised(what)) is \(header.width)×\(header.height) pixels (\(Int64(header.width) * Int64(header.height)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded."))
            }
            let factor = TurboJPEGDecoder.scalingFactor(width: header.width, height: header.height, maxLongEdge: maxLongEdge)
            // Accurate DCT: TJFLAG_FASTDCT only changes the full-size (8/8) IDCT, where it is less exact.
            guard let decoded = try? TurboJPEGDecoder.decode(raw, header: header, factor: factor, fastDCT: false, handle: handle,
                                                             cmyk: cmykPlan != nil) else {
                return .success(nil)
            }
            return .success((header, decoded.image, factor))
        }
        guard let (header, decodedPicture, factor) = try result.get() else { return nil }
        var decoded = decodedPicture
        try stop.check()
        var convertedFrom: String?
        if let cmykPlan, let transform = cmykPlan.transform {
            // CMYK → RGBA at the decoded size (4 bytes per pixel either way), then the usual reduction.
            var rgba = [UInt8](repeating: 255, count: decoded.pixels.count)
            decoded.pixels.withUnsafeBytes { source in
                rgba.withUnsafeMutableBytes { transform.apply(source.baseAddress!, to: $0.baseAddress!, pixels: decoded.width * decoded.height) }
            }
            decoded.pixels = rgba
            decoded.colourSpace = cmykPlan.output
            convertedFrom = cmykPlan.sourceName
        }
        var image: RGBAImage
        if cmykPlan == nil, let plan = ColourManagement.plan(for: colour.colour, layout: .rgba16, target: colourSpace) {
            image = try decoded.fitted(maxLongEdge: maxLongEdge, colour: plan)
            if plan.transform != nil { convertedFrom = plan.sourceName }
        } else if reduceFully {
            image = try decoded.fitted(maxLongEdge: maxLongEdge)
        } else {
            // Left at the DCT-scaled size: the caller reduces each output from it.
            image = decoded
        }
        image = orientation.apply(to: image)
        // The power-of-two part of the reduction, comparable with libavcodec's `lowres`.
        var lowres = 0
        while lowres < 3 && factor.num << (lowres + 1) <= factor.denom { lowres += 1 }
        var still = DecodedStill(image: image, sourceWidth: header.width, sourceHeight: header.height,
                                 format: PacketImageDecoder.Codec.jpeg.rawValue, orientation: orientation.rawValue, lowres: lowres)
        still.convertedFrom = convertedFrom
        still.jpegScale = "\(factor.num)/\(factor.denom)"
        return still
    }

    /// Decodes one packet holding a whole image.
    /// Where a packet's bytes come from.
    enum PacketPayload {
        case bytes([UInt8])
        case file(SafeFile)
    }

    static func decodePacket(_ payload: PacketPayload, codec: PacketImageDecoder.Codec, lowres: Int32, threads: Int,
                             limits: MediaLimits, what: String) throws(JobError) -> (frame: OwnedFrame, width: Int, height: Int) {
        guard let decoderCodec = avcodec_find_decoder(codec.id) else {
            throw JobError(.unsupportedFormat, "This FFmpeg build cannot decode \(codec.rawValue) pictures.", retryable: false)
        }
        let decoder = try DecoderContext(codec: decoderCodec)
        let context = decoder.pointer
        context.pointee.max_pixels = limits.maxPixels
        context.pointee.thread_count = Int32(max(1, threads))
        // Frame threading copies the whole context per thread and gains nothing on one picture.
        context.pointee.thread_type = CFFmpeg_FF_THREAD_SLICE
        context.pointee.lowres = lowres
        var status = avcodec_open2(context, decoderCodec, nil)
        guard status >= 0 else { throw ffmpegError(status, code: .corruptMedia, "The decoder for \(what) cannot be opened") }

        guard let packet = av_packet_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a packet.") }
        var packetRef: UnsafeMutablePointer<AVPacket>? = packet
        defer { av_packet_free(&packetRef) }
        let count: Int
        switch payload {
        case .bytes(let bytes): count = bytes.count
        case .file(let file): count = Int(file.size)
        }
        status = av_new_packet(packet, Int32(count))
        guard status >= 0, let data = packet.pointee.data else { throw ffmpegError(status, code: .internalError, "FFmpeg could not allocate a packet") }
        switch payload {
        case .bytes(let bytes):
            bytes.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: bytes.count) }
        case .file(let file):
            switch file.readFully(into: UnsafeMutableRawBufferPointer(start: data, count: count), at: 0) {
            case .success(let n):
                // A file that shrank since it was opened is decoded as far as it goes.
                packet.pointee.size = Int32(n)
            case .failure(let code):
                throw JobError(.ioError, "Reading \(file.relativePath) failed: \(errnoText(code)).")
            }
        }
        packet.pointee.flags |= CFFmpeg_AV_PKT_FLAG_KEY

        let frame = try OwnedFrame()
        status = avcodec_send_packet(context, packet)
        if status >= 0 || status == CFFmpeg_AVERROR_EAGAIN { _ = avcodec_send_packet(context, nil) }
        // A decoder that refuses the packet may still have produced a frame of what it read.
        let received = avcodec_receive_frame(context, frame.pointer)
        guard received >= 0 else {
            if Int64(context.pointee.width) * Int64(context.pointee.height) > limits.maxPixels {
                throw JobError(.pixelLimit, "\(capitalised(what)) is \(context.pointee.width)×\(context.pointee.height) pixels, over the limit of \(limits.maxPixels) pixels.")
            }
            throw ffmpegError(status < 0 ? status : received, code: .corruptMedia, "\(capitalised(what)) cannot be decoded")
        }
        guard frame.pointer.pointee.width > 0, frame.pointer.pointee.height > 0, frame.pointer.pointee.data.0 != nil else {
            throw JobError(.corruptMedia, "\(capitalised(what)) decoded to an empty picture.")
        }
        let scale = 1 << Int(lowres)
        return (frame, Int(frame.pointer.pointee.width) * scale, Int(frame.pointer.pointee.height) * scale)
    }

    private static func capitalised(_ text: String) -> String { text.prefix(1).uppercased() + text.dropFirst() }
}

extension RGBAImage {
    /// Marks the picture opaque when every alpha byte is 255 (decoders report alpha for CMYK JPEGs
    /// and RGBA PNGs that never use it; an opaque picture encodes smaller and is never flattened).
    mutating func clearAlphaIfOpaque() {
        guard hasAlpha else { return }
        let opaque = pixels.withUnsafeBufferPointer { p -> Bool in
            var i = 3
            while i < p.count {
                if p[i] != 255 { return false }
                i += 4
            }
            return true
        }
        if opaque { hasAlpha = false }
    }

    /// The picture reduced to fit `maxLongEdge` (never upscaled), with the same high-quality
    /// filter the decoders use; used to make a thumbnail from an already decoded preview.
    /// - Parameter maxLongEdge: Longest edge of the result.
    /// - Returns: The reduced picture, or `self` when it already fits.
    /// - Throws: ``JobError`` `internal_error` when libswscale fails.
    public func fitted(maxLongEdge: Int) throws(JobError) -> RGBAImage {
        let size = RGBAImage.fittedSize(width: width, height: height, maxLongEdge: maxLongEdge)
        return try FrameConverter.resize(self, width: size.width, height: size.height)
    }

    /// The picture reduced to fit `maxLongEdge` and converted by `colour`: libswscale reduces it
    /// to 16-bit RGBA, LittleCMS converts that to 8 bits (see ``FrameConverter``).
    func fitted(maxLongEdge: Int, colour: ColourPlan) throws(JobError) -> RGBAImage {
        let size = RGBAImage.fittedSize(width: width, height: height, maxLongEdge: maxLongEdge)
        let result: Result<RGBAImage, JobError> = pixels.withUnsafeBufferPointer { buffer in
            var planes: [UnsafePointer<UInt8>?] = [buffer.baseAddress, nil, nil, nil]
            var strides: [Int32] = [Int32(width * 4), 0, 0, 0]
            do throws(JobError) {
                return .success(try FrameConverter.convert(planes: &planes, strides: &strides, width: width, height: height, format: AV_PIX_FMT_RGBA,
                                                            fullRange: true, matrix: nil, toWidth: size.width, height: size.height, colour: colour))
            } catch {
                return .failure(error)
            }
        }
        var image = try result.get()
        image.hasAlpha = hasAlpha
        return image
    }
}

/// Turns an animated WebP into a still WebP of its first frame, which FFmpeg 5.1's decoder reads.
enum WebPAnimation {
    /// The first `ANMF` frame as a complete still WebP file, or `nil` when `bytes` is not an
    /// animated WebP (or is damaged; then the decoder reports it).
    static func firstFrameAsStill(_ b: [UInt8]) -> [UInt8]? {
        guard b.count >= 30, Array(b[12..<16]) == Array("VP8X".utf8), b[20] & 0x02 != 0 else { return nil }
        var i = 12
        var chunks = 0
        while i + 8 <= b.count, chunks < 100_000 {
            chunks += 1
            let type = String(decoding: b[i..<(i + 4)], as: UTF8.self)
            let length = Int(ImageHeaderParser.le32(b, i + 4))
            let start = i + 8
            guard length <= b.count - start else { return nil }
            if type == "ANMF", length >= 16 {
                let frameWidth = (Int(b[start + 6]) | Int(b[start + 7]) << 8 | Int(b[start + 8]) << 16) + 1
                let frameHeight = (Int(b[start + 9]) | Int(b[start + 10]) << 8 | Int(b[start + 11]) << 16) + 1
                let frameData = Array(b[(start + 16)..<(start + length)])
                let hasAlpha = containsChunk("ALPH", in: frameData)
                // VP8X: flags (alpha bit 0x10), 3 reserved bytes, canvas width - 1, height - 1.
                var vp8x: [UInt8] = Array("VP8X".utf8) + le32(10) + [hasAlpha ? 0x10 : 0, 0, 0, 0]
                vp8x += le24(frameWidth - 1) + le24(frameHeight - 1)
                let body = Array("WEBP".utf8) + vp8x + frameData
                return Array("RIFF".utf8) + le32(body.count) + body
            }
            i = start + length + (length & 1)
        }
        return nil
    }

    private static func containsChunk(_ name: String, in data: [UInt8]) -> Bool {
        var i = 0
        while i + 8 <= data.count {
            if String(decoding: data[i..<(i + 4)], as: UTF8.self) == name { return true }
            let length = Int(ImageHeaderParser.le32(data, i + 4))
            guard length <= data.count - i - 8 else { return false }
            i += 8 + length + (length & 1)
        }
        return false
    }

    private static func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }
    private static func le24(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF)] }
}

extension MediaInput {
    /// Whether the input has a moving video stream (not only a still cover picture, which audio
    /// files carry as an `attached_pic` stream); the thumbnail dispatcher's video/audio test.
    public var hasMovingPicture: Bool {
        streams.contains { stream in
            stream.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO
                && stream.pointee.disposition & CFFmpeg_AV_DISPOSITION_ATTACHED_PIC == 0
        }
    }
}
