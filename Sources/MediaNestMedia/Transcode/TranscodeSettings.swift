/// How transcode jobs decide and encode: the policy's configuration, with Immich-like defaults.
///
/// Defaults: H.264 (libx264) yuv420p 8-bit, CRF 23, preset `veryfast`, at most 1080 lines on
/// the short edge, never upscaled; AAC stereo 128 kb/s; MP4 with `+faststart` (M4A for audio
/// only); mode ``Mode/required``; location metadata stripped. See docs/TRANSCODE.md.
public struct TranscodeSettings: Sendable, Hashable {
    /// When a rendition is made.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Only when the source would not play in a browser (codec, pixel format, bit depth,
        /// HDR or container).
        case required
        /// Also when the source is larger than the target resolution or bit rate.
        case optimal
        /// Always re-encode.
        case always
        /// Never make a rendition.
        case never
    }

    /// The target video codec.
    public enum VideoCodec: String, Sendable, Hashable, CaseIterable {
        case h264, hevc, av1

        /// The FFmpeg encoder used for it.
        public var encoderName: String {
            switch self {
            case .h264: "libx264"
            case .hevc: "libx265"
            case .av1: "libsvtav1"
            }
        }

        /// FFmpeg's codec name, as a probe reports it.
        public var codecName: String { rawValue }
    }

    public var mode: Mode = .required
    public var videoCodec: VideoCodec = .h264
    /// Constant rate factor (x264/x265 scale; SVT-AV1 takes it as its `crf`).
    public var crf: Int = 23
    /// Encoder preset: x264/x265 names (`veryfast`), or an SVT-AV1 number (`8`).
    public var preset: String = "veryfast"
    /// Largest short edge of the output, in pixels (1080 = "1080p"). Never upscaled.
    public var maxResolution: Int = 1080
    /// Peak video bit rate in bits per second (VBV), or `nil` for pure CRF.
    public var maxBitrate: Int64?
    /// Frames between keyframes, or `nil` for the encoder's default.
    public var keyframeInterval: Int?
    /// AAC bit rate in bits per second.
    public var audioBitrate: Int64 = 128_000
    /// Encoder and decoder threads, or `nil` for the machine's cores.
    public var threads: Int?
    /// Drop container and stream tags that reveal where a video was shot (default true).
    public var stripLocation: Bool = true
    /// Audio codecs that play in every browser and may be copied into the output.
    public var acceptedAudioCodecs: Set<String> = ["aac", "mp3"]
    /// Wall-clock limit of a transcode: ``timeoutBase`` + ``timeoutPerSecond`` × duration.
    public var timeoutBase: Duration = .seconds(120)
    /// Seconds of wall-clock time allowed per second of media.
    public var timeoutPerSecond: Double = 4
    /// The rendition's file name without extension (`renditions/web.mp4`).
    public var renditionName: String = "web"

    /// The documented defaults.
    public init() {}

    /// The time limit for a source of `duration` seconds (unknown duration: one hour of media).
    public func timeout(forDuration duration: Double?) -> Duration {
        let seconds = max(duration ?? 3600, 0)
        return timeoutBase + .milliseconds(Int64((seconds * timeoutPerSecond * 1000).rounded()))
    }
}
