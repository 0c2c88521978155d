import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Synchronization
import Testing

/// Untrusted text (a `storage_path` with a newline or ESC) must not forge a log line, send
/// terminal escapes, or reach `processing_jobs` and notifications unescaped.
///
/// The escaping and the handler are MediaNestCore's; these tests live with the media tests
/// because the media module is where such paths enter, and they run its extractor on one.
@Suite("Control characters are escaped in logs and job errors")
struct ControlCharacterTests {
    /// A storage path that would forge a second, critical log line and clear the screen.
    static let hostilePath = "uploads/a.jpg\n2026-01-01T00:00:00+0000 critical medianest.worker: forged\u{1B}[2J\r"

    /// Collects what a `StreamLogHandler` writes, as the daemon's stderr would receive it.
    final class Output: TextOutputStream, Sendable {
        let text = Mutex("")
        func write(_ string: String) { text.withLock { $0 += string } }
        var lines: [Substring] { text.withLock { $0 }.split(separator: "\n", omittingEmptySubsequences: false).dropLast() }
    }

    struct PathError: Error, CustomStringConvertible {
        var description: String { "open failed for \(ControlCharacterTests.hostilePath)" }
    }

    static func hasControlCharacters(_ text: some StringProtocol) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    @Test func escapingKeepsTextReadable() {
        #expect("a\nb".escapingControlCharacters() == #"a\nb"#)
        #expect("a\r\tb".escapingControlCharacters() == #"a\r\tb"#)
        #expect("\u{1B}[31mred".escapingControlCharacters() == #"\u{1B}[31mred"#)
        #expect("nul\u{0}".escapingControlCharacters() == #"nul\u{00}"#)
        #expect("del\u{7F} csi\u{9B}".escapingControlCharacters() == #"del\u{7F} csi\u{9B}"#)
        #expect("line\u{2028}sep".escapingControlCharacters() == #"line\u{2028}sep"#)
        #expect("bidi\u{202E}txt.exe".escapingControlCharacters() == #"bidi\u{202E}txt.exe"#)
        let harmless = #"Fotos/Été 2024/日本 🎉 C:\path "quoted".jpg"#
        #expect(harmless.escapingControlCharacters() == harmless)
        #expect(!Self.hasControlCharacters(Self.hostilePath.escapingControlCharacters()))
    }

    @Test func jobErrorMessagesAreEscapedWhereverTheyAreSet() {
        var error = JobError(.corruptMedia, "The file \(Self.hostilePath) is damaged.")
        #expect(!Self.hasControlCharacters(error.message))
        #expect(error.message.contains(#"uploads/a.jpg\n2026"#))
        #expect(error.message.contains(#"forged\u{1B}[2J\r"#))
        #expect(error.json(attempt: 1)["message"]?.stringValue == error.message)
        error.message = "second\nline"
        #expect(error.message == #"second\nline"#)
        #expect(!Self.hasControlCharacters(JobError.wrapping(PathError()).message))
        #expect(!Self.hasControlCharacters(error.description))
    }

    @Test func aMediaErrorNamingAHostilePathIsEscaped() throws {
        let fixtures = try MediaFixtures.load()
        let error = jobError { () throws(JobError) in _ = try extract(fixtures, Self.hostilePath) }
        #expect(error?.code == .fileMissing)
        #expect(error.map { !Self.hasControlCharacters($0.message) } == true, "\(String(describing: error?.message))")
    }

    func logEverything(to logger: Logger) {
        var logger = logger
        logger[metadataKey: "storage_path"] = .string(Self.hostilePath)
        logger.error("cannot open \(Self.hostilePath)", error: PathError(),
                     metadata: ["file": "\(Self.hostilePath)",
                                "nested": ["list": [.string("\u{1B}]0;title\u{07}"), .stringConvertible(Self.hostilePath)]],
                                "key\nforged=1": "value"])
    }

    @Test func aStreamHandlerWithoutTheWrapperIsForgeable() {
        // The control: the same calls through the plain handler do forge lines.
        let output = Output()
        logEverything(to: Logger(label: "medianest.test") { StreamLogHandler(label: $0, stream: output) })
        #expect(output.lines.count > 1)
    }

    @Test func theSanitizingHandlerWritesOneCleanLinePerEvent() {
        let output = Output()
        let provider = Logger.MetadataProvider { ["provided": .string("p\u{1B}q")] }
        logEverything(to: Logger(label: "medianest.test") {
            SanitizingLogHandler(StreamLogHandler(label: $0, stream: output, metadataProvider: provider))
        })
        let lines = output.lines
        #expect(lines.count == 1)
        let line = String(lines.first ?? "")
        #expect(!Self.hasControlCharacters(line), "\(line.debugDescription)")
        #expect(line.contains(#"cannot open uploads/a.jpg\n2026-01-01T00:00:00+0000 critical"#))
        #expect(line.contains(#"storage_path=uploads/a.jpg\n"#))
        // Nested values are printed by swift-log as Swift literals, which double the backslash.
        #expect(line.contains(#"\\u{1B}]0;title\\u{07}"#))
        #expect(line.contains(#"key\nforged=1=value"#))
        #expect(line.contains(#"provided=p\u{1B}q"#))
        #expect(line.contains(#"error.message=open failed for uploads/a.jpg\n"#))
    }

    @Test func theWrapperKeepsLevelAndMetadataOfTheWrappedHandler() {
        var handler = SanitizingLogHandler(StreamLogHandler(label: "x", stream: Output()))
        handler.logLevel = .debug
        #expect(handler.wrapped.logLevel == .debug)
        handler[metadataKey: "media_id"] = "m\n1"
        #expect(handler[metadataKey: "media_id"] == .string(#"m\n1"#))
        handler.metadata = ["job_id": "j\u{1B}"]
        #expect(handler.metadata == ["job_id": .string(#"j\u{1B}"#)])
    }
}
