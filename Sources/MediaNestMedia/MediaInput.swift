import CFFmpeg
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import MediaNestCore

/// An FFmpeg demuxer over a ``SafeFile``, opened with every guard a hostile upload needs.
///
/// - FFmpeg reads through a custom `AVIOContext` that calls `pread` on the already-open
///   descriptor, so no FFmpeg protocol (file, http, data, ...) is ever involved.
/// - When libmagic recognised an image format (``imageFormats``), its image demuxer is the first
///   choice; FFmpeg's content probe is the fallback. The probe of a nameless stream can be wrong:
///   it picks raw AMR-NB (`amrnb`) for some CMYK JPEGs whose first marker is APP14 "Adobe".
/// - Otherwise the container is probed from content only (no file name). Either way it must be on
///   ``allowedDemuxers``; playlists (HLS, concat), subtitle files, `image2` patterns and network
///   demuxers are not. The same list is passed as `format_whitelist`, `protocol_whitelist`
///   matches nothing, and the context's `io_open` callback refuses every nested open, so
///   nothing a file references is ever opened.
/// - The interrupt callback and the read function poll the job's ``JobCancellation`` (plus the
///   ``MediaLimits/timeout``), so a stop surfaces within one read as the stop's ``JobError``.
/// - Frame size is checked against ``MediaLimits/maxPixels`` from the stream parameters before
///   stream analysis, and decoders opened for analysis get `max_pixels`, so no oversized frame
///   buffer is ever allocated.
public final class MediaInput {
    /// An image format FFmpeg reads with one of its image demuxers.
    public struct ImageFormat: Sendable, Hashable {
        /// The MIME type libmagic reports, e.g. `image/jpeg`.
        public var mimeType: String
        /// The FFmpeg demuxer, e.g. `jpeg_pipe`.
        public var demuxer: String
        /// The FFmpeg codec (descriptor) name the demuxer produces, e.g. `mjpeg`.
        public var codec: String
        /// A name for people, e.g. `JPEG XL`.
        public var displayName: String
    }

    /// The image formats the worker may read, when this build of FFmpeg has both the demuxer and
    /// a decoder for them (see ``availableImageFormats``).
    public static let imageFormats: [ImageFormat] = [
        ImageFormat(mimeType: "image/jpeg", demuxer: "jpeg_pipe", codec: "mjpeg", displayName: "JPEG"),
        ImageFormat(mimeType: "image/png", demuxer: "png_pipe", codec: "png", displayName: "PNG"),
        ImageFormat(mimeType: "image/gif", demuxer: "gif", codec: "gif", displayName: "GIF"),
        ImageFormat(mimeType: "image/webp", demuxer: "webp_pipe", codec: "webp", displayName: "WebP"),
        ImageFormat(mimeType: "image/bmp", demuxer: "bmp_pipe", codec: "bmp", displayName: "BMP"),
        ImageFormat(mimeType: "image/tiff", demuxer: "tiff_pipe", codec: "tiff", displayName: "TIFF"),
        // FFmpeg 5.1 decodes JPEG XL only through libjxl (Debian 12 builds with it).
        ImageFormat(mimeType: "image/jxl", demuxer: "jpegxl_pipe", codec: "jpegxl", displayName: "JPEG XL"),
    ]

    /// The entries of ``imageFormats`` this process's FFmpeg can demux and decode, checked once
    /// at run time with `av_find_input_format` and `avcodec_find_decoder`.
    public static let availableImageFormats: [ImageFormat] = imageFormats.filter(isReadable)

    /// Demuxers for audio and video containers, by FFmpeg name (FFmpeg 5.1 names).
    public static let containerDemuxers: Set<String> = [
        "mov,mp4,m4a,3gp,3g2,mj2",  // also AVIF stills in 5.1
        "matroska,webm", "avi", "flv", "mpegts", "mpeg", "asf", "ogg",
        "wav", "w64", "flac", "mp3", "aac", "ac3", "eac3", "aiff", "wv", "ape", "caf",
    ]

    /// Demuxers a file may be opened with, by FFmpeg name: ``containerDemuxers`` and the
    /// demuxers of ``availableImageFormats``.
    public static let allowedDemuxers: Set<String> = containerDemuxers.union(availableImageFormats.map(\.demuxer))

    /// The demuxers of every image format, available or not; they make a file an image.
    public static let imageDemuxers: Set<String> = Set(imageFormats.map(\.demuxer))

    /// The file being read.
    public let file: SafeFile
    /// The demuxer's name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    public private(set) var formatName: String = ""
    /// The demuxer's long name, e.g. `QuickTime / MOV`.
    public private(set) var formatLongName: String?

    let limits: MediaLimits
    let stop: StopGuard
    private let source: IOSource
    private var io: UnsafeMutablePointer<AVIOContext>?
    var context: UnsafeMutablePointer<AVFormatContext>?

    private init(file: SafeFile, limits: MediaLimits, stop: StopGuard) throws(JobError) {
        self.file = file
        self.limits = limits
        self.stop = stop
        self.source = IOSource(file: file, stop: stop)
        let bufferSize: Int32 = 64 * 1024
        guard let buffer = av_malloc(Int(bufferSize)) else {
            throw JobError(.internalError, "FFmpeg could not allocate an I/O buffer for \(file.relativePath).")
        }
        guard let io = avio_alloc_context(buffer.assumingMemoryBound(to: UInt8.self), bufferSize, 0,
                                          Unmanaged.passUnretained(source).toOpaque(), ioRead, nil, ioSeek) else {
            av_free(buffer)
            throw JobError(.internalError, "FFmpeg could not allocate an I/O context for \(file.relativePath).")
        }
        self.io = io
    }

    deinit {
        if context != nil { avformat_close_input(&context) }
        if let io {
            // With custom IO the caller owns the AVIOContext and its (possibly reallocated) buffer.
            av_free(io.pointee.buffer)
            io.pointee.buffer = nil
            avio_context_free(&self.io)
        }
    }

    /// Recognises the container, opens it, and reads the stream parameters (no frame is kept).
    /// - Parameters:
    ///   - file: The safely opened file.
    ///   - limits: Probe size, analyse duration, pixel, duration and time limits.
    ///   - sniffedMimeType: The content type libmagic found, if any. For a type in
    ///     ``imageFormats`` its demuxer is tried first, and FFmpeg's content probe only if that
    ///     fails.
    ///   - cancellation: The job's token, polled from FFmpeg's interrupt callback.
    /// - Returns: The open input, positioned after stream analysis.
    /// - Throws: ``JobError`` with code `unsupported_format` (not an allowed container, a
    ///   playlist, or an image format this FFmpeg cannot decode), `corrupt_media`, `pixel_limit`,
    ///   `duration_limit`, `io_error`, or the stop's code (`timeout`, `cancelled`, `shutdown`,
    ///   `lease_lost`).
    public static func open(_ file: SafeFile, limits: MediaLimits = .default, sniffedMimeType: String? = nil,
                            cancellation: JobCancellation? = nil) throws(JobError) -> MediaInput {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        return try open(file, limits: limits, sniffedMimeType: sniffedMimeType, stop: stop)
    }

    static func open(_ file: SafeFile, limits: MediaLimits, sniffedMimeType: String?, stop: StopGuard) throws(JobError) -> MediaInput {
        FFmpegLog.install()
        try stop.check()
        let input = try MediaInput(file: file, limits: limits, stop: stop)
        if let mime = sniffedMimeType,
           let image = try imageFormat(forSniffed: mime, available: availableImageFormats, relativePath: file.relativePath),
           let format = av_find_input_format(image.demuxer) {
            let imageError: JobError
            do throws(JobError) {
                try input.openAndAnalyze(format: format)
                // Image demuxers open almost anything; a stream without a size means the bytes
                // were not this format after all.
                if input.hasFrameSize { return input }
                imageError = JobError(.corruptMedia, "The file \(file.relativePath) looks like a \(image.displayName) image, but FFmpeg's '\(image.demuxer)' demuxer finds no image size in it.")
            } catch where error.code == .corruptMedia {
                imageError = error
            }
            // The content may still be something else FFmpeg recognises; if the probe finds
            // nothing usable, the image demuxer's complaint is the accurate one.
            input.closeContext()
            try input.rewind()
            do throws(JobError) {
                try input.probeAndOpen()
                return input
            } catch where error.code == .corruptMedia || error.code == .unsupportedFormat {
                throw imageError
            }
        }
        try input.probeAndOpen()
        return input
    }

    /// Whether a video stream has a known frame size.
    private var hasFrameSize: Bool {
        streams.contains { stream in
            let parameters = stream.pointee.codecpar.pointee
            return parameters.codec_type == AVMEDIA_TYPE_VIDEO && parameters.width > 0 && parameters.height > 0
        }
    }

    /// The demuxer FFmpeg's content probe alone picks for `file`, whether allowed or not; `nil`
    /// when it recognises nothing. For diagnostics and tests: it opens nothing.
    static func contentProbe(_ file: SafeFile, limits: MediaLimits = .default) throws(JobError) -> String? {
        let input = try MediaInput(file: file, limits: limits, stop: StopGuard(cancellation: nil, timeout: limits.timeout))
        var format: UnsafePointer<AVInputFormat>?
        let score = av_probe_input_buffer2(input.io, &format, "", nil, 0, UInt32(clamping: max(limits.probeSize, 2048)))
        guard score >= 0, let format else { return nil }
        return String(cString: format.pointee.name)
    }

    /// The image format to open a file of type `mime` with, when libmagic's answer names one.
    /// - Parameters:
    ///   - mime: The sniffed MIME type (normalised).
    ///   - available: The formats this FFmpeg can read.
    ///   - relativePath: The file, for the message.
    /// - Returns: The format, or `nil` when `mime` is not an image format of ``imageFormats``.
    /// - Throws: ``JobError`` `unsupported_format` when it is one, but this FFmpeg cannot read it.
    static func imageFormat(forSniffed mime: String, available: [ImageFormat], relativePath: String) throws(JobError) -> ImageFormat? {
        guard let known = imageFormats.first(where: { $0.mimeType == mime }) else { return nil }
        guard available.contains(known) else {
            throw JobError(.unsupportedFormat, "The file \(relativePath) is a \(known.displayName) image (\(mime)), which this worker's FFmpeg cannot read: it has no '\(known.demuxer)' demuxer or no \(known.displayName) decoder.")
        }
        return known
    }

    private static func isReadable(_ format: ImageFormat) -> Bool {
        guard av_find_input_format(format.demuxer) != nil,
              let descriptor = avcodec_descriptor_get_by_name(format.codec) else { return false }
        return avcodec_find_decoder(descriptor.pointee.id) != nil
    }

    /// Recognises the container from content alone (an empty URL means no extension hints) and
    /// opens it if it is allowed.
    private func probeAndOpen() throws(JobError) {
        var format: UnsafePointer<AVInputFormat>?
        let maxProbe = UInt32(clamping: max(limits.probeSize, 2048))
        let score = av_probe_input_buffer2(io, &format, "", nil, 0, maxProbe)
        guard score >= 0, let format else {
            try stop.check()
            if score == CFFmpeg_AVERROR_INVALIDDATA || score >= 0 {
                throw JobError(.unsupportedFormat, "The file \(file.relativePath) is not in any media format FFmpeg recognises.")
            }
            throw ffmpegError(score, code: .ioError, "Reading \(file.relativePath) to recognise its format failed")
        }
        let name = String(cString: format.pointee.name)
        guard MediaInput.allowedDemuxers.contains(name) else {
            let longName = format.pointee.long_name.map { String(cString: $0) }
            throw JobError(.unsupportedFormat, "The file \(file.relativePath) is \(longName ?? name) (FFmpeg demuxer '\(name)'), which is not an allowed media container.")
        }
        try openAndAnalyze(format: format)
    }

    /// Opens the context with `format`, then checks pixels, analyses streams and checks duration.
    private func openAndAnalyze(format: UnsafePointer<AVInputFormat>) throws(JobError) {
        formatName = String(cString: format.pointee.name)
        formatLongName = format.pointee.long_name.map { String(cString: $0) }
        // The mov demuxer indexes every sample its tables claim while it opens the file.
        if formatName == "mov,mp4,m4a,3gp,3g2,mj2" { try SampleTableCheck.check(file) }
        try openContext(format: format)
        try checkPixels(stage: "stream headers")
        try checkAudio(stage: "stream headers")
        // A JPEG XL or PNG picture's size and pixel format come from its header: stream analysis
        // would decode the whole picture to learn them (FFmpeg 5.1 has no JPEG XL parser, and its
        // PNG parser only splits packets), at 14–20 bytes per pixel for a 16-bit one.
        if try fillFromImageHeader() {
            try checkPixels(stage: "image header")
            return
        }
        try analyzeStreams()
        try checkPixels(stage: "stream analysis")
        try checkAudio(stage: "stream analysis")
        try checkDuration()
    }

    /// Sets the one stream's size and pixel format from a JPEG XL header (``JPEGXLHeader``) or a
    /// PNG's `IHDR` (``PNGHeader``), as FFmpeg's decoder would report them after decoding.
    /// - Returns: Whether the header was read; if not, stream analysis has to find out.
    private func fillFromImageHeader() throws(JobError) -> Bool {
        guard formatName == "jpegxl_pipe" || formatName == "png_pipe",
              let context, context.pointee.nb_streams == 1, let stream = context.pointee.streams[0] else { return false }
        let bytes = try file.read(at: 0, count: Int(min(file.size, 64 << 10)))
        let size: (width: Int, height: Int, format: AVPixelFormat)
        if formatName == "jpegxl_pipe" {
            guard let header = JPEGXLDecoder.header(bytes), let format = MediaInput.pixelFormat(ofJPEGXL: header) else { return false }
            size = (header.width, header.height, format)
        } else {
            guard let header = PNGHeader.parse(bytes), let format = header.pixelFormat else { return false }
            size = (header.width, header.height, format)
        }
        let parameters = stream.pointee.codecpar!
        parameters.pointee.width = Int32(clamping: size.width)
        parameters.pointee.height = Int32(clamping: size.height)
        parameters.pointee.format = size.format.rawValue
        return true
    }

    /// The pixel format FFmpeg 5.1's libjxl decoder gives a picture with this header (grey or
    /// RGB, 8 or 16 bits, alpha when there is some; grey float as 32-bit float).
    static func pixelFormat(ofJPEGXL header: JPEGXLHeader) -> AVPixelFormat? {
        let alpha = header.alphaBits > 0
        if header.colorChannels == 1 {
            if header.bitsPerSample <= 8 { return alpha ? AV_PIX_FMT_YA8 : AV_PIX_FMT_GRAY8 }
            if header.exponentBits > 0 || header.bitsPerSample > 16 { return alpha ? nil : AV_PIX_FMT_GRAYF32LE }
            return alpha ? AV_PIX_FMT_YA16LE : AV_PIX_FMT_GRAY16LE
        }
        if header.bitsPerSample <= 8 { return alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24 }
        return alpha ? AV_PIX_FMT_RGBA64LE : AV_PIX_FMT_RGB48LE
    }

    /// Closes a context that failed after opening; the AVIOContext stays ours.
    private func closeContext() {
        if context != nil { avformat_close_input(&context) }
    }

    /// Moves the AVIOContext back to the start of the file for another attempt.
    private func rewind() throws(JobError) {
        guard let io else { return }
        // avio_seek keeps the IOSource's position in step (it calls ioSeek unless the target is
        // still in its buffer, where the source's position is already right).
        let status = avio_seek(io, 0, SEEK_SET)
        if status < 0 {
            try stop.check()
            throw ffmpegError(Int32(clamping: status), code: .ioError, "Reading \(file.relativePath) again from its start failed")
        }
    }

    private func openContext(format: UnsafePointer<AVInputFormat>) throws(JobError) {
        guard let context = avformat_alloc_context() else {
            throw JobError(.internalError, "FFmpeg could not allocate a format context for \(file.relativePath).")
        }
        context.pointee.pb = io
        context.pointee.flags |= CFFmpeg_AVFMT_FLAG_CUSTOM_IO
        context.pointee.interrupt_callback = AVIOInterruptCB(callback: interruptCallback, opaque: Unmanaged.passUnretained(stop).toOpaque())
        context.pointee.io_open = refuseNestedOpen
        var options: OpaquePointer?
        defer { av_dict_free(&options) }
        _ = CFFmpeg_av_dict_set(&options, "format_whitelist", MediaInput.allowedDemuxers.sorted().joined(separator: ","))
        // No FFmpeg protocol is named "none": every protocol is refused.
        _ = CFFmpeg_av_dict_set(&options, "protocol_whitelist", "none")
        _ = CFFmpeg_av_dict_set(&options, "probesize", String(max(limits.probeSize, 32)))
        _ = CFFmpeg_av_dict_set(&options, "analyzeduration", String(Int64(limits.analyzeDuration.seconds * 1_000_000)))
        _ = CFFmpeg_av_dict_set(&options, "max_streams", String(MediaInput.maxStreams))
        var opened: UnsafeMutablePointer<AVFormatContext>? = context
        let status = avformat_open_input(&opened, nil, format, &options)
        if status < 0 {
            // avformat_open_input freed the context; the AVIOContext stays ours.
            try stop.check()
            if status == CFFmpeg_AVERROR(ENOMEM) {
                // What a demuxer returns when the file declares more than `max_streams` streams.
                throw JobError(.corruptMedia, "The file \(file.relativePath) looks like \(formatLongName ?? formatName) but cannot be opened: it declares more than \(MediaInput.maxStreams) streams (the limit), or FFmpeg ran out of memory.")
            }
            throw ffmpegError(status, code: source.readFailure != nil ? .ioError : .corruptMedia,
                              "The file \(file.relativePath) looks like \(formatLongName ?? formatName) but cannot be opened")
        }
        self.context = opened
    }

    private func analyzeStreams() throws(JobError) {
        guard let context else { return }
        let count = Int(context.pointee.nb_streams)
        // Decoders opened for analysis must refuse oversized frames before allocating them.
        var perStream = [OpaquePointer?](repeating: nil, count: max(count, 1))
        for index in 0..<count {
            _ = CFFmpeg_av_dict_set(&perStream[index], "max_pixels", String(limits.maxPixels))
            _ = CFFmpeg_av_dict_set(&perStream[index], "threads", "1")
        }
        let status = perStream.withUnsafeMutableBufferPointer { avformat_find_stream_info(context, count > 0 ? $0.baseAddress : nil) }
        for index in perStream.indices { av_dict_free(&perStream[index]) }
        if status < 0 {
            try stop.check()
            throw ffmpegError(status, code: .corruptMedia, "The streams of \(file.relativePath) (\(formatLongName ?? formatName)) cannot be read")
        }
        try stop.check()
        if context.pointee.nb_streams == 0 {
            throw JobError(.corruptMedia, "The file \(file.relativePath) (\(formatLongName ?? formatName)) contains no audio, video or image stream.")
        }
    }

    private func checkPixels(stage: String) throws(JobError) {
        for stream in streams where stream.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO {
            let parameters = stream.pointee.codecpar.pointee
            let pixels = Int64(max(parameters.width, 0)) * Int64(max(parameters.height, 0))
            if pixels > limits.maxPixels {
                throw JobError(.pixelLimit, "The file \(file.relativePath) has \(parameters.width)x\(parameters.height) frames (\(pixels) pixels), over the limit of \(limits.maxPixels) pixels; found in the \(stage), nothing was decoded.")
            }
        }
    }

    /// Most streams a file may declare (`max_streams`, FFmpeg's own default made explicit): each
    /// costs a codec context during stream analysis; a Matroska file of 10,000 tracks is refused.
    static let maxStreams = 1000

    /// Most audio channels a stream may claim: FFmpeg's own decoders refuse more
    /// (`FF_SANE_NB_CHANNELS`).
    static let maxAudioChannels: Int32 = 512
    /// Highest audio sample rate a stream may claim: 8 × 768 kHz, above DSD1024 as FFmpeg's
    /// DSD demuxers report it (the bit rate / 8).
    static let maxAudioSampleRate: Int32 = 6_144_000

    /// Refuses audio streams whose headers claim an impossible channel count or sample rate
    /// (`corrupt_media`): decoders and resamplers size their buffers from both.
    private func checkAudio(stage: String) throws(JobError) {
        for stream in streams where stream.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_AUDIO {
            let parameters = stream.pointee.codecpar.pointee
            let channels = parameters.ch_layout.nb_channels
            if channels > MediaInput.maxAudioChannels {
                throw JobError(.corruptMedia, "The file \(file.relativePath) has an audio stream claiming \(channels) channels, more than the \(MediaInput.maxAudioChannels) any decoder accepts; found in the \(stage), nothing was decoded.")
            }
            if parameters.sample_rate > MediaInput.maxAudioSampleRate {
                throw JobError(.corruptMedia, "The file \(file.relativePath) has an audio stream claiming \(parameters.sample_rate) samples per second, over the limit of \(MediaInput.maxAudioSampleRate); found in the \(stage), nothing was decoded.")
            }
        }
    }

    private func checkDuration() throws(JobError) {
        guard let context else { return }
        let duration = context.pointee.duration
        guard duration != CFFmpeg_AV_NOPTS_VALUE, duration > 0 else { return }
        let seconds = Double(duration) / Double(CFFmpeg_AV_TIME_BASE)
        if seconds > limits.maxDuration.seconds {
            throw JobError(.durationLimit, "The file \(file.relativePath) lasts \(formatSeconds(seconds)), over the limit of \(formatSeconds(limits.maxDuration.seconds)).")
        }
    }

    /// The streams of the open context.
    var streams: [UnsafeMutablePointer<AVStream>] {
        guard let context, let array = context.pointee.streams else { return [] }
        return (0..<Int(context.pointee.nb_streams)).compactMap { array[$0] }
    }

    /// Opens a decoder for one stream, with `max_pixels` set from the limits; for thumbnail and
    /// transcode jobs.
    /// - Parameter streamIndex: The stream's index.
    /// - Returns: The opened decoder.
    /// - Throws: ``JobError`` with code `unsupported_format` when no decoder exists, `corrupt_media`
    ///   when it cannot be opened.
    func makeDecoder(streamIndex: Int) throws(JobError) -> DecoderContext {
        let all = streams
        guard all.indices.contains(streamIndex) else {
            throw JobError(.internalError, "Stream \(streamIndex) does not exist in \(file.relativePath).")
        }
        let parameters = all[streamIndex].pointee.codecpar!
        guard let codec = avcodec_find_decoder(parameters.pointee.codec_id) else {
            throw JobError(.unsupportedFormat, "No decoder is available for the \(String(cString: avcodec_get_name(parameters.pointee.codec_id))) stream of \(file.relativePath).")
        }
        let decoder = try DecoderContext(codec: codec)
        var status = avcodec_parameters_to_context(decoder.pointer, parameters)
        if status >= 0 {
            decoder.pointer.pointee.max_pixels = limits.maxPixels
            status = avcodec_open2(decoder.pointer, codec, nil)
        }
        if status < 0 {
            throw ffmpegError(status, code: .corruptMedia, "The decoder for stream \(streamIndex) of \(file.relativePath) cannot be opened")
        }
        return decoder
    }
}

/// An `AVCodecContext`, freed in `deinit`.
///
/// Created inside ``FFmpegLog/withJobLogger(_:_:)``, it is tied to the job's logger, so lines
/// its codec threads log keep the job's context (see ``FFmpegLog/attach(_:)``).
final class DecoderContext {
    let pointer: UnsafeMutablePointer<AVCodecContext>
    private let logKey: UInt?

    init(codec: UnsafePointer<AVCodec>) throws(JobError) {
        guard let pointer = avcodec_alloc_context3(codec) else {
            throw JobError(.internalError, "FFmpeg could not allocate a decoder context.")
        }
        self.pointer = pointer
        self.logKey = FFmpegLog.attach(pointer)
    }

    deinit {
        var context: UnsafeMutablePointer<AVCodecContext>? = pointer
        avcodec_free_context(&context)
        // After the free: no codec thread can log with this context any more.
        if let logKey { FFmpegLog.detach(logKey) }
    }
}

/// An `AVFrame`, freed in `deinit` (shared by the image, video and audio decoders).
final class OwnedFrame {
    let pointer: UnsafeMutablePointer<AVFrame>

    init() throws(JobError) {
        guard let frame = av_frame_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a frame.") }
        pointer = frame
    }

    deinit {
        var frame: UnsafeMutablePointer<AVFrame>? = pointer
        av_frame_free(&frame)
    }
}

/// The state the AVIO callbacks read through; kept alive by its ``MediaInput``.
private final class IOSource {
    let file: SafeFile
    let stop: StopGuard
    var position: Int64 = 0
    /// The errno of the last failed `pread`, if any. FFmpeg's demuxers also return
    /// `AVERROR(EIO)` for a file that merely ends too early, so only this says whether the
    /// storage really failed (retryable `io_error`) or the file is damaged (`corrupt_media`).
    var readFailure: Int32?

    init(file: SafeFile, stop: StopGuard) {
        self.file = file
        self.stop = stop
    }
}

private let ioRead: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UInt8>?, Int32) -> Int32 = { opaque, buffer, size in
    guard let opaque, let buffer, size > 0 else { return CFFmpeg_AVERROR(EINVAL) }
    let source = Unmanaged<IOSource>.fromOpaque(opaque).takeUnretainedValue()
    if source.stop.stopReason != nil { return CFFmpeg_AVERROR_EXIT }
    while true {
        let n = pread(source.file.descriptor, buffer, Int(size), off_t(source.position))
        if n > 0 {
            source.position += Int64(n)
            source.file.readCounter?.add(n)
            return Int32(n)
        }
        if n == 0 { return CFFmpeg_AVERROR_EOF }
        if errno != EINTR {
            source.readFailure = errno
            return CFFmpeg_AVERROR(errno)
        }
    }
}

private let ioSeek: @convention(c) (UnsafeMutableRawPointer?, Int64, Int32) -> Int64 = { opaque, offset, whence in
    guard let opaque else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    let source = Unmanaged<IOSource>.fromOpaque(opaque).takeUnretainedValue()
    if whence & CFFmpeg_AVSEEK_SIZE != 0 { return source.file.size }
    let target: Int64
    switch whence & ~CFFmpeg_AVSEEK_FORCE {
    case SEEK_SET: target = offset
    case SEEK_CUR: target = source.position &+ offset
    case SEEK_END: target = source.file.size &+ offset
    default: return Int64(CFFmpeg_AVERROR(EINVAL))
    }
    guard target >= 0 else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    source.position = target
    return target
}

private let interruptCallback: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { opaque in
    guard let opaque else { return 0 }
    return Unmanaged<StopGuard>.fromOpaque(opaque).takeUnretainedValue().stopReason == nil ? 0 : 1
}

/// Refuses every nested open (HLS segments, `concat` entries, QuickTime references, ...).
private let refuseNestedOpen: @convention(c) (UnsafeMutablePointer<AVFormatContext>?, UnsafeMutablePointer<UnsafeMutablePointer<AVIOContext>?>?,
                                              UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = { _, _, url, _, _ in
    let target = url.map { String(cString: $0) } ?? "(no URL)"
    FFmpegLog.logger.warning("refused a nested open requested by the media file", metadata: ["url": "\(target)"])
    return CFFmpeg_AVERROR(EPERM)
}

/// A ``JobError`` whose message ends with FFmpeg's text for `status`.
func ffmpegError(_ status: Int32, code: JobError.Code, _ message: String) -> JobError {
    JobError(code, "\(message): \(ffmpegErrorText(status)).")
}

/// FFmpeg's text for an error number, via `av_make_error_string`.
func ffmpegErrorText(_ status: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(CFFmpeg_AV_ERROR_MAX_STRING_SIZE))
    return buffer.withUnsafeMutableBufferPointer { pointer in
        String(cString: CFFmpeg_av_make_error_string(pointer.baseAddress, pointer.count, status))
    }
}

func formatSeconds(_ seconds: Double) -> String {
    if seconds < 120 { return String(format: "%.1f s", seconds) }
    let total = Int(seconds.rounded())
    return String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
}
