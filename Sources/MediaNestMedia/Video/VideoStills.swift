import CFFmpeg
import Foundation
public import Logging
public import MediaNestCore

/// The still that stands for a video in a library grid: a representative frame, never a black or
/// blank one, upright, at its display aspect, in sRGB.
///
/// How the frame is chosen (docs/VIDEO-STILLS.md has the reasoning):
/// - Candidate times: 10 %, 20 %, 30 %, 40 % of the duration; for clips under 30 s, the middle
///   first (50 %, 65 %, 35 %, 80 %), since 10 % of a short clip is usually still its fade-in.
/// - For each, seek backwards to the keyframe at or before it and decode that keyframe alone
///   (non-key packets never reach the decoder, `skip_frame = nokey`). When the seek lands on a
///   keyframe already tried, the next keyframe after it is taken instead.
/// - Each candidate is scored from a small grey version: luma histogram entropy plus spread,
///   penalised when nearly black or white. The first candidate that is clearly a real picture
///   wins at once (most videos need one decode); otherwise the best of the handful.
/// - Only when every keyframe is blank (a long black intro with sparse keyframes) are frames
///   decoded in order, from the first candidate, for a bounded number of frames.
///
/// The cost is a few seeks and keyframe decodes, the same for a 30-second clip and a 3-hour film.
public enum VideoStills {
    /// How many keyframe candidates are decoded at most.
    static let maxCandidates = 4
    /// How many packets may be read after a seek to find the keyframe wanted.
    static let packetBudgetPerCandidate = 1500
    /// Frames decoded in order at most when every keyframe was blank.
    static let fallbackFrames = 150

    /// A representative frame of the video in `file`, fitted into `maxLongEdge`.
    /// - Parameters:
    ///   - file: The safely opened video file.
    ///   - limits: Pixel, duration and time limits.
    ///   - maxLongEdge: Longest edge of the result, in pixels (never upscaled).
    ///   - cancellation: The job's token, polled by FFmpeg and between candidates.
    ///   - logger: The job's logger; FFmpeg's lines go to it too.
    ///   - threads: Decoder threads for this job (the job's share of the cores).
    /// - Returns: The frame, rotated upright, at its display aspect, 8-bit sRGB.
    /// - Throws: ``JobError`` `unsupported_format` (no video stream, no decoder), `corrupt_media`
    ///   (no frame decodes), `pixel_limit`, `duration_limit`, `io_error`, or a stop's code.
    public static func representativeFrame(file: SafeFile, limits: MediaLimits, maxLongEdge: Int, cancellation: JobCancellation?,
                                           logger: Logger, threads: Int = 1) throws(JobError) -> RGBAImage {
        var statistics = VideoDecodeStatistics()
        return try representativeFrame(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: cancellation,
                                       logger: logger, threads: threads, statistics: &statistics)
    }

    /// ``representativeFrame(file:limits:maxLongEdge:cancellation:logger:threads:)``, also
    /// reporting the work done (seeks, packets read, frames decoded) in `statistics`.
    public static func representativeFrame(file: SafeFile, limits: MediaLimits, maxLongEdge: Int, cancellation: JobCancellation?,
                                           logger: Logger, threads: Int = 1,
                                           statistics: inout VideoDecodeStatistics) throws(JobError) -> RGBAImage {
        try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> RGBAImage in
            let source = try VideoSource(file: file, limits: limits, cancellation: cancellation, threads: threads, outputLongEdge: maxLongEdge)
            defer { statistics = source.statistics }
            return try choose(from: source, maxLongEdge: maxLongEdge, logger: logger)
        }
    }

    /// The candidate times, as fractions of the duration.
    static func candidateFractions(duration: Double) -> [Double] {
        duration < 30 ? [0.5, 0.65, 0.35, 0.8] : [0.1, 0.2, 0.3, 0.4]
    }

    private static func choose(from source: VideoSource, maxLongEdge: Int, logger: Logger) throws(JobError) -> RGBAImage {
        var best: (frame: OwnedFrame, score: FrameScore, time: Double?)?
        var tried: Set<Int64> = []
        let times: [Double?]
        if let duration = source.duration, duration > 0 {
            times = candidateFractions(duration: duration).map { $0 * duration }
        } else {
            // Unknown duration: the first keyframes in file order.
            times = Array(repeating: nil, count: maxCandidates)
        }
        candidates: for target in times {
            if let target { try source.seek(to: target) }
            // The keyframe at or before the target, or the first one after it not yet tried.
            var keyframe: (time: Double?, timestamp: Int64)?
            while keyframe == nil {
                switch try source.readPacket(budget: packetBudgetPerCandidate) {
                case .packet(let time, let timestamp):
                    if timestamp == Int64.min || tried.insert(timestamp).inserted { keyframe = (time, timestamp) }
                case .end, .budgetExhausted:
                    continue candidates
                }
            }
            guard let frame = try source.decodeKeyframe() else { continue }
            let score = try FrameScore(frame.pointer)
            logger.debug("video still candidate", metadata: [
                "time": "\(keyframe?.time.map { String(format: "%.2f", $0) } ?? "?")", "score": "\(score)",
            ])
            if best == nil || score.value > best!.score.value { best = (frame, score, keyframe?.time) }
            if score.isClearlyAPicture { break }
        }

        // A still image read through an image demuxer (JPEG XL, ...) has one picture: when its
        // keyframe decode gave none, decoding its packets in order cannot give another, and it
        // must not be tried. FFmpeg 5.1's libjxl wrapper keeps its decoder mid-image after an
        // error and, fed the next packet, reports a frame without a buffer, which aborts the
        // process (`Assertion frame->buf[0] failed at libavcodec/decode.c:502`; fuzz finding
        // Tests/FuzzRegressions/still/jxl-second-packet-abort.corrupt_media).
        let isStillImage = MediaInput.imageDemuxers.contains(source.input.formatName)
        if !isStillImage, best == nil || best!.score.isBlank {
            // Every keyframe was blank (or none decoded): decode in order from the first candidate.
            if let first = times.first, let target = first { try source.seek(to: target) } else { try source.seek(to: 0) }
            var index = 0
            try source.decodeSequentially(maxFrames: fallbackFrames, packetBudget: fallbackFrames * 8) { (frame) throws(JobError) -> Bool in
                index += 1
                guard index % 5 == 1 else { return true }
                let score = try FrameScore(frame)
                if best == nil || score.value > best!.score.value {
                    let kept = try OwnedFrame()
                    av_frame_move_ref(kept.pointer, frame)
                    best = (kept, score, nil)
                }
                return !score.isClearlyAPicture
            }
        }
        guard let chosen = best else {
            throw JobError(.corruptMedia, "No picture could be decoded from the video of \(source.relativePath).")
        }
        if chosen.score.isBlank {
            logger.info("every frame tried is blank; using the best of them", metadata: ["score": "\(chosen.score)"])
        }
        let size = VideoFrameRenderer.fittedSize(of: chosen.frame.pointer, source: source, maxLongEdge: maxLongEdge)
        return try VideoFrameRenderer.render(chosen.frame.pointer, width: size.width, height: size.height, source: source)
    }
}

/// How much a frame looks like a picture rather than a black, white or flat screen.
struct FrameScore: CustomStringConvertible {
    /// Shannon entropy of a 32-bin luma histogram, 0 (one colour) to 5 bits.
    var entropy: Double
    /// Mean luma, 0–255.
    var mean: Double
    /// Standard deviation of luma, 0–128.
    var deviation: Double

    /// The side of the grey sample the score is computed from.
    static let sampleEdge = 64

    /// Scores a frame from a small grey version of it.
    init(_ frame: UnsafeMutablePointer<AVFrame>) throws(JobError) {
        let fitted = RGBAImage.fittedSize(width: Int(frame.pointee.width), height: Int(frame.pointee.height), maxLongEdge: FrameScore.sampleEdge)
        let gray = try FrameScore.grayscale(frame, width: fitted.width, height: fitted.height)
        self.init(samples: gray)
    }

    /// Scores luma samples.
    init(samples: [UInt8]) {
        var histogram = [Int](repeating: 0, count: 32)
        var sum = 0.0, sumSquares = 0.0
        for value in samples {
            histogram[Int(value >> 3)] += 1
            let v = Double(value)
            sum += v
            sumSquares += v * v
        }
        let n = Double(max(samples.count, 1))
        mean = sum / n
        deviation = max(0, sumSquares / n - mean * mean).squareRoot()
        entropy = histogram.reduce(0.0) { total, count in
            guard count > 0 else { return total }
            let p = Double(count) / n
            return total - p * log2(p)
        }
    }

    /// Higher is better: entropy plus spread, halved for nearly black or nearly white frames.
    var value: Double {
        let base = entropy + min(deviation, 64) / 32
        return mean < 24 || mean > 232 ? base / 2 : base
    }

    /// Black, white or a flat colour: nothing anyone would recognise.
    var isBlank: Bool { deviation < 8 || entropy < 1.0 || mean < 12 }

    /// Clearly a real picture: no need to look further.
    var isClearlyAPicture: Bool { entropy >= 3.0 && deviation >= 20 && mean >= 32 && mean <= 224 }

    var description: String { String(format: "entropy %.2f, mean %.1f, deviation %.1f", entropy, mean, deviation) }

    private static func grayscale(_ frame: UnsafeMutablePointer<AVFrame>, width: Int, height: Int) throws(JobError) -> [UInt8] {
        let source = FrameConverter.sourceFormat(of: frame)
        guard let context = sws_getContext(frame.pointee.width, frame.pointee.height, source.format,
                                           Int32(width), Int32(height), AV_PIX_FMT_GRAY8, CFFmpeg_SWS_AREA, nil, nil, nil) else {
            let name = CFFmpeg_pix_fmt_name(frame.pointee.format).map { String(cString: $0) } ?? "format \(frame.pointee.format)"
            throw JobError(.unsupportedFormat, "The video's pixel format (\(name)) cannot be converted.")
        }
        defer { sws_freeContext(context) }
        var gray: [UInt8] = ScalerOutput.plane(width * height)
        let status: Int32 = gray.withUnsafeMutableBufferPointer { out in
            var dst: [UnsafeMutablePointer<UInt8>?] = [out.baseAddress, nil, nil, nil]
            var dstStride: [Int32] = [Int32(width), 0, 0, 0]
            return withUnsafePointer(to: frame.pointee.data) { dataTuple in
                withUnsafePointer(to: frame.pointee.linesize) { strideTuple in
                    dataTuple.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                        strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { srcStride in
                            sws_scale(context, src, srcStride, 0, frame.pointee.height, &dst, &dstStride)
                        }
                    }
                }
            }
        }
        guard status > 0 else { throw ffmpegError(status, code: .corruptMedia, "The video frame could not be sampled") }
        ScalerOutput.dropPadding(&gray)
        return gray
    }
}
