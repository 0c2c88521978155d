import Foundation
public import MediaNestMedia

/// The `run` options that configure transcode jobs (``TranscodeSettings``), parsed in one place
/// for `medianest-worker run` and the test worker.
public enum TranscodeOptions {
    /// Options taking a value.
    public static let valueOptionNames: [String] = [
        "--transcode-mode", "--transcode-codec", "--transcode-crf", "--transcode-preset", "--transcode-max-resolution",
        "--transcode-max-bitrate", "--transcode-keyframe-interval", "--transcode-threads",
        "--transcode-timeout-base", "--transcode-timeout-factor",
    ]
    /// The flag that keeps location tags in renditions.
    public static let keepLocationFlag = "--transcode-keep-location"

    /// Builds the settings from `options` (name → text) over the defaults.
    /// - Throws: ``WorkerConfigurationError`` naming the bad option.
    public static func settings(_ options: [String: String], keepLocation: Bool) throws(WorkerConfigurationError) -> TranscodeSettings {
        var settings = TranscodeSettings()
        if let text = options["--transcode-mode"] {
            guard let mode = TranscodeSettings.Mode(rawValue: text) else {
                throw WorkerConfigurationError("--transcode-mode must be one of \(TranscodeSettings.Mode.allCases.map(\.rawValue).joined(separator: ", ")) (got \(text)).")
            }
            settings.mode = mode
        }
        if let text = options["--transcode-codec"] {
            guard let codec = TranscodeSettings.VideoCodec(rawValue: text) else {
                throw WorkerConfigurationError("--transcode-codec must be one of \(TranscodeSettings.VideoCodec.allCases.map(\.rawValue).joined(separator: ", ")) (got \(text)).")
            }
            settings.videoCodec = codec
        }
        if let text = options["--transcode-crf"] {
            guard let value = Int(text), (0...63).contains(value) else { throw WorkerConfigurationError("--transcode-crf must be 0 to 63 (got \(text)).") }
            settings.crf = value
        }
        if let text = options["--transcode-preset"] {
            guard !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber }) else { throw WorkerConfigurationError("--transcode-preset must be a preset name such as veryfast (got \(text)).") }
            settings.preset = text
        }
        if let text = options["--transcode-max-resolution"] { settings.maxResolution = try positive(text, "--transcode-max-resolution") }
        if let text = options["--transcode-max-bitrate"] { settings.maxBitrate = Int64(try positive(text, "--transcode-max-bitrate")) }
        if let text = options["--transcode-keyframe-interval"] { settings.keyframeInterval = try positive(text, "--transcode-keyframe-interval") }
        if let text = options["--transcode-threads"] { settings.threads = try positive(text, "--transcode-threads") }
        if let text = options["--transcode-timeout-base"] {
            guard let value = Double(text), value.isFinite, value >= 0 else { throw WorkerConfigurationError("--transcode-timeout-base must be seconds (got \(text)).") }
            settings.timeoutBase = .milliseconds(Int64(value * 1000))
        }
        if let text = options["--transcode-timeout-factor"] {
            guard let value = Double(text), value.isFinite, value > 0 else { throw WorkerConfigurationError("--transcode-timeout-factor must be a positive number (got \(text)).") }
            settings.timeoutPerSecond = value
        }
        settings.stripLocation = !keepLocation
        return settings
    }

    private static func positive(_ text: String, _ name: String) throws(WorkerConfigurationError) -> Int {
        guard let value = Int(text), value >= 1 else { throw WorkerConfigurationError("\(name) must be a whole number of at least 1 (got \(text)).") }
        return value
    }
}
