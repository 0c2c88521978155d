import CFFmpeg
public import MediaNestCore

/// Draws the thumbnail of an audio file without cover art: a symmetric waveform of its loudness.
///
/// The audio is decoded with libavcodec through ``MediaInput`` (the same safe open as every other
/// job) and mixed to mono 32-bit float with libswresample. Each column shows the peak (a soft
/// band) and the RMS (a solid band) of its slice of time, mirrored around the centre line, in a
/// blue foreground on a transparent background. Silence is a flat centre line.
///
/// Cost is bounded: files up to ``fullDecodeLimit`` long are decoded completely (decoding is
/// linear in length and fast for audio); longer files are sampled by seeking to one short window
/// per column, so a 10-hour audiobook costs about as much as a 10-minute song. The job's
/// cancellation and deadline are polled on every packet.
public enum Waveform {
    /// Files longer than this are sampled (one window per column) instead of decoded whole.
    public static let fullDecodeLimit: Duration = .seconds(600)
    /// Length of each sampled window for long files.
    static let windowSeconds = 0.25
    /// Quiet recordings are amplified up to this factor (12 dB) so their shape shows; silence
    /// stays flat because there is nothing to amplify.
    static let maxGain: Float = 4

    /// Colours: RMS band, peak band, centre line (straight-alpha RGBA).
    static let rmsColor: (UInt8, UInt8, UInt8, UInt8) = (88, 166, 255, 255)
    static let peakColor: (UInt8, UInt8, UInt8, UInt8) = (88, 166, 255, 120)

    /// Renders the waveform of the file's best audio stream.
    /// - Parameters:
    ///   - file: The open file.
    ///   - limits: Probe, duration and time limits.
    ///   - width: Picture width in pixels (one column per pixel), at least 1.
    ///   - height: Picture height in pixels, at least 1.
    ///   - cancellation: The job's token, polled on every packet.
    /// - Returns: A `width` × `height` picture with alpha (transparent background).
    /// - Throws: ``JobError`` `unsupported_format` (no audio stream, or not a media container),
    ///   `corrupt_media` (nothing decodable), `duration_limit`, `io_error`, or a stop's code.
    public static func render(file: SafeFile, limits: MediaLimits, width: Int, height: Int,
                              cancellation: JobCancellation?) throws(JobError) -> RGBAImage {
        let width = max(1, width), height = max(1, height)
        let stop = StopGuard(cancellation: cancellation, timeout: limits.timeout)
        let input = try MediaInput.open(file, limits: limits, sniffedMimeType: nil, stop: stop)
        guard let context = input.context else {
            throw JobError(.internalError, "The demuxer of \(file.relativePath) is not open.")
        }
        let streamIndex = av_find_best_stream(context, AVMEDIA_TYPE_AUDIO, -1, -1, nil, 0)
        guard streamIndex >= 0 else {
            throw JobError(.unsupportedFormat, "The file \(file.relativePath) has no audio stream to draw a waveform from.")
        }
        let reader = try AudioReader(input: input, streamIndex: Int(streamIndex))
        let columns: [ColumnLevel]
        if let duration = reader.duration, duration > fullDecodeLimit.seconds, let sampled = try sampledColumns(reader, duration: duration, width: width) {
            columns = sampled
        } else {
            columns = try decodedColumns(reader, width: width)
        }
        return draw(columns, width: width, height: height)
    }

    /// Peak and RMS of one column, 0...1 (full scale).
    struct ColumnLevel {
        var peak: Float = 0
        var sumOfSquares: Double = 0
        var count: Int = 0
        var rms: Float { count > 0 ? Float((sumOfSquares / Double(count)).squareRoot()) : 0 }

        mutating func add(_ sample: Float) {
            let value = sample.isFinite ? min(abs(sample), 1) : 0
            peak = max(peak, value)
            sumOfSquares += Double(value * value)
            count += 1
        }

        mutating func merge(_ other: ColumnLevel) {
            peak = max(peak, other.peak)
            sumOfSquares += other.sumOfSquares
            count += other.count
        }
    }

    /// Decodes everything, in fixed-size chunks of samples, then spreads the chunks over the columns
    /// (the total length is only certain at the end).
    private static func decodedColumns(_ reader: AudioReader, width: Int) throws(JobError) -> [ColumnLevel] {
        let expected = reader.duration.map { $0 * Double(reader.sampleRate) } ?? 0
        // About 8 chunks per column when the length is known; 1/20 s otherwise.
        let chunkSize = max(64, expected > 0 ? Int(expected) / (width * 8) : reader.sampleRate / 20)
        var chunks: [ColumnLevel] = []
        var current = ColumnLevel()
        try reader.decode(maxSamples: nil) { samples in
            for sample in samples {
                current.add(sample)
                if current.count == chunkSize {
                    chunks.append(current)
                    current = ColumnLevel()
                }
            }
        }
        if current.count > 0 { chunks.append(current) }
        guard !chunks.isEmpty else {
            throw JobError(.corruptMedia, "No audio could be decoded from \(reader.name).")
        }
        var columns = [ColumnLevel](repeating: ColumnLevel(), count: width)
        for (index, chunk) in chunks.enumerated() {
            columns[min(width - 1, index * width / chunks.count)].merge(chunk)
        }
        // Fewer chunks than columns (very short files): repeat each chunk over its columns.
        if chunks.count < width {
            for column in 0..<width { columns[column] = chunks[column * chunks.count / width] }
        }
        return columns
    }

    /// Seeks to the middle of each column's slice and measures a short window there. Returns `nil`
    /// when the file cannot seek (the caller then decodes everything).
    private static func sampledColumns(_ reader: AudioReader, duration: Double, width: Int) throws(JobError) -> [ColumnLevel]? {
        let window = max(64, Int(windowSeconds * Double(reader.sampleRate)))
        var columns = [ColumnLevel](repeating: ColumnLevel(), count: width)
        var decodedAny = false
        for column in 0..<width {
            let time = duration * (Double(column) + 0.5) / Double(width)
            guard reader.seek(to: time) else { return decodedAny ? columns : nil }
            var level = ColumnLevel()
            try reader.decode(maxSamples: window) { samples in
                for sample in samples { level.add(sample) }
            }
            decodedAny = decodedAny || level.count > 0
            columns[column] = level
        }
        guard decodedAny else { throw JobError(.corruptMedia, "No audio could be decoded from \(reader.name).") }
        return columns
    }

    /// Draws mirrored peak and RMS bands with anti-aliased ends and a one-pixel centre line.
    static func draw(_ columns: [ColumnLevel], width: Int, height: Int) -> RGBAImage {
        var image = RGBAImage(width: width, height: height, fill: (0, 0, 0, 0))
        image.hasAlpha = true
        let loudest = columns.map(\.peak).max() ?? 0
        let gain = loudest > 0 ? min(maxGain, 1 / loudest) : 1
        let half = Float(height) / 2
        let centre = Float(height) / 2
        image.pixels.withUnsafeMutableBufferPointer { pixels in
            func blend(_ x: Int, _ y: Int, _ color: (UInt8, UInt8, UInt8, UInt8), coverage: Float) {
                guard coverage > 0, y >= 0, y < height else { return }
                let i = (y * width + x) * 4
                let a = Float(color.3) / 255 * min(coverage, 1)
                let existing = Float(pixels[i + 3]) / 255
                let out = a + existing * (1 - a)
                guard out > 0 else { return }
                let src = [color.0, color.1, color.2]
                for c in 0..<3 {
                    let value = (Float(src[c]) * a + Float(pixels[i + c]) * existing * (1 - a)) / out
                    pixels[i + c] = UInt8(min(255, max(0, value.rounded())))
                }
                pixels[i + 3] = UInt8(min(255, max(0, (out * 255).rounded())))
            }
            for x in 0..<min(width, columns.count) {
                let level = columns[x]
                for (amplitude, color) in [(min(1, level.peak * gain), peakColor), (min(1, level.rms * gain), rmsColor)] {
                    // The band covers centre ± extent, with partial coverage at its two ends.
                    let extent = max(0.5, amplitude * half)
                    let top = centre - extent, bottom = centre + extent
                    for y in max(0, Int(top.rounded(.down)))..<min(height, Int(bottom.rounded(.up))) {
                        let coverage = min(Float(y + 1), bottom) - max(Float(y), top)
                        blend(x, y, color, coverage: coverage)
                    }
                }
            }
        }
        return image
    }
}

/// One audio stream's decoder and mono float resampler, over an open ``MediaInput``.
private final class AudioReader {
    let input: MediaInput
    let streamIndex: Int
    let decoder: DecoderContext
    let sampleRate: Int
    /// Length in seconds, when the container or stream says.
    let duration: Double?
    private var resampler: OpaquePointer?
    private let packet: UnsafeMutablePointer<AVPacket>
    private let frame: UnsafeMutablePointer<AVFrame>
    private var output: [Float] = []

    var name: String { input.file.relativePath }

    init(input: MediaInput, streamIndex: Int) throws(JobError) {
        self.input = input
        self.streamIndex = streamIndex
        decoder = try input.makeDecoder(streamIndex: streamIndex)
        let codec = decoder.pointer
        sampleRate = Int(codec.pointee.sample_rate)
        guard sampleRate > 0, codec.pointee.ch_layout.nb_channels > 0 else {
            throw JobError(.corruptMedia, "The audio stream of \(input.file.relativePath) declares no sample rate or channels.")
        }
        let stream = input.streams[streamIndex]
        if stream.pointee.duration != CFFmpeg_AV_NOPTS_VALUE, stream.pointee.duration > 0, stream.pointee.time_base.den > 0 {
            duration = Double(stream.pointee.duration) * Double(stream.pointee.time_base.num) / Double(stream.pointee.time_base.den)
        } else if let context = input.context, context.pointee.duration != CFFmpeg_AV_NOPTS_VALUE, context.pointee.duration > 0 {
            duration = Double(context.pointee.duration) / Double(CFFmpeg_AV_TIME_BASE)
        } else {
            duration = nil
        }
        guard let packet = av_packet_alloc(), let frame = av_frame_alloc() else {
            throw JobError(.internalError, "FFmpeg could not allocate a packet or frame.")
        }
        self.packet = packet
        self.frame = frame
        try makeResampler()
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&p)
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
        swr_free(&resampler)
    }

    private func makeResampler() throws(JobError) {
        swr_free(&resampler)
        let codec = decoder.pointer
        var inLayout = AVChannelLayout()
        if codec.pointee.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC {
            av_channel_layout_default(&inLayout, codec.pointee.ch_layout.nb_channels)
        } else {
            _ = av_channel_layout_copy(&inLayout, &codec.pointee.ch_layout)
        }
        defer { av_channel_layout_uninit(&inLayout) }
        var mono = AVChannelLayout()
        av_channel_layout_default(&mono, 1)
        defer { av_channel_layout_uninit(&mono) }
        var status = swr_alloc_set_opts2(&resampler, &mono, AV_SAMPLE_FMT_FLT, Int32(sampleRate),
                                         &inLayout, codec.pointee.sample_fmt, Int32(sampleRate), 0, nil)
        if status >= 0 { status = swr_init(resampler) }
        guard status >= 0 else {
            throw ffmpegError(status, code: .unsupportedFormat, "The audio of \(name) cannot be converted for the waveform")
        }
    }

    /// Seeks (backwards to a keyframe) near `seconds` and resets the decoder; `false` if the file cannot seek.
    func seek(to seconds: Double) -> Bool {
        guard let context = input.context else { return false }
        let stream = input.streams[streamIndex]
        let base = stream.pointee.time_base
        guard base.num > 0, base.den > 0 else { return false }
        var target = Int64(seconds * Double(base.den) / Double(base.num))
        if stream.pointee.start_time != CFFmpeg_AV_NOPTS_VALUE { target += stream.pointee.start_time }
        guard av_seek_frame(context, Int32(streamIndex), target, CFFmpeg_AVSEEK_FLAG_BACKWARD) >= 0 else { return false }
        avcodec_flush_buffers(decoder.pointer)
        // Samples buffered from before the seek must not leak into this window.
        return (try? makeResampler()) != nil
    }

    /// Decodes from the current position, handing mono float samples to `body`, until the stream
    /// ends or `maxSamples` have been delivered.
    func decode(maxSamples: Int?, _ body: (ArraySlice<Float>) -> Void) throws(JobError) {
        guard let context = input.context else { return }
        var delivered = 0
        var draining = false
        var decodedFrames = 0
        var lastError: Int32 = 0
        func finish() throws(JobError) {
            if decodedFrames == 0 && lastError < 0 {
                throw ffmpegError(lastError, code: .corruptMedia, "The audio of \(name) cannot be decoded")
            }
        }
        while true {
            try input.stop.check()
            if !draining {
                let status = av_read_frame(context, packet)
                if status < 0 {
                    // A stop shows up here as a failed read: report the stop, not the read.
                    try input.stop.check()
                    draining = true
                    _ = avcodec_send_packet(decoder.pointer, nil)
                } else {
                    let ours = Int(packet.pointee.stream_index) == streamIndex
                    let sent = ours ? avcodec_send_packet(decoder.pointer, packet) : 0
                    av_packet_unref(packet)
                    // A damaged packet is skipped: the waveform of what does decode is still useful.
                    if sent < 0 && sent != CFFmpeg_AVERROR_EAGAIN { lastError = sent }
                    if !ours { continue }
                }
            }
            while true {
                let received = avcodec_receive_frame(decoder.pointer, frame)
                if received == CFFmpeg_AVERROR_EAGAIN && !draining { break }
                if received < 0 {
                    if received != CFFmpeg_AVERROR_EOF && received != CFFmpeg_AVERROR_EAGAIN { lastError = received }
                    if draining { return try finish() }
                    break
                }
                decodedFrames += 1
                let samples = convert(frame)
                av_frame_unref(frame)
                guard !samples.isEmpty else { continue }
                if let maxSamples {
                    let take = min(samples.count, maxSamples - delivered)
                    body(samples.prefix(take))
                    delivered += take
                    if delivered >= maxSamples { return }
                } else {
                    body(samples)
                }
            }
        }
    }

    /// Mixes one decoded frame to mono float.
    private func convert(_ frame: UnsafeMutablePointer<AVFrame>) -> ArraySlice<Float> {
        guard let resampler, frame.pointee.nb_samples > 0, let extended = frame.pointee.extended_data else { return [] }
        let capacity = Int(swr_get_out_samples(resampler, frame.pointee.nb_samples))
        guard capacity > 0 else { return [] }
        if output.count < capacity { output = [Float](repeating: 0, count: capacity) }
        let produced = output.withUnsafeMutableBytes { buffer -> Int32 in
            var out: UnsafeMutablePointer<UInt8>? = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let source = UnsafeMutableRawPointer(extended).assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
            return swr_convert(resampler, &out, Int32(capacity), source, frame.pointee.nb_samples)
        }
        return produced > 0 ? output[0..<Int(produced)] : []
    }
}
