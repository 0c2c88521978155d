import Foundation
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How log lines are written: chosen with `--log-format` (or the configuration's log format).
public enum LoggingFormat: String, Sendable, CaseIterable {
    /// journald when stderr is the journal stream, text otherwise.
    case auto
    /// `<N>message key=value`: journald takes the priority from the prefix and adds the time.
    case journald
    /// `2026-11-27T08:09:24.123Z info [label] message key=value`, for a person at a terminal.
    case text
    /// One JSON object per line, for log shippers.
    case json

    /// The format actually used for a request, as a pure function of what the process sees.
    ///
    /// `auto` picks journald only when `JOURNAL_STREAM` names stderr's own device and inode, the
    /// check `sd_journal_stream_fd(3)` documents: the variable is inherited by children whose
    /// stderr was redirected (`medianest-worker status > out.txt` run from a unit's shell), and
    /// those must not get `<N>` prefixes.
    /// - Parameters:
    ///   - requested: The configured format.
    ///   - journalStream: `$JOURNAL_STREAM` (`"DEV:INODE"`, decimal), if set.
    ///   - standardError: stderr's device and inode, if `fstat` succeeded.
    /// - Returns: ``journald``, ``text`` or ``json``; never ``auto``.
    public static func resolve(requested: LoggingFormat, journalStream: String?, standardError: FileIdentity?) -> LoggingFormat {
        switch requested {
        case .journald, .text, .json:
            return requested
        case .auto:
            guard let journalStream, let standardError, let stream = FileIdentity(journalStream: journalStream) else { return .text }
            return stream == standardError ? .journald : .text
        }
    }

    /// ``resolve(requested:journalStream:standardError:)`` for this process: reads
    /// `JOURNAL_STREAM` and `fstat`s the descriptor the logs go to.
    public static func detect(requested: LoggingFormat,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              fileDescriptor: Int32 = STDERR_FILENO) -> LoggingFormat {
        resolve(requested: requested, journalStream: environment["JOURNAL_STREAM"], standardError: FileIdentity(fileDescriptor: fileDescriptor))
    }
}

/// A file's device and inode numbers, as `JOURNAL_STREAM` states them.
public struct FileIdentity: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// Parses `"DEV:INODE"`; `nil` when malformed.
    public init?(journalStream: String) {
        let parts = journalStream.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        self.init(device: device, inode: inode)
    }

    /// `fstat`s an open descriptor; `nil` when it is not open.
    public init?(fileDescriptor: Int32) {
        var info = stat()
        guard fstat(fileDescriptor, &info) == 0 else { return nil }
        self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}

/// A swift-log handler that writes one line per message in a ``LoggingFormat``.
///
/// Every format renders the metadata, so a line about a job carries `job_id`, `media_id`,
/// `job_type` and `attempt` (those four come first, in that order; the rest sorted). Control
/// characters in messages and values are escaped (`\n`, `\u{1B}`), so a file name or an error
/// text from a hostile file cannot forge a second log line or move a terminal's cursor.
///
/// Bootstrap it from the executable once the format is known:
/// ```swift
/// let format = LoggingFormat.detect(requested: .auto)
/// LoggingSystem.bootstrap { label in MediaNestLogHandler(label: label, format: format, level: .info) }
/// ```
public struct MediaNestLogHandler: LogHandler {
    /// Keys printed first, in this order, when present.
    public static let leadingKeys = ["job_id", "media_id", "job_type", "attempt"]

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    /// The logger's label (shown in text and JSON; journald has its own identifier).
    public let label: String
    /// ``LoggingFormat/journald``, ``LoggingFormat/text`` or ``LoggingFormat/json``.
    public let format: LoggingFormat
    private let output: LogOutput

    /// A handler writing to stderr.
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - format: The resolved format; ``LoggingFormat/auto`` is resolved here with ``LoggingFormat/detect(requested:environment:fileDescriptor:)``.
    ///   - level: The lowest level written.
    ///   - metadataProvider: Adds metadata to every line (task-local job context, for example).
    public init(label: String, format: LoggingFormat, level: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil) {
        self.init(label: label, format: format, level: level, metadataProvider: metadataProvider, output: .standardError)
    }

    /// A handler writing each finished line (newline included) to `write`; for tests and for
    /// writing somewhere other than stderr.
    public init(label: String, format: LoggingFormat, level: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil,
                write: @escaping @Sendable (String) -> Void) {
        self.init(label: label, format: format, level: level, metadataProvider: metadataProvider, output: .closure(write))
    }

    private init(label: String, format: LoggingFormat, level: Logger.Level, metadataProvider: Logger.MetadataProvider?, output: LogOutput) {
        self.label = label
        self.format = format == .auto ? LoggingFormat.detect(requested: .auto) : format
        self.logLevel = level
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error, merged["error"] == nil { merged["error"] = "\(error)" }
        let line = MediaNestLogHandler.render(format: format, level: event.level, label: label, message: "\(event.message)",
                                              metadata: merged, date: Date())
        output.write(line)
    }

    /// The `<N>` syslog priority journald reads for a level.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// One line, newline included. Pure, for tests.
    public static func render(format: LoggingFormat, level: Logger.Level, label: String, message: String,
                              metadata: Logger.Metadata, date: Date) -> String {
        let keys = orderedKeys(metadata)
        switch format {
        case .json:
            var fields: [(String, String)] = [
                ("ts", jsonString(timestamp(date))), ("level", jsonString(level.rawValue)),
                ("logger", jsonString(label)), ("msg", jsonString(message)),
            ]
            let reserved = Set(fields.map(\.0))
            for key in keys {
                // A metadata key named like a fixed field must not replace it.
                let name = reserved.contains(key) ? "meta_" + key : key
                fields.append((name, json(metadata[key]!)))
            }
            return "{" + fields.map { jsonString($0.0) + ":" + $0.1 }.joined(separator: ",") + "}\n"
        case .journald, .auto:
            // journald stamps the time and the unit itself.
            return "<\(syslogPriority(level))>" + escape(message) + keyValues(keys, metadata) + "\n"
        case .text:
            return timestamp(date) + " " + level.rawValue + " [" + escape(label) + "] " + escape(message) + keyValues(keys, metadata) + "\n"
        }
    }

    static func orderedKeys(_ metadata: Logger.Metadata) -> [String] {
        let leading = leadingKeys.filter { metadata[$0] != nil }
        return leading + metadata.keys.filter { !leadingKeys.contains($0) }.sorted()
    }

    static func keyValues(_ keys: [String], _ metadata: Logger.Metadata) -> String {
        keys.map { " " + escape($0) + "=" + quoteIfNeeded(text(metadata[$0]!)) }.joined()
    }

    static func text(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): "[" + values.map { text($0) }.joined(separator: ",") + "]"
        case .dictionary(let values): "{" + values.keys.sorted().map { "\($0)=\(text(values[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// Quotes a value holding spaces, quotes or `=` so that `key=value` stays parseable.
    static func quoteIfNeeded(_ value: String) -> String {
        let escaped = escape(value)
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "\"" || $0 == "=" }
        guard needsQuotes else { return escaped }
        return "\"" + escaped.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Escapes C0 and C1 control characters, DEL and the Unicode line and paragraph separators.
    /// A backslash is doubled first, so an escaped sequence cannot be confused with a literal one.
    /// (A shared escaping helper for log injection is being added to MediaNestCore; this one is
    /// private to the handler until then.)
    static func escape(_ string: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(string.unicodeScalars.count)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): jsonString(string)
        case .stringConvertible(let convertible): jsonString(convertible.description)
        case .array(let values): "[" + values.map { json($0) }.joined(separator: ",") + "]"
        case .dictionary(let values): "{" + values.keys.sorted().map { jsonString($0) + ":" + json(values[$0]!) }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal; every control character is escaped, and U+2028/2029 too, since
    /// some JavaScript-based log viewers treat them as line ends.
    static func jsonString(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// RFC 3339 in UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        let millis = Int((date.timeIntervalSince1970 - Double(seconds)) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), min(999, max(0, millis)))
    }
}

/// Where finished lines go. stderr is written with one `write(2)` per line under a lock, so
/// lines from different threads never interleave.
private enum LogOutput: Sendable {
    case standardError
    case closure(@Sendable (String) -> Void)

    func write(_ line: String) {
        switch self {
        case .closure(let body):
            body(line)
        case .standardError:
            standardErrorLock.withLock { _ in
                var bytes = Array(line.utf8)
                var offset = 0
                while offset < bytes.count {
                    let written = bytes.withUnsafeMutableBytes { Glibc.write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
                bytes.removeAll()
            }
        }
    }
}

private let standardErrorLock = Mutex<Void>(())
