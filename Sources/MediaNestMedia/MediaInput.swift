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
/// - The container is probed from content only (no file name) and must be on
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
    /// Demuxers a file may be opened with, by FFmpeg name (FFmpeg 5.1 names).
    public static let allowedDemuxers: Set<String> = [
        // Video containers.
        "mov,mp4,m4a,3gp,3g2,mj2",  // also AVIF stills in 5.1
        "matroska,webm", "avi", "flv", "mpegts", "mpeg", "asf", "ogg",
        // Audio.
        "wav", "w64", "flac", "mp3", "aac", "ac3", "eac3", "aiff", "wv", "ape", "caf",
        // Images.
        "jpeg_pipe", "png_pipe", "gif", "webp_pipe", "bmp_pipe", "tiff_pipe",
    ]

    /// The file being read.
    public let file: SafeFile
    /// The demuxer's name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    public let formatName: String
    /// The demuxer's long name, e.g. `QuickTime / MOV`.
    public let formatLongName: String?

    let limits: MediaLimits
    let stop: StopGuard
    private let source: IOSource
    private var io: UnsafeMutablePointer<AVIOContext>?
    var context: UnsafeMutablePointer<AVFormatContext>?

    private init(file: SafeFile, limits: MediaLimits, stop: StopGuard, source: IOSource,
                 io: UnsafeMutablePointer<AVIOContext>, formatName: String, formatLongName: String?) {
        self.file = file
        self.limits = limits
        self.stop = stop
        self.source = source
        self.io = io
        self.formatName = formatName
        self.formatLongName = formatLongName
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
    ///   - cancellation: The job's token, polled from FFmpeg's interrupt callback.
    /// - Returns: The open input, positioned after stream analysis.
    /// - Throws: ``JobError`` with code `unsupported_format` (not an allowed container, or a
    ///   playlist), `corrupt_media`, `pixel_limit`, `duration_limit`, `io_error`, or the stop's
    ///   code (`timeout`, `cancelled`, `shutdown`, `lease_lost`).
    public static func open(_ file: SafeFile, limits: MediaLimits = .default, cancellation: JobCancellation? = nil) throws(JobError) -> MediaInput {
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        return try open(file, limits: limits, stop: stop)
    }

    static func open(_ file: SafeFile, limits: MediaLimits, stop: StopGuard) throws(JobError) -> MediaInput {
        FFmpegLog.install()
        try stop.check()
        let source = IOSource(file: file, stop: stop)
        let bufferSize: Int32 = 64 * 1024
        guard let buffer = av_malloc(Int(bufferSize)) else {
            throw JobError(.internalError, "FFmpeg could not allocate an I/O buffer for \(file.relativePath).")
        }
        guard let io = avio_alloc_context(buffer.assumingMemoryBound(to: UInt8.self), bufferSize, 0,
                                          Unmanaged.passUnretained(source).toOpaque(), ioRead, nil, ioSeek) else {
            av_free(buffer)
            throw JobError(.internalError, "FFmpeg could not allocate an I/O context for \(file.relativePath).")
        }

        // Recognise the container from content alone; an empty URL means no extension hints.
        var format: UnsafePointer<AVInputFormat>?
        let maxProbe = UInt32(clamping: max(limits.probeSize, 2048))
        let score = av_probe_input_buffer2(io, &format, "", nil, 0, maxProbe)
        if score < 0 || format == nil {
            av_free(io.pointee.buffer)
            io.pointee.buffer = nil
            var doomed: UnsafeMutablePointer<AVIOContext>? = io
            avio_context_free(&doomed)
            try stop.check()
            if score == CFFmpeg_AVERROR_INVALIDDATA || format == nil {
                throw JobError(.unsupportedFormat, "The file \(file.relativePath) is not in any media format FFmpeg recognises.")
            }
            throw ffmpegError(score, code: .ioError, "Reading \(file.relativePath) to recognise its format failed")
        }
        let name = String(cString: format!.pointee.name)
        let longName = format!.pointee.long_name.map { String(cString: $0) }
        let input = MediaInput(file: file, limits: limits, stop: stop, source: source, io: io, formatName: name, formatLongName: longName)

        guard allowedDemuxers.contains(name) else {
            throw JobError(.unsupportedFormat, "The file \(file.relativePath) is \(longName ?? name) (FFmpeg demuxer '\(name)'), which is not an allowed media container.")
        }
        try input.openContext(format: format!)
        try input.checkPixels(stage: "stream headers")
        try input.analyzeStreams()
        try input.checkPixels(stage: "stream analysis")
        try input.checkDuration()
        return input
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
        var opened: UnsafeMutablePointer<AVFormatContext>? = context
        let status = avformat_open_input(&opened, nil, format, &options)
        if status < 0 {
            // avformat_open_input freed the context; the AVIOContext stays ours.
            try stop.check()
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
