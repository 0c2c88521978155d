import MediaNestMedia
import MediaNestWorker
import Testing

/// `run`'s `--transcode-*` options through the shared parser (the test worker's and, via
/// RawOptions, the production CLI's).
@Suite("transcode options")
struct TranscodeOptionsTests {
    @Test func optionsReachTheTranscodeSettings() throws {
        let configuration = try WorkerArguments.parse([
            "--transcode-mode", "optimal", "--transcode-codec=hevc", "--transcode-crf", "28", "--transcode-preset", "fast",
            "--transcode-max-resolution", "720", "--transcode-max-bitrate", "4000000", "--transcode-keyframe-interval", "60",
            "--transcode-threads", "3", "--transcode-timeout-base", "30", "--transcode-timeout-factor", "2.5", "--transcode-keep-location",
        ], environment: [:])
        let settings = configuration.transcode
        #expect(settings.mode == .optimal)
        #expect(settings.videoCodec == .hevc)
        #expect(settings.crf == 28 && settings.preset == "fast")
        #expect(settings.maxResolution == 720 && settings.maxBitrate == 4_000_000 && settings.keyframeInterval == 60)
        #expect(settings.threads == 3)
        #expect(settings.timeout(forDuration: 10) == .seconds(55))
        #expect(!settings.stripLocation)
    }

    @Test func defaultsAreTheDocumentedOnes() throws {
        let settings = try WorkerArguments.parse([], environment: [:]).transcode
        #expect(settings == TranscodeSettings())
        #expect(settings.mode == .required && settings.videoCodec == .h264 && settings.crf == 23 && settings.preset == "veryfast")
        #expect(settings.stripLocation)
    }

    @Test func badValuesNameTheOption() {
        for (option, value) in [("--transcode-mode", "sometimes"), ("--transcode-codec", "vp8"), ("--transcode-crf", "99"),
                                ("--transcode-preset", "very fast;rm"), ("--transcode-max-resolution", "0")] {
            do {
                _ = try WorkerArguments.parse([option, value], environment: [:])
                Issue.record("\(option) \(value) was accepted")
            } catch {
                #expect(error.message.contains(option), "\(error.message)")
            }
        }
    }
}
