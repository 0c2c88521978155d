import Foundation
public import MediaNestMedia

/// Parses the values of the transcode settings (`--transcode-*`, `MEDIANEST_TRANSCODE_*` and the
/// configuration file's `transcode.*` keys) into ``TranscodeSettings``, one value at a time, for
/// the rows of the settings table (`WorkerSettings`).
public enum TranscodeOptions {
    /// The settings' keys under `transcode.` in the file; each is also a `--transcode-<key>` flag
    /// (underscores become dashes).
    public static let keys = ["mode", "codec", "crf", "preset", "max_resolution", "max_bitrate", "keyframe_interval", "threads",
                              "timeout_base", "timeout_factor", "keep_location"]

    /// Applies one value.
    /// - Parameters:
    ///   - key: One of ``keys``.
    ///   - text: The value as given.
    ///   - name: How to name the value in a message (`--transcode-crf`, `transcode.crf in worker.yaml`).
    ///   - settings: The settings to change.
    /// - Throws: ``WorkerConfigurationError`` naming the bad value.
    public static func apply(key: String, text: String, name: String, to settings: inout TranscodeSettings) throws(WorkerConfigurationError) {
        let text = text.trimmingCharacters(in: .whitespaces)
        switch key {
        case "mode":
            guard let mode = TranscodeSettings.Mode(rawValue: text) else {
                throw WorkerConfigurationError("\(name) must be one of \(TranscodeSettings.Mode.allCases.map(\.rawValue).joined(separator: ", ")) (got \(text)).")
            }
            settings.mode = mode
        case "codec":
            guard let codec = TranscodeSettings.VideoCodec(rawValue: text) else {
                throw WorkerConfigurationError("\(name) must be one of \(TranscodeSettings.VideoCodec.allCases.map(\.rawValue).joined(separator: ", ")) (got \(text)).")
            }
            settings.videoCodec = codec
        case "crf":
            guard let value = Int(text), (0...63).contains(value) else { throw WorkerConfigurationError("\(name) must be 0 to 63 (got \(text)).") }
            settings.crf = value
        case "preset":
            guard !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber }) else {
                throw WorkerConfigurationError("\(name) must be a preset name such as veryfast (got \(text)).")
            }
            settings.preset = text
        case "max_resolution": settings.maxResolution = try positive(text, name)
        case "max_bitrate": settings.maxBitrate = Int64(try positive(text, name))
        case "keyframe_interval": settings.keyframeInterval = try positive(text, name)
        case "threads": settings.threads = try positive(text, name)
        case "timeout_base":
            guard let value = Double(text), value.isFinite, value >= 0 else { throw WorkerConfigurationError("\(name) must be seconds (got \(text)).") }
            settings.timeoutBase = .milliseconds(Int64(value * 1000))
        case "timeout_factor":
            guard let value = Double(text), value.isFinite, value > 0 else { throw WorkerConfigurationError("\(name) must be a positive number (got \(text)).") }
            settings.timeoutPerSecond = value
        case "keep_location":
            switch text.lowercased() {
            case "true", "yes", "on", "1": settings.stripLocation = false
            case "false", "no", "off", "0": settings.stripLocation = true
            default: throw WorkerConfigurationError("\(name) must be true or false (got \(text)).")
            }
        default:
            throw WorkerConfigurationError("\(name): unknown transcode setting; known: \(keys.joined(separator: ", ")).")
        }
    }

    /// The effective value of one setting, for `config show`.
    public static func current(key: String, of settings: TranscodeSettings) -> String? {
        switch key {
        case "mode": settings.mode.rawValue
        case "codec": settings.videoCodec.rawValue
        case "crf": String(settings.crf)
        case "preset": settings.preset
        case "max_resolution": String(settings.maxResolution)
        case "max_bitrate": settings.maxBitrate.map(String.init)
        case "keyframe_interval": settings.keyframeInterval.map(String.init)
        case "threads": settings.threads.map(String.init)
        case "timeout_base": String(Double(settings.timeoutBase.components.seconds) + Double(settings.timeoutBase.components.attoseconds) / 1e18)
        case "timeout_factor": String(settings.timeoutPerSecond)
        case "keep_location": String(!settings.stripLocation)
        default: nil
        }
    }

    private static func positive(_ text: String, _ name: String) throws(WorkerConfigurationError) -> Int {
        guard let value = Int(text), value >= 1 else { throw WorkerConfigurationError("\(name) must be a whole number of at least 1 (got \(text)).") }
        return value
    }
}
