import CFFmpeg
import MediaNestCore

/// Counters of the work one video still or trickplay build did: how often it seeked, how many
/// packets it read and how many frames it decoded.
///
/// The point of seeking to keyframes is that the cost of a still does not grow with the length of
/// the video; these counters make that testable without timing anything.
public struct VideoDecodeStatistics: Sendable, Hashable {
    /// Seeks performed.
    public var seeks = 0
    /// Packets read from the demuxer (all streams the demuxer returned; other streams are
    /// discarded inside the demuxer and not counted).
    public var packetsRead = 0
    /// Packets sent to the decoder.
    public var packetsDecoded = 0
    /// Frames the decoder returned.
    public var framesDecoded = 0

    /// Zero counters.
    public init() {}
}

/// An owned `AVFrame`, freed in `deinit`.
/// The video stream of one file, opened for reading single keyframes at chosen times (stills,
/// trickplay) rather than for playing it from the start.
///
/// - Only the chosen video stream is demuxed: every other stream is set to `AVDISCARD_ALL`, so
///   the demuxer skips their packets (MP4 does not even read them).
/// - Keyframe mode (the default): non-key packets are dropped before they reach the decoder and
///   the decoder itself has `skip_frame = nokey`, so a frame costs one intra decode, whatever the
///   GOP length.
/// - Each keyframe is decoded in isolation (send, drain, flush), which also works with frame
///   threading and leaves the decoder ready for the next seek.
final class VideoSource {
    let input: MediaInput
    let streamIndex: Int32
    let stream: UnsafeMutablePointer<AVStream>
    let decoder: DecoderContext
    /// Clockwise display rotation: 0, 90, 180 or 270.
    let rotation: Int
    /// Duration of the stream (or the container) in seconds, when known.
    let duration: Double?
    var statistics = VideoDecodeStatistics()
    private let packet: UnsafeMutablePointer<AVPacket>
    private let timeBase: AVRational
    private let startTimestamp: Int64

    /// Opens the file and the decoder of its main video stream.
    /// - Parameters:
    ///   - file: The safely opened file.
    ///   - limits: The job's limits (pixels, duration, time).
    ///   - cancellation: Polled by FFmpeg's interrupt callback and between frames.
    ///   - threads: Decoder threads (at least 1).
    ///   - outputLongEdge: The long edge the frames will be shrunk to; when it is at most a third
    ///     of the video's, the decoder skips its loop (deblocking) filter, about a quarter of an
    ///     H.264 decode, whose effect vanishes in a 3× reduction.
    /// - Throws: ``JobError`` `unsupported_format` when there is no video stream or no decoder,
    ///   `corrupt_media`, `pixel_limit`, `duration_limit`, or a stop's code.
    init(file: SafeFile, limits: MediaLimits, cancellation: JobCancellation?, threads: Int, outputLongEdge: Int? = nil) throws(JobError) {
        input = try MediaInput.open(file, limits: limits, cancellation: cancellation)
        guard let context = input.context else {
            throw JobError(.internalError, "The demuxer of \(file.relativePath) is not open.")
        }
        // The main picture stream: not cover art, the default one first, then the largest.
        let candidates = input.streams.filter {
            $0.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO
                && $0.pointee.disposition & CFFmpeg_AV_DISPOSITION_ATTACHED_PIC == 0
        }
        func rank(_ s: UnsafeMutablePointer<AVStream>) -> (Int, Int64) {
            let p = s.pointee.codecpar.pointee
            return (s.pointee.disposition & CFFmpeg_AV_DISPOSITION_DEFAULT != 0 ? 1 : 0, Int64(p.width) * Int64(p.height))
        }
        guard let chosen = candidates.max(by: { rank($0) < rank($1) }) else {
            throw JobError(.unsupportedFormat, "The file \(file.relativePath) (\(input.formatLongName ?? input.formatName)) has no video stream to take a picture from.")
        }
        stream = chosen
        streamIndex = chosen.pointee.index
        for other in input.streams where other != chosen { other.pointee.discard = AVDISCARD_ALL }
        timeBase = chosen.pointee.time_base
        startTimestamp = chosen.pointee.start_time == CFFmpeg_AV_NOPTS_VALUE ? 0 : chosen.pointee.start_time

        let parameters = chosen.pointee.codecpar!
        guard let codec = avcodec_find_decoder(parameters.pointee.codec_id) else {
            throw JobError(.unsupportedFormat, "No decoder is available for the \(String(cString: avcodec_get_name(parameters.pointee.codec_id))) video of \(file.relativePath).")
        }
        decoder = try DecoderContext(codec: codec)
        let codecContext = decoder.pointer
        var status = avcodec_parameters_to_context(codecContext, parameters)
        if status >= 0 {
            codecContext.pointee.max_pixels = limits.maxPixels
            codecContext.pointee.thread_count = Int32(clamping: max(1, threads))
            codecContext.pointee.pkt_timebase = chosen.pointee.time_base
            codecContext.pointee.skip_frame = AVDISCARD_NONKEY
            if let outputLongEdge, outputLongEdge * 3 <= Int(max(parameters.pointee.width, parameters.pointee.height)) {
                codecContext.pointee.skip_loop_filter = AVDISCARD_ALL
            }
            status = avcodec_open2(codecContext, codec, nil)
        }
        if status < 0 {
            throw ffmpegError(status, code: .corruptMedia, "The video decoder for \(file.relativePath) cannot be opened")
        }
        guard let packet = av_packet_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a packet.") }
        self.packet = packet

        rotation = VideoSource.rotation(of: chosen)
        let tb = av_q2d(chosen.pointee.time_base)
        if chosen.pointee.duration != CFFmpeg_AV_NOPTS_VALUE, chosen.pointee.duration > 0, tb > 0 {
            duration = Double(chosen.pointee.duration) * tb
        } else if context.pointee.duration != CFFmpeg_AV_NOPTS_VALUE, context.pointee.duration > 0 {
            duration = Double(context.pointee.duration) / Double(CFFmpeg_AV_TIME_BASE)
        } else {
            duration = nil
        }
    }

    deinit {
        var packet: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&packet)
    }

    var relativePath: String { input.file.relativePath }

    /// Throws the stop's error when the job must stop.
    func checkStop() throws(JobError) { try input.stop.check() }

    /// The stream's coded size with its sample aspect ratio applied, before rotation.
    var unrotatedDisplaySize: (width: Int, height: Int) {
        let p = stream.pointee.codecpar.pointee
        let sar = av_guess_sample_aspect_ratio(input.context, stream, nil)
        return FrameConverter.displaySize(width: Int(max(p.width, 1)), height: Int(max(p.height, 1)), sampleAspectRatio: sar)
    }

    /// The display size after the sample aspect ratio and the rotation.
    var displaySize: (width: Int, height: Int) {
        let size = unrotatedDisplaySize
        return rotation % 180 == 90 ? (size.height, size.width) : size
    }

    /// The sample aspect ratio to apply to `frame` (the frame's, else the stream's).
    func sampleAspectRatio(of frame: UnsafeMutablePointer<AVFrame>) -> AVRational {
        av_guess_sample_aspect_ratio(input.context, stream, frame)
    }

    /// Seeks to the keyframe at or before `seconds` (from the stream's start).
    /// - Returns: Whether the demuxer could seek.
    @discardableResult
    func seek(to seconds: Double) throws(JobError) -> Bool {
        try checkStop()
        statistics.seeks += 1
        let tb = av_q2d(timeBase)
        let offset = tb > 0 ? Int64((max(0, seconds) / tb).rounded(.down)) : 0
        let status = av_seek_frame(input.context, streamIndex, startTimestamp &+ offset, CFFmpeg_AVSEEK_FLAG_BACKWARD)
        try checkStop()
        return status >= 0
    }

    /// The outcome of reading up to the next packet of interest.
    enum ReadResult {
        /// A packet of the stream is in ``packet``; its presentation time in seconds, if known.
        case packet(time: Double?, timestamp: Int64)
        /// The file ended, or reading failed in a way that only ends this pass (damaged data).
        case end
        /// The packet budget ran out before a packet of interest.
        case budgetExhausted
    }

    /// Reads until the next packet of the video stream, keyframes only unless `anyFrame`.
    /// - Parameters:
    ///   - budget: How many packets may be read before giving up.
    ///   - anyFrame: Whether non-key packets are wanted too.
    /// - Throws: The stop's ``JobError``, or `io_error` when the storage failed.
    func readPacket(budget: Int, anyFrame: Bool = false) throws(JobError) -> ReadResult {
        var remaining = budget
        while remaining > 0 {
            av_packet_unref(packet)
            let status = av_read_frame(input.context, packet)
            if status < 0 {
                try checkStop()
                if status == CFFmpeg_AVERROR_EAGAIN { continue }
                return .end
            }
            statistics.packetsRead += 1
            remaining -= 1
            guard packet.pointee.stream_index == streamIndex else { continue }
            if !anyFrame && packet.pointee.flags & CFFmpeg_AV_PKT_FLAG_KEY == 0 { continue }
            let timestamp = packet.pointee.pts != CFFmpeg_AV_NOPTS_VALUE ? packet.pointee.pts : packet.pointee.dts
            if timestamp == CFFmpeg_AV_NOPTS_VALUE { return .packet(time: nil, timestamp: Int64.min) }
            let time = Double(timestamp &- startTimestamp) * av_q2d(timeBase)
            return .packet(time: time, timestamp: timestamp)
        }
        return .budgetExhausted
    }

    /// Decodes the packet last read as a picture on its own (send, drain, flush).
    /// - Returns: The frame, or `nil` when the packet does not decode to a picture (damaged data).
    func decodeKeyframe() throws(JobError) -> OwnedFrame? {
        let frame = try OwnedFrame()
        var result: OwnedFrame?
        statistics.packetsDecoded += 1
        if avcodec_send_packet(decoder.pointer, packet) >= 0 {
            _ = avcodec_send_packet(decoder.pointer, nil)
            while avcodec_receive_frame(decoder.pointer, frame.pointer) >= 0 {
                statistics.framesDecoded += 1
                if result == nil, frame.pointer.pointee.width > 0, frame.pointer.pointee.height > 0 {
                    let kept = try OwnedFrame()
                    av_frame_move_ref(kept.pointer, frame.pointer)
                    result = kept
                } else {
                    av_frame_unref(frame.pointer)
                }
            }
        }
        avcodec_flush_buffers(decoder.pointer)
        try checkStop()
        return result
    }

    /// Decodes frames in order from the current position (after a seek), calling `body` for each
    /// until it returns `false`, `maxFrames` were decoded, or the stream ends.
    ///
    /// This is the slow path, for videos whose keyframes are all blank.
    func decodeSequentially(maxFrames: Int, packetBudget: Int, _ body: (UnsafeMutablePointer<AVFrame>) throws(JobError) -> Bool) throws(JobError) {
        decoder.pointer.pointee.skip_frame = AVDISCARD_DEFAULT
        defer {
            avcodec_flush_buffers(decoder.pointer)
            decoder.pointer.pointee.skip_frame = AVDISCARD_NONKEY
        }
        let frame = try OwnedFrame()
        var decoded = 0
        let readLimit = statistics.packetsRead + packetBudget
        var draining = false
        while decoded < maxFrames {
            if !draining {
                switch try readPacket(budget: readLimit - statistics.packetsRead, anyFrame: true) {
                case .packet:
                    statistics.packetsDecoded += 1
                    _ = avcodec_send_packet(decoder.pointer, packet)
                case .end, .budgetExhausted:
                    draining = true
                    _ = avcodec_send_packet(decoder.pointer, nil)
                }
            }
            while decoded < maxFrames {
                let status = avcodec_receive_frame(decoder.pointer, frame.pointer)
                if status < 0 {
                    if draining { return }
                    break
                }
                decoded += 1
                statistics.framesDecoded += 1
                defer { av_frame_unref(frame.pointer) }
                if try !body(frame.pointer) { return }
            }
            try checkStop()
        }
    }

    /// Clockwise display rotation from the stream's display matrix (see ``displayRotation(of:)``).
    static func rotation(of stream: UnsafeMutablePointer<AVStream>) -> Int {
        displayRotation(of: stream)
    }
}
