import CFFmpeg
import Dispatch
import Foundation
public import Logging
#if canImport(Glibc)
import Glibc
#endif
public import MediaNestCore

/// What a finished transcode or remux wrote.
public struct TranscodeResult: Sendable, Hashable {
    /// The decision that was carried out.
    public var decision: TranscodeDecision
    /// `mp4` or `m4a`.
    public var container: String
    /// Output video codec, if any.
    public var videoCodec: String?
    /// Output audio codec, if any.
    public var audioCodec: String?
    public var width: Int?
    public var height: Int?
    /// Output duration in seconds (the longest stream).
    public var duration: Double
    /// Bytes written.
    public var size: Int64
    /// Overall bit rate in bits per second.
    public var bitRate: Int64 { duration > 0 ? Int64((Double(size) * 8 / duration).rounded()) : 0 }
    /// Video frames written.
    public var videoFrames: Int
    /// Audio samples written (per channel), or packets when audio was copied.
    public var audioUnits: Int
    /// Packets that could not be decoded and were skipped.
    public var skippedPackets: Int
    /// Wall-clock seconds the work took.
    public var elapsed: Double

    /// The rendition description stored in `processing_info.renditions[]` and `output_data`,
    /// without its path (the caller knows where it put the file).
    public var json: [String: JSONValue] {
        var object: [String: JSONValue] = [
            "container": .string(container),
            "duration": .double((duration * 1000).rounded() / 1000),
            "size": .int(size),
            "bitrate": .int(bitRate),
            "mode": .string(decision.action.rawValue),
        ]
        if let videoCodec { object["video_codec"] = .string(videoCodec) }
        if let audioCodec { object["audio_codec"] = .string(audioCodec) }
        object["codecs"] = .array([videoCodec, audioCodec].compactMap { $0 }.map(JSONValue.string))
        if let width { object["width"] = .int(Int64(width)) }
        if let height { object["height"] = .int(Int64(height)) }
        return object
    }
}

/// Makes web-playable renditions in-process: demux (``MediaInput``), decode, filter
/// (libavfilter: scale, tone-map, format; aresample/aformat), encode (libx264/libx265/libsvtav1,
/// AAC) and mux (MP4 `+faststart`) into a ``PendingOutput``, or copies packets for a remux.
///
/// Guarantees (docs/TRANSCODE.md): every decoded frame is encoded, timestamps stay monotonic,
/// audio and video keep their relative offsets, the display matrix and sample aspect ratio are
/// carried, HDR is tone-mapped, subtitles and data are dropped (logged), location tags are
/// stripped unless configured otherwise, undecodable packets are skipped (logged).
public enum Transcoder {
    /// Opens and probes `file` and decides what to do with it (the input is closed again; use
    /// ``TranscodeJob`` to decide and run on one open).
    /// - Throws: ``JobError`` from ``MediaInput/open(_:limits:cancellation:)``.
    public static func plan(_ file: SafeFile, settings: TranscodeSettings, limits: MediaLimits = .default,
                            cancellation: JobCancellation? = nil) throws(JobError) -> (probe: MediaProbe, decision: TranscodeDecision) {
        let job = try TranscodeJob(file, settings: settings, limits: limits, cancellation: cancellation)
        return (job.probe, job.decision)
    }

    /// Whether the encoders `settings` needs (its video encoder and AAC) exist in this FFmpeg.
    public static func encodersAvailable(_ settings: TranscodeSettings) -> (available: Bool, missing: [String]) {
        let names: [String] = [settings.videoCodec.encoderName, "aac"]
        let missing = names.filter { (name: String) -> Bool in avcodec_find_encoder_by_name(name) == nil }
        return (missing.isEmpty, missing)
    }

    /// Carries out `decision` on `file`, writing into `output` (not committed: the caller commits).
    /// - Parameters:
    ///   - file: The source.
    ///   - decision: From ``plan(_:settings:limits:cancellation:)``; must not be ``TranscodeDecision/Action/none``.
    ///   - settings: Encoder settings.
    ///   - limits: Input limits.
    ///   - output: Where the muxer writes (seekable; read back for `+faststart`).
    ///   - progress: Receives frames, fps, speed, out_time and ETA about twice a second.
    ///   - cancellation: Polled per packet and from FFmpeg's interrupt callback.
    ///   - logger: Skipped packets and dropped streams are logged here.
    /// - Returns: What was written.
    /// - Throws: ``JobError``, as ``TranscodeJob/run(output:progress:logger:)``.
    public static func run(_ file: SafeFile, decision: TranscodeDecision, settings: TranscodeSettings,
                           limits: MediaLimits = .default, output: PendingOutput, progress: JobProgress? = nil,
                           cancellation: JobCancellation? = nil, logger: Logger) throws(JobError) -> TranscodeResult {
        let job = try TranscodeJob(file, settings: settings, limits: limits, cancellation: cancellation)
        job.decision = decision
        return try job.run(output: output, progress: progress, logger: logger)
    }
}

/// One source opened once: probed, decided, then (when a rendition is needed) transcoded or
/// remuxed from the same open input.
///
/// The time limit scales with the duration (``TranscodeSettings/timeout(forDuration:)``): once
/// the probe knows the duration, a watchdog stops the job's token at the deadline, which FFmpeg's
/// interrupt and read callbacks see even inside a long C call.
public final class TranscodeJob {
    /// The source's probe.
    public let probe: MediaProbe
    /// What the policy decided.
    public internal(set) var decision: TranscodeDecision
    /// The settings in force.
    public let settings: TranscodeSettings
    let input: MediaInput
    let cancellation: JobCancellation

    /// Opens, probes and decides.
    /// - Parameters:
    ///   - file: The source.
    ///   - settings: The policy and encoder settings.
    ///   - limits: Input limits; their `timeout` bounds the open and probe, the encode gets the
    ///     duration-scaled one.
    ///   - cancellation: The job's token (a private one when `nil`).
    /// - Throws: ``JobError`` from ``MediaInput/open(_:limits:cancellation:)``.
    public init(_ file: SafeFile, settings: TranscodeSettings, limits: MediaLimits = .default,
                cancellation: JobCancellation? = nil) throws(JobError) {
        let token = cancellation ?? JobCancellation()
        // The open gets the largest limit the settings allow; the watchdog below narrows it.
        var openLimits = limits
        openLimits.timeout = settings.timeout(forDuration: limits.maxDuration.seconds)
        let input = try MediaInput.open(file, limits: openLimits, sniffedMimeType: nil, stop: StopGuard(cancellation: token, timeout: openLimits.timeout))
        self.input = input
        self.cancellation = token
        self.settings = settings
        self.probe = input.probe()
        self.decision = TranscodePolicy.decide(probe, settings: settings)
    }

    /// Transcodes or remuxes into `output` (not committed: the caller commits).
    /// - Parameters:
    ///   - output: Where the muxer writes (seekable; read back for `+faststart`).
    ///   - progress: Receives frames, fps, speed, out_time and ETA about twice a second.
    ///   - logger: Skipped packets and dropped streams are logged here.
    /// - Returns: What was written.
    /// - Throws: ``JobError``: `corrupt_media` when nothing decodes, `unsupported_format` when a
    ///   decoder or encoder is missing, `io_error`/`disk_full` from the output, or the stop's code
    ///   (`timeout` after the duration-scaled limit).
    public func run(output: PendingOutput, progress: JobProgress? = nil, logger: Logger) throws(JobError) -> TranscodeResult {
        precondition(decision.action != .none, "nothing to do")
        let limit = settings.timeout(forDuration: probe.duration)
        let token = cancellation
        let watchdog = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        watchdog.schedule(deadline: .now() + .milliseconds(Int(min(limit.seconds, 365 * 86400) * 1000)))
        watchdog.setEventHandler { token.stop(.timeout) }
        watchdog.resume()
        defer { watchdog.cancel() }
        let session = try TranscodeSession(input: input, decision: decision, settings: settings, output: output,
                                           progress: progress, logger: logger, sourceDuration: probe.duration)
        return try FFmpegLog.withJobLogger(logger) { () throws(JobError) in try session.run() }
    }
}

// MARK: - Session

/// An `AVCodecContext` for encoding, freed in `deinit`.
final class CodecContext {
    let pointer: UnsafeMutablePointer<AVCodecContext>
    init(codec: UnsafePointer<AVCodec>) throws(JobError) {
        guard let pointer = avcodec_alloc_context3(codec) else {
            throw JobError(.internalError, "FFmpeg could not allocate a codec context.")
        }
        self.pointer = pointer
    }
    deinit {
        var context: UnsafeMutablePointer<AVCodecContext>? = pointer
        avcodec_free_context(&context)
    }
}

/// A configured filter graph (buffer source → chain → buffer sink), freed in `deinit`.
final class FilterChain {
    private var graph: UnsafeMutablePointer<AVFilterGraph>?
    let source: UnsafeMutablePointer<AVFilterContext>
    let sink: UnsafeMutablePointer<AVFilterContext>

    init(audio: Bool, sourceArguments: String, chain: String, threads: Int, frameSize: Int32 = 0) throws(JobError) {
        guard let graph = avfilter_graph_alloc() else { throw JobError(.internalError, "FFmpeg could not allocate a filter graph.") }
        self.graph = graph
        graph.pointee.nb_threads = Int32(max(threads, 0))
        var source: UnsafeMutablePointer<AVFilterContext>?
        var sink: UnsafeMutablePointer<AVFilterContext>?
        var status = avfilter_graph_create_filter(&source, avfilter_get_by_name(audio ? "abuffer" : "buffer"), "in", sourceArguments, nil, graph)
        if status >= 0 {
            status = avfilter_graph_create_filter(&sink, avfilter_get_by_name(audio ? "abuffersink" : "buffersink"), "out", nil, nil, graph)
        }
        guard status >= 0, let source, let sink else {
            avfilter_graph_free(&self.graph)
            throw ffmpegError(status, code: .internalError, "The filter graph's endpoints (\(sourceArguments)) cannot be created")
        }
        self.source = source
        self.sink = sink
        var allocatedOutputs = avfilter_inout_alloc()
        var allocatedInputs = avfilter_inout_alloc()
        guard let outputs = allocatedOutputs, let inputs = allocatedInputs else {
            avfilter_inout_free(&allocatedOutputs)
            avfilter_inout_free(&allocatedInputs)
            avfilter_graph_free(&self.graph)
            throw JobError(.internalError, "FFmpeg could not allocate filter pads.")
        }
        outputs.pointee.name = av_strdup("in")
        outputs.pointee.filter_ctx = source
        outputs.pointee.pad_idx = 0
        outputs.pointee.next = nil
        inputs.pointee.name = av_strdup("out")
        inputs.pointee.filter_ctx = sink
        inputs.pointee.pad_idx = 0
        inputs.pointee.next = nil
        var inputsPointer: UnsafeMutablePointer<AVFilterInOut>? = inputs
        var outputsPointer: UnsafeMutablePointer<AVFilterInOut>? = outputs
        status = avfilter_graph_parse_ptr(graph, chain, &inputsPointer, &outputsPointer, nil)
        // parse_ptr consumed the lists it linked and left the rest in the pointers.
        avfilter_inout_free(&inputsPointer)
        avfilter_inout_free(&outputsPointer)
        if status >= 0 {
            if frameSize > 0 { av_buffersink_set_frame_size(sink, UInt32(frameSize)) }
            status = avfilter_graph_config(graph, nil)
        }
        if status < 0 {
            avfilter_graph_free(&self.graph)
            throw ffmpegError(status, code: .internalError, "The filter graph '\(chain)' cannot be configured")
        }
    }

    deinit { avfilter_graph_free(&graph) }

    var outputTimeBase: AVRational { av_buffersink_get_time_base(sink) }
}

/// One output stream: copied or encoded from one input stream.
final class OutputTrack {
    let inputIndex: Int
    let inputStream: UnsafeMutablePointer<AVStream>
    let outputStream: UnsafeMutablePointer<AVStream>
    let isVideo: Bool
    var decoder: DecoderContext?
    var encoder: CodecContext?
    var filter: FilterChain?
    /// The frame geometry/format the filter was built for (rebuilt when a frame differs).
    var filterKey: String = ""
    /// The input timestamp (stream time base) that becomes output zero.
    var offset: Int64 = 0
    /// The last timestamp given to the encoder (monotonic guard), in the encoder time base.
    var lastEncodedPTS: Int64 = Int64.min
    /// Next audio pts when a frame lacks one, in 1/sample_rate.
    var nextAudioPTS: Int64 = 0
    /// Last decode-time stamp written for copied packets (monotonic guard).
    var lastCopiedDTS: Int64 = Int64.min
    /// End of the last packet written, in seconds.
    var end: Double = 0
    var packetsOrFrames = 0
    var samples = 0
    var defaultPacketDuration: Int64 = 0

    init(inputIndex: Int, inputStream: UnsafeMutablePointer<AVStream>, outputStream: UnsafeMutablePointer<AVStream>, isVideo: Bool) {
        self.inputIndex = inputIndex
        self.inputStream = inputStream
        self.outputStream = outputStream
        self.isVideo = isVideo
    }
}

final class TranscodeSession {
    let input: MediaInput
    let decision: TranscodeDecision
    let settings: TranscodeSettings
    let output: PendingOutput
    let progress: JobProgress?
    let logger: Logger
    let sourceDuration: Double?
    let threads: Int
    private let sink: MuxSink
    private var muxIO: UnsafeMutablePointer<AVIOContext>?
    private var muxer: UnsafeMutablePointer<AVFormatContext>?
    private var headerWritten = false
    private var tracks: [Int: OutputTrack] = [:]
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var filtered: UnsafeMutablePointer<AVFrame>?
    private var outPacket: UnsafeMutablePointer<AVPacket>?
    private var skipped = 0
    private var warnedSkips = 0
    private let started = ContinuousClock.now
    private var lastReport = ContinuousClock.now

    init(input: MediaInput, decision: TranscodeDecision, settings: TranscodeSettings, output: PendingOutput,
         progress: JobProgress?, logger: Logger, sourceDuration: Double?) throws(JobError) {
        self.input = input
        self.decision = decision
        self.settings = settings
        self.output = output
        self.progress = progress
        self.logger = logger
        self.sourceDuration = sourceDuration
        // 0 lets libavcodec and the encoder pick from the core count (x264: 1.5 × cores, frame
        // threads for decoding: cores + 1), as the ffmpeg CLI does.
        self.threads = max(0, settings.threads ?? 0)
        self.sink = MuxSink(output: output)
        packet = av_packet_alloc()
        outPacket = av_packet_alloc()
        frame = av_frame_alloc()
        filtered = av_frame_alloc()
        guard packet != nil, outPacket != nil, frame != nil, filtered != nil else {
            throw JobError(.internalError, "FFmpeg could not allocate packets and frames.")
        }
    }

    deinit {
        tracks.removeAll()
        if let muxer {
            muxer.pointee.pb = nil
            avformat_free_context(muxer)
        }
        if let muxIO {
            av_free(muxIO.pointee.buffer)
            muxIO.pointee.buffer = nil
            avio_context_free(&self.muxIO)
        }
        av_packet_free(&packet)
        av_packet_free(&outPacket)
        av_frame_free(&frame)
        av_frame_free(&filtered)
    }

    private var name: String { input.file.relativePath }

    // MARK: Setup

    private func openMuxer() throws(JobError) {
        var context: UnsafeMutablePointer<AVFormatContext>?
        let status = avformat_alloc_output_context2(&context, av_guess_format("mp4", nil, nil), nil, nil)
        guard status >= 0, let context else { throw ffmpegError(status, code: .internalError, "The MP4 muxer cannot be created") }
        muxer = context
        let size: Int32 = 256 * 1024
        guard let buffer = av_malloc(Int(size)) else { throw JobError(.internalError, "FFmpeg could not allocate an output buffer.") }
        guard let io = avio_alloc_context(buffer.assumingMemoryBound(to: UInt8.self), size, 1,
                                          Unmanaged.passUnretained(sink).toOpaque(), nil, muxWrite, muxSeek) else {
            av_free(buffer)
            throw JobError(.internalError, "FFmpeg could not allocate an output I/O context.")
        }
        muxIO = io
        context.pointee.pb = io
        context.pointee.flags |= CFFmpeg_AVFMT_FLAG_CUSTOM_IO
        context.pointee.opaque = Unmanaged.passUnretained(sink).toOpaque()
        context.pointee.io_open = muxIOOpen
        context.pointee.io_close2 = muxIOClose
        context.pointee.interrupt_callback = input.context!.pointee.interrupt_callback
        copyContainerTags(into: context)
    }

    private func copyContainerTags(into context: UnsafeMutablePointer<AVFormatContext>) {
        let tags = dictionary(input.context?.pointee.metadata)
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) {
            if ["major_brand", "minor_version", "compatible_brands", "encoder"].contains(key) { continue }
            if settings.stripLocation && TranscodeSession.revealsLocation(key) { continue }
            _ = CFFmpeg_av_dict_set(&context.pointee.metadata, key, value)
        }
        if settings.stripLocation, tags.keys.contains(where: TranscodeSession.revealsLocation) {
            logger.info("location metadata stripped from the rendition")
        }
    }

    static func revealsLocation(_ key: String) -> Bool {
        let lowered = key.lowercased()
        return lowered.contains("location") || lowered.contains("gps") || lowered.hasPrefix("xyz") || lowered.contains("iso6709")
    }

    private func addTrack(index: Int, action: TranscodeDecision.StreamAction) throws(JobError) {
        guard let muxer else { return }
        let inputStream = input.streams[index]
        let parameters = inputStream.pointee.codecpar!
        let isVideo = parameters.pointee.codec_type == AVMEDIA_TYPE_VIDEO
        guard let stream = avformat_new_stream(muxer, nil) else { throw JobError(.internalError, "FFmpeg could not add an output stream.") }
        let track = OutputTrack(inputIndex: index, inputStream: inputStream, outputStream: stream, isVideo: isVideo)
        let start = inputStream.pointee.start_time
        track.offset = start == CFFmpeg_AV_NOPTS_VALUE ? 0 : start
        if let language = dictionary(inputStream.pointee.metadata)["language"] {
            _ = CFFmpeg_av_dict_set(&stream.pointee.metadata, "language", language)
        }
        if isVideo { copyDisplayMatrix(from: inputStream, to: stream) }
        if isVideo {
            let rate = inputStream.pointee.avg_frame_rate.num > 0 ? inputStream.pointee.avg_frame_rate : inputStream.pointee.r_frame_rate
            if rate.num > 0 && rate.den > 0 {
                track.defaultPacketDuration = av_rescale_q(1, AVRational(num: rate.den, den: rate.num), inputStream.pointee.time_base)
            }
        }

        switch action {
        case .copy:
            let status = avcodec_parameters_copy(stream.pointee.codecpar, parameters)
            guard status >= 0 else { throw ffmpegError(status, code: .internalError, "Stream \(index) of \(name) cannot be copied") }
            stream.pointee.codecpar.pointee.codec_tag = 0
            if parameters.pointee.codec_id == AV_CODEC_ID_HEVC { stream.pointee.codecpar.pointee.codec_tag = 0x3163_7668 }  // hvc1: Safari needs it
            stream.pointee.time_base = inputStream.pointee.time_base
        case .encode:
            track.decoder = try openDecoder(index: index)
            if isVideo { try openVideoEncoder(track) } else { try openAudioEncoder(track) }
        }
        tracks[index] = track
    }

    private func copyDisplayMatrix(from input: UnsafeMutablePointer<AVStream>, to output: UnsafeMutablePointer<AVStream>) {
        var size = 0
        guard let data = av_stream_get_side_data(input, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 36,
              let copy = av_stream_new_side_data(output, AV_PKT_DATA_DISPLAYMATRIX, size) else { return }
        copy.update(from: data, count: size)
    }

    private func openDecoder(index: Int) throws(JobError) -> DecoderContext {
        let parameters = input.streams[index].pointee.codecpar!
        guard let codec = avcodec_find_decoder(parameters.pointee.codec_id) else {
            throw JobError(.unsupportedFormat, "No decoder is available for the \(String(cString: avcodec_get_name(parameters.pointee.codec_id))) stream of \(name).")
        }
        let decoder = try DecoderContext(codec: codec)
        var status = avcodec_parameters_to_context(decoder.pointer, parameters)
        if status >= 0 {
            decoder.pointer.pointee.max_pixels = input.limits.maxPixels
            decoder.pointer.pointee.thread_count = Int32(threads)
            decoder.pointer.pointee.pkt_timebase = input.streams[index].pointee.time_base
            status = avcodec_open2(decoder.pointer, codec, nil)
        }
        if status < 0 { throw ffmpegError(status, code: .corruptMedia, "The decoder for stream \(index) of \(name) cannot be opened") }
        return decoder
    }

    private func openVideoEncoder(_ track: OutputTrack) throws(JobError) {
        let encoderName = settings.videoCodec.encoderName
        guard let codec = avcodec_find_encoder_by_name(encoderName) else {
            throw JobError(.unsupportedFormat, "The video encoder \(encoderName) is not available in this FFmpeg build.", retryable: false)
        }
        let encoder = try CodecContext(codec: codec)
        let e = encoder.pointer
        let parameters = track.inputStream.pointee.codecpar.pointee
        e.pointee.width = Int32(decision.width ?? Int(parameters.width))
        e.pointee.height = Int32(decision.height ?? Int(parameters.height))
        // A stream no frame of which could be analysed (its samples are missing, or live in
        // another file the worker never opens) has no size: the input is at fault, not the encoder.
        guard e.pointee.width > 0, e.pointee.height > 0 else {
            throw JobError(.corruptMedia, "The video of \(name) has no known frame size: no picture in it could be decoded.")
        }
        e.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        e.pointee.time_base = track.inputStream.pointee.time_base
        let rate = track.inputStream.pointee.avg_frame_rate
        if rate.num > 0 && rate.den > 0 { e.pointee.framerate = rate }
        let sar = parameters.sample_aspect_ratio.num > 0 ? parameters.sample_aspect_ratio : track.inputStream.pointee.sample_aspect_ratio
        if sar.num > 0 && sar.den > 0 { e.pointee.sample_aspect_ratio = sar }
        if decision.toneMap {
            e.pointee.color_primaries = AVCOL_PRI_BT709
            e.pointee.color_trc = AVCOL_TRC_BT709
            e.pointee.colorspace = AVCOL_SPC_BT709
        } else {
            e.pointee.color_primaries = parameters.color_primaries
            e.pointee.color_trc = parameters.color_trc == AVCOL_TRC_SMPTE2084 || parameters.color_trc == AVCOL_TRC_ARIB_STD_B67 ? AVCOL_TRC_BT709 : parameters.color_trc
            e.pointee.colorspace = parameters.color_space == AVCOL_SPC_BT2020_NCL ? AVCOL_SPC_BT709 : parameters.color_space
            if parameters.color_primaries == AVCOL_PRI_BT2020 { e.pointee.color_primaries = AVCOL_PRI_BT709 }
        }
        e.pointee.color_range = AVCOL_RANGE_MPEG
        e.pointee.thread_count = Int32(threads)
        if let gop = settings.keyframeInterval { e.pointee.gop_size = Int32(gop) }
        if let maxRate = settings.maxBitrate {
            e.pointee.rc_max_rate = maxRate
            e.pointee.rc_buffer_size = Int32(clamping: maxRate * 2)
        }
        if muxer!.pointee.oformat.pointee.flags & CFFmpeg_AVFMT_GLOBALHEADER != 0 {
            e.pointee.flags |= CFFmpeg_AV_CODEC_FLAG_GLOBAL_HEADER
        }
        var options: OpaquePointer?
        defer { av_dict_free(&options) }
        switch settings.videoCodec {
        case .h264, .hevc:
            _ = CFFmpeg_av_dict_set(&options, "preset", settings.preset)
            _ = CFFmpeg_av_dict_set(&options, "crf", String(settings.crf))
            if settings.videoCodec == .hevc {
                var params = ["log-level=error"]
                if let maxRate = settings.maxBitrate { params += ["vbv-maxrate=\(maxRate / 1000)", "vbv-bufsize=\(maxRate * 2 / 1000)"] }
                _ = CFFmpeg_av_dict_set(&options, "x265-params", params.joined(separator: ":"))
            }
        case .av1:
            _ = CFFmpeg_av_dict_set(&options, "preset", Int(settings.preset).map(String.init) ?? "8")
            _ = CFFmpeg_av_dict_set(&options, "crf", String(min(settings.crf + 12, 63)))
        }
        let status = avcodec_open2(e, codec, &options)
        guard status >= 0 else { throw ffmpegError(status, code: .internalError, "The \(encoderName) encoder cannot be opened") }
        let stream = track.outputStream
        _ = avcodec_parameters_from_context(stream.pointee.codecpar, e)
        if settings.videoCodec == .hevc { stream.pointee.codecpar.pointee.codec_tag = 0x3163_7668 }
        stream.pointee.time_base = e.pointee.time_base
        stream.pointee.sample_aspect_ratio = e.pointee.sample_aspect_ratio
        stream.pointee.avg_frame_rate = rate
        track.encoder = encoder
    }

    private func openAudioEncoder(_ track: OutputTrack) throws(JobError) {
        guard let codec = avcodec_find_encoder_by_name("aac") else {
            throw JobError(.unsupportedFormat, "The AAC encoder is not available in this FFmpeg build.", retryable: false)
        }
        let encoder = try CodecContext(codec: codec)
        let e = encoder.pointer
        let sourceRate = Int32(track.inputStream.pointee.codecpar.pointee.sample_rate)
        var rate: Int32 = 48000
        if let supported = codec.pointee.supported_samplerates {
            var index = 0
            while supported[index] != 0 {
                if supported[index] == sourceRate { rate = sourceRate }
                index += 1
            }
        }
        e.pointee.sample_rate = rate
        e.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
        av_channel_layout_default(&e.pointee.ch_layout, 2)
        e.pointee.bit_rate = settings.audioBitrate
        e.pointee.time_base = AVRational(num: 1, den: rate)
        if muxer!.pointee.oformat.pointee.flags & CFFmpeg_AVFMT_GLOBALHEADER != 0 {
            e.pointee.flags |= CFFmpeg_AV_CODEC_FLAG_GLOBAL_HEADER
        }
        let status = avcodec_open2(e, codec, nil)
        guard status >= 0 else { throw ffmpegError(status, code: .internalError, "The AAC encoder cannot be opened") }
        _ = avcodec_parameters_from_context(track.outputStream.pointee.codecpar, e)
        track.outputStream.pointee.time_base = e.pointee.time_base
        track.encoder = encoder
    }

    // MARK: Filters

    private func videoFilter(for track: OutputTrack, frame: UnsafeMutablePointer<AVFrame>) throws(JobError) -> FilterChain {
        let f = frame.pointee
        let tb = track.inputStream.pointee.time_base
        var sar = f.sample_aspect_ratio
        if sar.num <= 0 || sar.den <= 0 { sar = AVRational(num: 1, den: 1) }
        let key = "\(f.width)x\(f.height):\(f.format):\(f.color_trc.rawValue)"
        if let filter = track.filter, track.filterKey == key { return filter }
        if track.filter != nil { logger.info("video frame format changed mid-stream (\(key)); filters rebuilt") }
        let source = "video_size=\(f.width)x\(f.height):pix_fmt=\(f.format):time_base=\(tb.num)/\(tb.den):pixel_aspect=\(sar.num)/\(sar.den)"
        let encoder = track.encoder!.pointer.pointee
        var chain = "scale=w=\(encoder.width):h=\(encoder.height):flags=bicubic"
        let transfer = f.color_trc == AVCOL_TRC_UNSPECIFIED ? track.inputStream.pointee.codecpar.pointee.color_trc : f.color_trc
        if decision.toneMap || transfer == AVCOL_TRC_SMPTE2084 || transfer == AVCOL_TRC_ARIB_STD_B67 {
            let tin = transfer == AVCOL_TRC_ARIB_STD_B67 ? "arib-std-b67" : "smpte2084"
            // Linear light, Hable curve in BT.709 primaries, back to BT.709 limited range 8-bit.
            chain += ",zscale=tin=\(tin):min=bt2020nc:pin=bt2020:rin=tv:t=linear:npl=100,format=gbrpf32le"
                + ",zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
        }
        chain += ",format=yuv420p"
        let filter = try FilterChain(audio: false, sourceArguments: source, chain: chain, threads: threads)
        track.filter = filter
        track.filterKey = key
        return filter
    }

    private func audioFilter(for track: OutputTrack, frame: UnsafeMutablePointer<AVFrame>) throws(JobError) -> FilterChain {
        var layout = frame.pointee.ch_layout
        var defaulted = AVChannelLayout()
        if layout.order == AV_CHANNEL_ORDER_UNSPEC {
            av_channel_layout_default(&defaulted, layout.nb_channels)
            layout = defaulted
        }
        var text = [CChar](repeating: 0, count: 128)
        _ = text.withUnsafeMutableBufferPointer { av_channel_layout_describe(&layout, $0.baseAddress, $0.count) }
        let layoutName = cString(text)
        let format = av_get_sample_fmt_name(AVSampleFormat(rawValue: frame.pointee.format)).map { String(cString: $0) } ?? "fltp"
        let key = "\(frame.pointee.sample_rate):\(format):\(layoutName)"
        if let filter = track.filter, track.filterKey == key { return filter }
        if track.filter != nil { logger.info("audio format changed mid-stream (\(key)); filters rebuilt") }
        let rate = frame.pointee.sample_rate
        let source = "time_base=1/\(rate):sample_rate=\(rate):sample_fmt=\(format):channel_layout=\(layoutName)"
        let encoder = track.encoder!.pointer.pointee
        let chain = "aresample=\(encoder.sample_rate),aformat=sample_fmts=fltp:channel_layouts=stereo"
        let filter = try FilterChain(audio: true, sourceArguments: source, chain: chain, threads: 1, frameSize: encoder.frame_size)
        track.filter = filter
        track.filterKey = key
        return filter
    }

    // MARK: Run

    func run() throws(JobError) -> TranscodeResult {
        try openMuxer()
        if let index = decision.videoStream, let action = decision.videoAction { try addTrack(index: index, action: action) }
        if let index = decision.audioStream, let action = decision.audioAction { try addTrack(index: index, action: action) }
        // Audio and video share one zero: the earliest start among the kept streams, so their
        // relative offset survives (A/V sync at the start).
        let earliest = tracks.values.map { Double($0.offset) * av_q2d($0.inputStream.pointee.time_base) }.min() ?? 0
        for track in tracks.values {
            track.offset = av_rescale_q(Int64((earliest * 1_000_000).rounded()), AVRational(num: 1, den: 1_000_000), track.inputStream.pointee.time_base)
        }
        for index in decision.droppedStreams {
            let kind = input.streams.indices.contains(index) ? (av_get_media_type_string(input.streams[index].pointee.codecpar.pointee.codec_type).map { String(cString: $0) } ?? "unknown") : "unknown"
            logger.info("stream \(index) (\(kind)) dropped from the rendition")
        }
        var options: OpaquePointer?
        _ = CFFmpeg_av_dict_set(&options, "movflags", "+faststart")
        let status = avformat_write_header(muxer, &options)
        av_dict_free(&options)
        if status < 0 { throw muxError(status, "The MP4 header cannot be written") }
        headerWritten = true

        try demuxLoop()
        for track in tracks.values.sorted(by: { $0.inputIndex < $1.inputIndex }) where track.decoder != nil {
            try decode(nil, track: track)
        }
        try input.stop.check()
        let trailer = av_write_trailer(muxer)
        if trailer < 0 { throw muxError(trailer, "The MP4 index cannot be written") }
        if let failure = sink.failure { throw failure }

        let video = decision.videoStream.flatMap { tracks[$0] }
        let audio = decision.audioStream.flatMap { tracks[$0] }
        if let video, video.decoder != nil, video.packetsOrFrames == 0 {
            throw JobError(.corruptMedia, "No video frame of \(name) could be decoded (\(skipped) packets skipped).", retryable: false)
        }
        if video == nil, let audio, audio.decoder != nil, audio.samples == 0 {
            throw JobError(.corruptMedia, "No audio of \(name) could be decoded (\(skipped) packets skipped).", retryable: false)
        }
        if skipped > 0 { logger.warning("\(skipped) damaged packets of \(name) were skipped") }
        report(force: true)
        let videoParameters = video?.outputStream.pointee.codecpar.pointee
        return TranscodeResult(
            decision: decision, container: decision.container.rawValue,
            videoCodec: videoParameters.map { String(cString: avcodec_get_name($0.codec_id)) },
            audioCodec: audio.map { String(cString: avcodec_get_name($0.outputStream.pointee.codecpar.pointee.codec_id)) },
            width: videoParameters.map { Int($0.width) }, height: videoParameters.map { Int($0.height) },
            duration: tracks.values.map(\.end).max() ?? 0, size: output.size,
            videoFrames: video?.packetsOrFrames ?? 0, audioUnits: audio.map { $0.decoder != nil ? $0.samples : $0.packetsOrFrames } ?? 0,
            skippedPackets: skipped, elapsed: (ContinuousClock.now - started).seconds)
    }

    private func muxError(_ status: Int32, _ message: String) -> JobError {
        if let failure = sink.failure { return failure }
        if let reason = input.stop.stopReason { return reason.error }
        return ffmpegError(status, code: .internalError, "\(message) for \(name)")
    }

    private func demuxLoop() throws(JobError) {
        guard let context = input.context, let packet else { return }
        var failures = 0
        while true {
            try input.stop.check()
            let status = av_read_frame(context, packet)
            if status == CFFmpeg_AVERROR_EOF { return }
            if status < 0 {
                try input.stop.check()
                if status == CFFmpeg_AVERROR_EAGAIN { continue }
                // A damaged stretch: demuxers resynchronise on the next cluster or sync word, so
                // keep reading unless the file ended or nothing valid follows.
                failures += 1
                let atEnd = context.pointee.pb.map { avio_feof($0) != 0 } ?? true
                if atEnd || failures > 1000 {
                    logger.warning("reading \(name) stopped early: \(ffmpegErrorText(status)); the rendition ends there")
                    return
                }
                logSkip("a damaged stretch of \(name) was skipped: \(ffmpegErrorText(status))")
                continue
            }
            failures = 0
            defer { av_packet_unref(packet) }
            guard let track = tracks[Int(packet.pointee.stream_index)] else { continue }
            if track.decoder == nil {
                try copy(packet, track: track)
            } else {
                try decode(packet, track: track)
            }
            report(force: false)
        }
    }

    private func copy(_ packet: UnsafeMutablePointer<AVPacket>, track: OutputTrack) throws(JobError) {
        let p = packet.pointee
        if p.pts != CFFmpeg_AV_NOPTS_VALUE { packet.pointee.pts -= track.offset }
        if p.dts != CFFmpeg_AV_NOPTS_VALUE { packet.pointee.dts -= track.offset }
        if track.isVideo && packet.pointee.duration <= 0 { packet.pointee.duration = track.defaultPacketDuration }
        let tb = track.inputStream.pointee.time_base
        let endTS = (packet.pointee.pts != CFFmpeg_AV_NOPTS_VALUE ? packet.pointee.pts : packet.pointee.dts) + packet.pointee.duration
        track.end = max(track.end, Double(endTS) * av_q2d(tb))
        track.packetsOrFrames += 1
        packet.pointee.stream_index = track.outputStream.pointee.index
        av_packet_rescale_ts(packet, tb, track.outputStream.pointee.time_base)
        packet.pointee.pos = -1
        let status = av_interleaved_write_frame(muxer, packet)
        if status < 0 { throw muxError(status, "Writing a copied packet failed") }
    }

    private func logSkip(_ message: String) {
        skipped += 1
        if warnedSkips < 20 {
            warnedSkips += 1
            logger.warning("\(message)")
        }
    }

    private func decode(_ packet: UnsafeMutablePointer<AVPacket>?, track: OutputTrack) throws(JobError) {
        guard let decoder = track.decoder?.pointer, let frame else { return }
        let sent = avcodec_send_packet(decoder, packet)
        if sent < 0 && sent != CFFmpeg_AVERROR_EOF && sent != CFFmpeg_AVERROR_EAGAIN {
            try input.stop.check()
            logSkip("a damaged packet of stream \(track.inputIndex) was skipped: \(ffmpegErrorText(sent))")
            return
        }
        while true {
            let status = avcodec_receive_frame(decoder, frame)
            if status == CFFmpeg_AVERROR_EAGAIN { return }
            if status == CFFmpeg_AVERROR_EOF { break }
            if status < 0 {
                try input.stop.check()
                logSkip("a frame of stream \(track.inputIndex) could not be decoded: \(ffmpegErrorText(status))")
                if packet == nil { break }
                return
            }
            defer { av_frame_unref(frame) }
            try filterAndEncode(frame, track: track)
        }
        // End of stream: drain the filter and the encoder.
        if let filter = track.filter {
            _ = av_buffersrc_add_frame(filter.source, nil)
            try drainFilter(track)
        }
        try encode(nil, track: track)
    }

    private func filterAndEncode(_ frame: UnsafeMutablePointer<AVFrame>, track: OutputTrack) throws(JobError) {
        let tb = track.inputStream.pointee.time_base
        if track.isVideo {
            var pts = frame.pointee.best_effort_timestamp
            if pts == CFFmpeg_AV_NOPTS_VALUE { pts = frame.pointee.pts }
            if pts == CFFmpeg_AV_NOPTS_VALUE { pts = track.lastEncodedPTS == Int64.min ? 0 : track.lastEncodedPTS + max(track.defaultPacketDuration, 1) }
            else { pts -= track.offset }
            frame.pointee.pts = pts
            let filter = try videoFilter(for: track, frame: frame)
            let status = av_buffersrc_add_frame(filter.source, frame)
            if status < 0 { throw ffmpegError(status, code: .internalError, "Feeding the video filter failed for \(name)") }
        } else {
            let rate = frame.pointee.sample_rate
            var pts = frame.pointee.best_effort_timestamp
            if pts == CFFmpeg_AV_NOPTS_VALUE { pts = frame.pointee.pts }
            if pts != CFFmpeg_AV_NOPTS_VALUE {
                pts = av_rescale_q(pts - track.offset, tb, AVRational(num: 1, den: rate))
                // Overlapping or backwards audio would make the encoder's timestamps go back.
                if pts < track.nextAudioPTS { pts = track.nextAudioPTS }
            } else {
                pts = track.nextAudioPTS
            }
            track.nextAudioPTS = pts + Int64(frame.pointee.nb_samples)
            frame.pointee.pts = pts
            let filter = try audioFilter(for: track, frame: frame)
            let status = av_buffersrc_add_frame(filter.source, frame)
            if status < 0 { throw ffmpegError(status, code: .internalError, "Feeding the audio filter failed for \(name)") }
        }
        try drainFilter(track)
    }

    private func drainFilter(_ track: OutputTrack) throws(JobError) {
        guard let filter = track.filter, let filtered else { return }
        while true {
            let status = av_buffersink_get_frame(filter.sink, filtered)
            if status == CFFmpeg_AVERROR_EAGAIN || status == CFFmpeg_AVERROR_EOF { return }
            if status < 0 { throw ffmpegError(status, code: .internalError, "The filter graph failed for \(name)") }
            defer { av_frame_unref(filtered) }
            let encoder = track.encoder!.pointer
            if filtered.pointee.pts != CFFmpeg_AV_NOPTS_VALUE {
                filtered.pointee.pts = av_rescale_q(filtered.pointee.pts, filter.outputTimeBase, encoder.pointee.time_base)
            }
            if track.isVideo {
                // Monotonic: a repeated or backwards stamp moves just past the previous one.
                if filtered.pointee.pts == CFFmpeg_AV_NOPTS_VALUE || filtered.pointee.pts <= track.lastEncodedPTS {
                    filtered.pointee.pts = track.lastEncodedPTS == Int64.min ? 0 : track.lastEncodedPTS + 1
                }
                track.lastEncodedPTS = filtered.pointee.pts
                filtered.pointee.pict_type = AV_PICTURE_TYPE_NONE
                track.packetsOrFrames += 1
            } else {
                track.samples += Int(filtered.pointee.nb_samples)
            }
            try encode(filtered, track: track)
        }
    }

    private func encode(_ frame: UnsafeMutablePointer<AVFrame>?, track: OutputTrack) throws(JobError) {
        guard let encoder = track.encoder?.pointer, let outPacket else { return }
        let sent = avcodec_send_frame(encoder, frame)
        if sent < 0 && sent != CFFmpeg_AVERROR_EOF {
            throw ffmpegError(sent, code: .internalError, "The encoder refused a frame of \(name)")
        }
        while true {
            let status = avcodec_receive_packet(encoder, outPacket)
            if status == CFFmpeg_AVERROR_EAGAIN || status == CFFmpeg_AVERROR_EOF { return }
            if status < 0 { throw ffmpegError(status, code: .internalError, "Encoding \(name) failed") }
            if track.isVideo && outPacket.pointee.duration <= 0 {
                outPacket.pointee.duration = av_rescale_q(track.defaultPacketDuration, track.inputStream.pointee.time_base, encoder.pointee.time_base)
            }
            let endTS = outPacket.pointee.pts + outPacket.pointee.duration
            track.end = max(track.end, Double(endTS) * av_q2d(encoder.pointee.time_base))
            outPacket.pointee.stream_index = track.outputStream.pointee.index
            av_packet_rescale_ts(outPacket, encoder.pointee.time_base, track.outputStream.pointee.time_base)
            let written = av_interleaved_write_frame(muxer, outPacket)
            if written < 0 { throw muxError(written, "Writing an encoded packet failed") }
        }
    }

    // MARK: Progress

    private func report(force: Bool) {
        guard let progress else { return }
        let now = ContinuousClock.now
        guard force || now - lastReport >= .milliseconds(500) else { return }
        lastReport = now
        let elapsed = max((now - started).seconds, 0.001)
        let outTime = tracks.values.map(\.end).max() ?? 0
        let frames = tracks.values.first(where: \.isVideo)?.packetsOrFrames ?? 0
        var details: [String: JSONValue] = [
            "frames": .int(Int64(frames)),
            "fps": .double((Double(frames) / elapsed * 10).rounded() / 10),
            "speed": .double((outTime / elapsed * 100).rounded() / 100),
            "out_time": .string(clock(outTime)),
            "out_time_seconds": .double((outTime * 1000).rounded() / 1000),
            "mode": .string(decision.action.rawValue),
        ]
        var fraction: Double?
        if let total = sourceDuration, total > 0 {
            fraction = min(outTime / total, 1)
            let speed = outTime / elapsed
            if speed > 0 { details["eta_seconds"] = .double(((total - outTime) / speed).rounded()) }
        }
        progress.report(stage: decision.action == .remux ? "remuxing" : "transcoding", fraction: fraction, details: details)
    }

    private func clock(_ seconds: Double) -> String {
        let total = max(seconds, 0)
        let whole = Int(total)
        return String(format: "%02d:%02d:%06.3f", whole / 3600, whole / 60 % 60, total - Double(whole / 60 * 60))
    }
}
