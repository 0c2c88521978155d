import ArgumentParser
import Foundation
import Logging
import MediaNestCore
import MediaNestMedia

/// `medianest-worker transcode --output FILE INPUT`: the transcode job's policy and pipeline on a
/// local file, without a database (for operators and the benchmark).
struct TranscodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transcode",
        abstract: "Make a web-playable rendition of a local file, as a transcode job would, and print a JSON summary."
    )

    @Argument(help: "The source file.")
    var input: String

    @Option(help: "Where the rendition goes (written to a temporary file, fsynced and renamed).")
    var output: String

    @Option(help: "required, optimal, always or never (default: required).")
    var mode: String = TranscodeSettings().mode.rawValue
    @Option(help: "h264, hevc or av1 (default: h264).")
    var codec: String = TranscodeSettings().videoCodec.rawValue
    @Option(help: "Constant rate factor (default: 23).")
    var crf: Int = TranscodeSettings().crf
    @Option(help: "Encoder preset (default: veryfast).")
    var preset: String = TranscodeSettings().preset
    @Option(help: "Largest short edge in pixels (default: 1080).")
    var maxResolution: Int = TranscodeSettings().maxResolution
    @Option(help: "Peak video bit rate in bits per second (default: none).")
    var maxBitrate: Int64?
    @Option(help: "Frames between keyframes (default: the encoder's).")
    var keyframeInterval: Int?
    @Option(help: "Encoder and decoder threads (default: the cores).")
    var threads: Int?
    @Flag(help: "Keep location tags (stripped by default).")
    var keepLocation = false
    @Flag(help: "Log FFmpeg's warnings and the pipeline's notes to stderr.")
    var verbose = false

    func run() throws {
        var logger = Logger(label: "medianest.transcode")
        logger.logLevel = verbose ? .info : .error
        FFmpegLog.install(fallback: logger)
        var settings = TranscodeSettings()
        guard let mode = TranscodeSettings.Mode(rawValue: mode) else { throw ValidationError("--mode: required, optimal, always or never") }
        guard let codec = TranscodeSettings.VideoCodec(rawValue: codec) else { throw ValidationError("--codec: h264, hevc or av1") }
        settings.mode = mode
        settings.videoCodec = codec
        settings.crf = crf
        settings.preset = preset
        settings.maxResolution = maxResolution
        settings.maxBitrate = maxBitrate
        settings.keyframeInterval = keyframeInterval
        settings.threads = threads
        settings.stripLocation = !keepLocation

        let (root, name) = LocalFile.split(input)
        let (outputDirectory, outputName) = LocalFile.split(output)
        var line: [String: JSONValue] = ["file": .string(input)]
        do {
            let file = try SafeFile.open(relativePath: name, in: root)
            let cancellation = JobCancellation()
            let job = try TranscodeJob(file, settings: settings, cancellation: cancellation)
            let decision = job.decision
            line["action"] = .string(decision.action.rawValue)
            line["reason"] = .string(decision.reason)
            if decision.action != .none {
                let directory = try DerivedDirectory.open(derivedRoot: outputDirectory, components: [])
                let pending = try directory.createOutput(named: outputName)
                let result = try job.run(output: pending, logger: logger)
                try pending.commit()
                var rendition = result.json
                rendition["path"] = .string(output)
                rendition["elapsed"] = .double((result.elapsed * 1000).rounded() / 1000)
                rendition["video_frames"] = .int(Int64(result.videoFrames))
                rendition["skipped_packets"] = .int(Int64(result.skippedPackets))
                line["rendition"] = .object(rendition)
            }
            print(JSONValue.object(line).jsonText)
        } catch {
            line["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            print(JSONValue.object(line).jsonText)
            throw ExitCode(1)
        }
    }
}
