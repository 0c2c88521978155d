import Foundation
public import Logging
import MediaNestCore
import MediaNestMedia
import Synchronization

/// How the test process logs: one bootstrap, one level, one capturing handler.
///
/// A passing test prints nothing but its name. Every logger of the test process (the tests' own,
/// and those the libraries make with a default `Logger(label:)`) writes to stderr at
/// ``level``, which `MEDIANEST_TEST_LOG` sets (`trace` … `critical`; default `critical`, so
/// only critical lines are printed), escaped as the daemon escapes its own (``SanitizingLogHandler``). FFmpeg's own log goes through the same loggers and follows
/// the level too (see ``bootstrap()``).
///
/// To see what a failing test logged, run it again with the level lowered:
///
///     MEDIANEST_TEST_LOG=debug bash scripts/test.sh --filter TheFailingTest
///
/// Tests that assert on log lines use a ``CapturedLog`` instead: its logger keeps every line
/// whatever the level, and the test puts ``CapturedLog/text`` into its failure message.
public enum TestLogging {
    /// The level of every bootstrapped logger: `MEDIANEST_TEST_LOG`, else `.critical`.
    public static let level: Logger.Level = level(named: ProcessInfo.processInfo.environment["MEDIANEST_TEST_LOG"])

    /// The level a `MEDIANEST_TEST_LOG` value names: a swift-log level name in any case;
    /// `.critical` for nothing, an empty value or an unknown name.
    public static func level(named name: String?) -> Logger.Level {
        guard let name, let level = Logger.Level(rawValue: name.lowercased().trimmingCharacters(in: .whitespaces)) else { return .critical }
        return level
    }

    /// Bootstraps swift-log for the test process (once; later calls do nothing).
    ///
    /// It runs when the test binary loads (see `bootstrapTestLoggingAtLoad`), before any test
    /// makes a logger, and again, harmlessly, from ``logger(_:)``.
    ///
    /// FFmpeg: its callback is installed now (FFmpeg's default callback would write to stderr
    /// directly), and `av_log_set_level` follows ``level`` but never above errors, so that the
    /// tests that capture FFmpeg's error lines still receive them; the loggers at ``level`` drop
    /// them.
    public static func bootstrap() { _ = bootstrapped }

    private static let bootstrapped: Void = {
        let level = TestLogging.level
        LoggingSystem.bootstrap { label in
            var handler = SanitizingLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        FFmpegLog.install(fallback: Logger(label: "medianest.ffmpeg"))
        FFmpegLog.setLevel(min(level, .error))
    }()

    /// A logger at ``level``, for code under test that needs one.
    /// - Parameter label: The logger's label.
    public static func logger(_ label: String = "medianest.tests") -> Logger {
        bootstrap()
        return Logger(label: label)
    }
}

#if os(Linux) && compiler(>=6.3)
/// Bootstraps the test process's logging when the test binary loads (an ELF initialiser), so
/// that no logger is made before it: Swift Testing has no hook that runs before every test.
@used @section(".init_array")
let bootstrapTestLoggingAtLoad: @convention(c) () -> Void = { TestLogging.bootstrap() }
#endif

/// Keeps every line logged through its ``logger(label:level:)``, for tests that assert on log
/// lines, and gives them back as text for a failure message.
///
///     let log = CapturedLog()
///     try runSomething(logger: log.logger())
///     #expect(log.matching("rescued").count == 1, "log:\n\(log.text)")
///
/// Lines go only here, never to stderr: a passing test stays quiet.
public final class CapturedLog: Sendable {
    /// One logged line.
    public struct Line: Sendable {
        /// The logger's label.
        public var label: String
        /// The line's level.
        public var level: Logger.Level
        /// The message.
        public var message: String
        /// The logger's metadata merged with the line's, values as text.
        public var metadata: [String: String]
    }

    private let lines = Mutex<[Line]>([])

    public init() {}

    /// Every line so far, in the order logged.
    public var all: [Line] { lines.withLock { $0 } }

    /// The messages of every line so far.
    public var messages: [String] { all.map(\.message) }

    /// The lines whose message contains `text` (and, when given, whose `job_id` is `jobID`).
    public func matching(_ text: String, jobID: String? = nil) -> [Line] {
        all.filter { $0.message.contains(text) && (jobID == nil || $0.metadata["job_id"] == jobID) }
    }

    /// The levels of the lines whose message contains `text`.
    public func levels(containing text: String) -> [Logger.Level] {
        matching(text).map(\.level)
    }

    /// Every line as `[level] message key=value…` (keys sorted), one a line, for a failure message.
    public var text: String {
        all.map { line in
            (["[\(line.level)] \(line.message)"] + line.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
                .joined(separator: " ")
        }.joined(separator: "\n")
    }

    /// A logger whose lines from `level` up come here.
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - level: The lowest level kept.
    public func logger(label: String = "medianest.tests", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { label in Handler(log: self, label: label) }
        logger.logLevel = level
        return logger
    }

    func append(_ line: Line) { lines.withLock { $0.append(line) } }

    private struct Handler: LogHandler {
        let log: CapturedLog
        let label: String
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            log.append(Line(label: label, level: event.level, message: event.message.description, metadata: merged.mapValues { "\($0)" }))
        }
    }
}
