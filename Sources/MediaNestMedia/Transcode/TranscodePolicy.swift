import Foundation

/// What a transcode job does with one source, decided from its probe alone.
public struct TranscodeDecision: Sendable, Hashable {
    /// The overall action.
    public enum Action: String, Sendable, Hashable {
        /// The source already plays in browsers (or the mode is `never`): no rendition.
        case none
        /// Packets are copied into a new container; nothing is decoded.
        case remux
        /// At least one stream is decoded and encoded again.
        case transcode
    }

    /// What happens to one selected stream.
    public enum StreamAction: String, Sendable, Hashable {
        case copy, encode
    }

    /// The output container.
    public enum Container: String, Sendable, Hashable {
        case mp4, m4a

        /// The file extension.
        public var fileExtension: String { rawValue }
    }

    public var action: Action
    /// Why, in words a person understands (stored in `output_data.reason`).
    public var reason: String
    public var container: Container
    /// The video stream index used, if any.
    public var videoStream: Int?
    public var videoAction: StreamAction?
    /// The audio stream index used, if any.
    public var audioStream: Int?
    public var audioAction: StreamAction?
    /// Output frame size (even, aspect kept, never upscaled) when video is encoded.
    public var width: Int?
    public var height: Int?
    /// Whether PQ/HLG is tone-mapped to SDR BT.709.
    public var toneMap: Bool = false
    /// Streams not carried into the output (subtitles, data, extra audio, cover art), by index.
    public var droppedStreams: [Int] = []
}

/// The pure decision function of transcode jobs: which streams, copied or encoded, at what size.
///
/// Browsers play H.264 (8-bit 4:2:0) and AAC/MP3 in MP4. A source that already matches (and, in
/// ``TranscodeSettings/Mode/optimal``, is no larger than the target) needs no rendition; one whose
/// codecs play but whose container does not is remuxed; anything else is encoded, copying the
/// streams that already play.
public enum TranscodePolicy {
    /// Demuxer names of the MP4 family, whose files browsers play.
    public static let playableContainers: Set<String> = ["mov,mp4,m4a,3gp,3g2,mj2"]
    /// Containers whose audio-only files browsers play as they are.
    public static let playableAudioContainers: Set<String> = ["mov,mp4,m4a,3gp,3g2,mj2", "mp3"]
    /// Pixel formats browsers decode in H.264/HEVC/AV1.
    public static let playablePixelFormats: Set<String> = ["yuv420p", "yuvj420p"]

    /// Decides what to do with `probe` under `settings`.
    /// - Parameters:
    ///   - probe: The source's probe (``MediaInput/probe()``).
    ///   - settings: The policy.
    /// - Returns: The decision, with its reason.
    public static func decide(_ probe: MediaProbe, settings: TranscodeSettings) -> TranscodeDecision {
        let video = probe.primaryVideo
        let audio = probe.streams.first { $0.kind == .audio && $0.isDefault } ?? probe.primaryAudio
        let kept = Set([video?.index, audio?.index].compactMap { $0 })
        let dropped = probe.streams.map(\.index).filter { !kept.contains($0) }
        let container: TranscodeDecision.Container = video == nil ? .m4a : .mp4
        var decision = TranscodeDecision(action: .none, reason: "", container: container,
                                         videoStream: video?.index, audioStream: audio?.index, droppedStreams: dropped)
        guard video != nil || audio != nil else {
            decision.reason = "The file has no audio or video stream to play."
            decision.videoStream = nil
            decision.audioStream = nil
            return decision
        }
        if settings.mode == .never {
            decision.reason = "The transcode policy is 'never'."
            return decision
        }
        // A still FFmpeg reads (JPEG XL, a one-frame video stream) is an image: nothing to play.
        if probe.isStillImage {
            decision.reason = "The file is a still image (\(probe.formatName)), not a video to play."
            return decision
        }

        var reasons: [String] = []
        // Video.
        if let video {
            var videoReasons: [String] = []
            if video.codecName != settings.videoCodec.codecName {
                videoReasons.append("video codec \(video.codecName) is not \(settings.videoCodec.codecName)")
            }
            if let depth = video.bitDepth, depth > 8 { videoReasons.append("video is \(depth)-bit") }
            if let format = video.pixelFormat, !playablePixelFormats.contains(format) {
                videoReasons.append("pixel format \(format) is not 4:2:0 8-bit")
            }
            if video.isHDR { videoReasons.append("video is HDR (\(video.colorTransfer ?? "PQ/HLG"))") }
            let shortEdge = min(video.width ?? 0, video.height ?? 0)
            if settings.mode == .optimal && shortEdge > settings.maxResolution {
                videoReasons.append("video is \(shortEdge)p, above the \(settings.maxResolution)p target")
            }
            if settings.mode == .optimal, let max = settings.maxBitrate, let rate = video.bitRate ?? probe.bitRate, rate > max {
                videoReasons.append("video bit rate \(rate / 1000) kb/s is above \(max / 1000) kb/s")
            }
            if settings.mode == .always { videoReasons.append("the policy is 'always'") }
            decision.videoAction = videoReasons.isEmpty ? .copy : .encode
            reasons += videoReasons
            if decision.videoAction == .encode {
                let size = outputSize(width: video.width ?? 0, height: video.height ?? 0, maxShortEdge: settings.maxResolution)
                decision.width = size.width
                decision.height = size.height
                decision.toneMap = video.isHDR
            }
        }
        // Audio.
        if let audio {
            var audioReasons: [String] = []
            if !settings.acceptedAudioCodecs.contains(audio.codecName) {
                audioReasons.append("audio codec \(audio.codecName) does not play in browsers")
            }
            if settings.mode == .always { audioReasons.append("the policy is 'always'") }
            decision.audioAction = audioReasons.isEmpty ? .copy : .encode
            reasons += audioReasons.filter { !reasons.contains($0) }
        }

        let encodes = decision.videoAction == .encode || decision.audioAction == .encode
        if encodes {
            decision.action = .transcode
            decision.reason = "Transcoded: " + reasons.joined(separator: "; ") + "."
            return decision
        }
        let containerPlays = video == nil
            ? playableAudioContainers.contains(probe.formatName)
            : playableContainers.contains(probe.formatName) && probe.tags["major_brand"]?.trimmingCharacters(in: .whitespaces) != "qt"
        if containerPlays {
            decision.action = .none
            let what = [video.map { "\($0.codecName) video" }, audio.map { "\($0.codecName) audio" }].compactMap { $0 }.joined(separator: " and ")
            decision.reason = "Already playable: \(what) in \(probe.formatLongName ?? probe.formatName)."
            return decision
        }
        decision.action = .remux
        decision.reason = "Remuxed: the codecs play in browsers but the container \(probe.formatLongName ?? probe.formatName) does not."
        return decision
    }

    /// The output size for a `width`×`height` source: the short edge at most `maxShortEdge`,
    /// the aspect ratio kept, never upscaled, both sides even (4:2:0 needs it).
    public static func outputSize(width: Int, height: Int, maxShortEdge: Int) -> (width: Int, height: Int) {
        guard width > 0, height > 0 else { return (width, height) }
        let shortEdge = min(width, height)
        let scale = shortEdge > maxShortEdge ? Double(maxShortEdge) / Double(shortEdge) : 1
        func even(_ value: Double) -> Int { max(2, Int((value / 2).rounded()) * 2) }
        var w = even(Double(width) * scale)
        var h = even(Double(height) * scale)
        // Rounding must not push the short edge over the limit.
        if width <= height { w = min(w, max(2, maxShortEdge & ~1)) } else { h = min(h, max(2, maxShortEdge & ~1)) }
        // Never upscale: an odd source side rounds down, not up.
        if w > width { w = max(2, width & ~1) }
        if h > height { h = max(2, height & ~1) }
        return (w, h)
    }
}
