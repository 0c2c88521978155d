import Foundation
import MediaNestMedia
import MediaNestWorker
import Testing

/// `run`'s transcode settings through the shared settings table: flags, environment, file.
@Suite("transcode options")
struct TranscodeOptionsTests {
    @Test func optionsReachTheTranscodeSettings() async throws {
        let configuration = try await WorkerArguments.parse([
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

    @Test func defaultsAreTheDocumentedOnes() async throws {
        let settings = try await WorkerArguments.parse([], environment: [:]).transcode
        #expect(settings == TranscodeSettings())
        #expect(settings.mode == .required && settings.videoCodec == .h264 && settings.crf == 23 && settings.preset == "veryfast")
        #expect(settings.stripLocation)
    }

    @Test func badValuesNameTheOption() async {
        for (option, value) in [("--transcode-mode", "sometimes"), ("--transcode-codec", "vp8"), ("--transcode-crf", "99"),
                                ("--transcode-preset", "very fast;rm"), ("--transcode-max-resolution", "0")] {
            do {
                _ = try await WorkerArguments.parse([option, value], environment: [:])
                Issue.record("\(option) \(value) was accepted")
            } catch {
                #expect(error.message.contains(option), "\(error.message)")
            }
        }
    }
}

@Suite("transcode settings from the file and the environment")
struct TranscodeFileSettingsTests {
    @Test func theFileSetsThePolicyAndTheEnvironmentAndFlagsWinOverIt() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("transcode-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("worker.yaml").path
        try """
            transcode:
              mode: optimal
              codec: hevc
              crf: 26
              keep_location: true
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try await WorkerArguments.parse(["--config", file], environment: [:]).transcode
        #expect(fromFile.mode == .optimal && fromFile.videoCodec == .hevc && fromFile.crf == 26 && !fromFile.stripLocation)
        let overridden = try await WorkerArguments.parse(["--config", file, "--transcode-crf", "30"],
                                                         environment: ["MEDIANEST_TRANSCODE_MODE": "always", "MEDIANEST_TRANSCODE_CRF": "28"]).transcode
        #expect(overridden.mode == .always, "the environment beats the file")
        #expect(overridden.crf == 30, "a flag beats the environment")
        #expect(overridden.videoCodec == .hevc)

        try "transcode:\n  crf: 99\n".write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try await WorkerArguments.parse(["--config", file], environment: [:])
            Issue.record("crf 99 was accepted")
        } catch {
            #expect(error.message.contains("transcode.crf") && error.message.contains(file), "\(error.message)")
        }
    }
}
