@testable import MediaNestMedia
import Testing

/// The policy as a pure function over probe results: no file, no FFmpeg.
@Suite("Transcode policy")
struct TranscodePolicyTests {
    static let mp4 = "mov,mp4,m4a,3gp,3g2,mj2"

    static func video(_ codec: String, _ width: Int, _ height: Int, pixelFormat: String = "yuv420p", depth: Int = 8,
                      transfer: String? = nil, index: Int = 0) -> StreamInfo {
        StreamInfo(index: index, kind: .video, codecName: codec, pixelFormat: pixelFormat, bitDepth: depth, width: width, height: height,
                   rotation: 0, colorTransfer: transfer, isHDR: transfer == "smpte2084" || transfer == "arib-std-b67",
                   isAttachedPicture: false, isDefault: true, tags: [:])
    }

    static func audio(_ codec: String, index: Int = 1) -> StreamInfo {
        StreamInfo(index: index, kind: .audio, codecName: codec, rotation: 0, isHDR: false, channels: 2, sampleRate: 48000,
                   isAttachedPicture: false, isDefault: true, tags: [:])
    }

    static func probe(_ format: String, _ streams: [StreamInfo], tags: [String: String] = [:]) -> MediaProbe {
        MediaProbe(formatName: format, formatLongName: nil, duration: 10, streams: streams, chapters: [], tags: tags)
    }

    @Test func h264AacInMP4NeedsNoRenditionAndSaysWhy() {
        let decision = TranscodePolicy.decide(Self.probe(Self.mp4, [Self.video("h264", 1920, 1080), Self.audio("aac")]), settings: TranscodeSettings())
        #expect(decision.action == .none)
        #expect(decision.reason.hasPrefix("Already playable"))
    }

    @Test func playableCodecsInMatroskaAreRemuxedNotEncoded() {
        let decision = TranscodePolicy.decide(Self.probe("matroska,webm", [Self.video("h264", 1280, 720), Self.audio("aac")]), settings: TranscodeSettings())
        #expect(decision.action == .remux)
        #expect(decision.videoAction == .copy)
        #expect(decision.audioAction == .copy)
        #expect(decision.container == .mp4)
    }

    @Test func hevcTenBitIsEncodedAndAacAudioIsCopied() {
        let decision = TranscodePolicy.decide(
            Self.probe("matroska,webm", [Self.video("hevc", 3840, 2160, pixelFormat: "yuv420p10le", depth: 10), Self.audio("aac")]),
            settings: TranscodeSettings())
        #expect(decision.action == .transcode)
        #expect(decision.videoAction == .encode)
        #expect(decision.audioAction == .copy)
        #expect(decision.width == 1920 && decision.height == 1080)
        #expect(decision.reason.contains("10-bit"))
        #expect(!decision.toneMap)
    }

    @Test func optimalAlsoShrinksLargeSourcesWhileRequiredLeavesThem() {
        let big = Self.probe(Self.mp4, [Self.video("h264", 3840, 2160), Self.audio("aac")])
        #expect(TranscodePolicy.decide(big, settings: TranscodeSettings()).action == .none)
        var optimal = TranscodeSettings()
        optimal.mode = .optimal
        let decision = TranscodePolicy.decide(big, settings: optimal)
        #expect(decision.action == .transcode)
        #expect(decision.videoAction == .encode)
        #expect(decision.audioAction == .copy)
        #expect(decision.width == 1920 && decision.height == 1080)
    }

    @Test func portraitKeepsItsAspectAndShortEdgeIsTheLimit() {
        var settings = TranscodeSettings()
        settings.mode = .optimal
        settings.maxResolution = 720
        let decision = TranscodePolicy.decide(Self.probe(Self.mp4, [Self.video("h264", 1080, 1920)]), settings: settings)
        #expect(decision.width == 720 && decision.height == 1280)
    }

    @Test func sizesAreEvenAndNeverUpscaled() {
        #expect(TranscodePolicy.outputSize(width: 641, height: 361, maxShortEdge: 1080) == (640, 360))
        #expect(TranscodePolicy.outputSize(width: 320, height: 240, maxShortEdge: 1080) == (320, 240))
        #expect(TranscodePolicy.outputSize(width: 1998, height: 1080, maxShortEdge: 720) == (1332, 720))
        let odd = TranscodePolicy.outputSize(width: 1001, height: 3, maxShortEdge: 1080)
        #expect(odd.width <= 1001 && odd.height <= 3 && odd.width % 2 == 0 && odd.height % 2 == 0)
    }

    @Test func alwaysEncodesAndNeverDoesNothing() {
        let plain = Self.probe(Self.mp4, [Self.video("h264", 640, 360), Self.audio("aac")])
        var settings = TranscodeSettings()
        settings.mode = .always
        let always = TranscodePolicy.decide(plain, settings: settings)
        #expect(always.action == .transcode && always.videoAction == .encode && always.audioAction == .encode)
        settings.mode = .never
        let never = TranscodePolicy.decide(Self.probe("avi", [Self.video("mpeg4", 640, 360)]), settings: settings)
        #expect(never.action == .none)
        #expect(never.reason.contains("never"))
    }

    @Test func hdrIsToneMappedEvenInEightBitH264() {
        let decision = TranscodePolicy.decide(Self.probe(Self.mp4, [Self.video("h264", 1920, 1080, transfer: "arib-std-b67")]), settings: TranscodeSettings())
        #expect(decision.action == .transcode)
        #expect(decision.toneMap)
    }

    @Test func unplayableAudioAloneIsEncodedWhileVideoIsCopied() {
        let decision = TranscodePolicy.decide(Self.probe("matroska,webm", [Self.video("h264", 1280, 720), Self.audio("opus")]), settings: TranscodeSettings())
        #expect(decision.action == .transcode)
        #expect(decision.videoAction == .copy)
        #expect(decision.audioAction == .encode)
    }

    @Test func audioOnlyFollowsTheSameLogicIntoM4A() {
        let settings = TranscodeSettings()
        let flac = TranscodePolicy.decide(Self.probe("flac", [Self.audio("flac", index: 0)]), settings: settings)
        #expect(flac.action == .transcode && flac.container == .m4a && flac.audioAction == .encode)
        #expect(TranscodePolicy.decide(Self.probe("mp3", [Self.audio("mp3", index: 0)]), settings: settings).action == .none)
        let adts = TranscodePolicy.decide(Self.probe("aac", [Self.audio("aac", index: 0)]), settings: settings)
        #expect(adts.action == .remux && adts.container == .m4a)
    }

    @Test func subtitlesDataAndCoverArtAreDroppedByIndex() {
        var cover = Self.video("mjpeg", 300, 300, pixelFormat: "yuvj420p", index: 3)
        cover.isAttachedPicture = true
        let subtitle = StreamInfo(index: 2, kind: .subtitle, codecName: "subrip", rotation: 0, isHDR: false, isAttachedPicture: false, isDefault: false, tags: [:])
        let decision = TranscodePolicy.decide(Self.probe("matroska,webm", [Self.video("h264", 640, 360), Self.audio("aac"), subtitle, cover]),
                                              settings: TranscodeSettings())
        #expect(decision.videoStream == 0 && decision.audioStream == 1)
        #expect(decision.droppedStreams == [2, 3])
    }

    @Test func timeoutScalesWithDuration() {
        var settings = TranscodeSettings()
        settings.timeoutBase = .seconds(60)
        settings.timeoutPerSecond = 2
        #expect(settings.timeout(forDuration: 100) == .seconds(260))
        #expect(settings.timeout(forDuration: 0) == .seconds(60))
    }
}
