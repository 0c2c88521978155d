import Foundation

/// One line of import progress: `[#####-----]  1,234/10,000 files  12.3 MB  850 files/s  ETA 10s`.
public enum ProgressLine {
    /// Renders the line.
    /// - Parameters:
    ///   - done: Files processed.
    ///   - total: Files in total.
    ///   - bytes: Bytes processed.
    ///   - totalBytes: Bytes in total.
    ///   - elapsed: Seconds since the start.
    ///   - width: Bar width in characters; 0 for no bar (plain log lines).
    public static func render(done: Int, total: Int, bytes: Int64, totalBytes: Int64, elapsed: Double, width: Int) -> String {
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        var parts: [String] = []
        if width > 0 {
            let filled = min(width, Int((fraction * Double(width)).rounded(.down)))
            parts.append("[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "]")
        }
        parts.append("\(done)/\(total) files (\(Int((fraction * 100).rounded(.down)))%)")
        parts.append(ByteCountFormatter.string(fromByteCount: bytes, countStyle: .file))
        if elapsed > 0.05 && done > 0 {
            let rate = Double(done) / elapsed
            parts.append(rate >= 10 ? "\(Int(rate)) files/s" : String(format: "%.1f files/s", rate))
            if done < total {
                // Bytes predict better than files when sizes vary; use whichever is known.
                let remaining = totalBytes > 0 && bytes > 0
                    ? elapsed * Double(totalBytes - bytes) / Double(bytes)
                    : Double(total - done) / rate
                parts.append("ETA \(duration(remaining))")
            } else {
                parts.append("in \(duration(elapsed))")
            }
        }
        return parts.joined(separator: "  ")
    }

    /// `45s`, `3m05s`, `2h10m`.
    public static func duration(_ seconds: Double) -> String {
        let value = Int(max(0, seconds).rounded(.up))
        if value < 60 { return "\(value)s" }
        if value < 3600 { return String(format: "%dm%02ds", value / 60, value % 60) }
        return String(format: "%dh%02dm", value / 3600, value % 3600 / 60)
    }
}
