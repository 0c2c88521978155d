import Foundation
import Logging
import MediaNestSystemd
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("log formats")
struct LogFormatTests {
    let date = Date(timeIntervalSince1970: 1_795_766_964.125)  // 2026-11-27T08:09:24.125Z
    let jobMetadata: Logger.Metadata = ["attempt": "2", "job_type": "thumbnail", "media_id": "m-1", "job_id": "j-1", "bytes": "1024"]

    @Test func journaldLinesCarryTheSyslogPriorityAndNoTimestamp() {
        let expected: [(Logger.Level, Int)] = [(.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2)]
        for (level, priority) in expected {
            #expect(MediaNestLogHandler.syslogPriority(level) == priority)
        }
        let line = MediaNestLogHandler.render(format: .journald, level: .warning, label: "medianest.worker", message: "job failed",
                                              metadata: jobMetadata, date: date)
        #expect(line == "<4>job failed job_id=j-1 media_id=m-1 job_type=thumbnail attempt=2 bytes=1024\n")
    }

    @Test func textLinesAreForPeople() {
        let line = MediaNestLogHandler.render(format: .text, level: .info, label: "medianest.worker", message: "job finished",
                                              metadata: jobMetadata.merging(["file": "My Holiday.mp4", "note": ""]) { $1 }, date: date)
        #expect(line == "2026-11-27T08:09:24.125Z info [medianest.worker] job finished job_id=j-1 media_id=m-1 job_type=thumbnail attempt=2 bytes=1024 file=\"My Holiday.mp4\" note=\"\"\n")
    }

    @Test func jsonLinesParseAndKeepFixedFields() throws {
        let metadata = jobMetadata.merging(["msg": "spoof", "tags": ["a", "b"], "size": ["w": "64", "h": "32"]]) { $1 }
        let line = MediaNestLogHandler.render(format: .json, level: .error, label: "medianest.worker", message: "bad \"file\"\n",
                                              metadata: metadata, date: date)
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false, "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ts"] as? String == "2026-11-27T08:09:24.125Z")
        #expect(object["level"] as? String == "error")
        #expect(object["logger"] as? String == "medianest.worker")
        #expect(object["msg"] as? String == "bad \"file\"\n")
        #expect(object["meta_msg"] as? String == "spoof", "metadata cannot replace a fixed field")
        #expect(object["job_id"] as? String == "j-1")
        #expect(object["media_id"] as? String == "m-1")
        #expect(object["job_type"] as? String == "thumbnail")
        #expect(object["attempt"] as? String == "2")
        #expect(object["tags"] as? [String] == ["a", "b"])
        #expect((object["size"] as? [String: String]) == ["w": "64", "h": "32"])
    }

    @Test func controlCharactersCannotForgeLines() throws {
        let hostile = "evil.mp4\n<0>kernel panic\u{1B}[31m\r\u{85}\u{2028}\\n"
        let journald = MediaNestLogHandler.render(format: .journald, level: .info, label: "l", message: "opened \(hostile)",
                                                  metadata: ["file": .string(hostile)], date: date)
        #expect(journald.split(separator: "\n").count == 1)
        let escaped = #"evil.mp4\n<0>kernel panic\u{1B}[31m\r\u{85}\u{2028}\\n"#
        #expect(journald == "<6>opened " + escaped + " file=\"" + escaped + "\"\n")
        let text = MediaNestLogHandler.render(format: .text, level: .info, label: "l\nx", message: hostile, metadata: [:], date: date)
        #expect(!text.dropLast().contains("\n"))
        #expect(!text.contains("\u{1B}"))
        #expect(text.contains("[l\\nx]"))
        let json = MediaNestLogHandler.render(format: .json, level: .info, label: "l", message: hostile, metadata: ["f": .string(hostile)], date: date)
        #expect(!json.dropLast().contains("\n"))
        #expect(json.contains("\\u001b[31m"))
        #expect(json.contains("\\u0085"))
        #expect(json.contains("\\u2028"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["msg"] as? String == hostile, "JSON escaping is lossless")
        #expect(object["f"] as? String == hostile)
    }

    @Test func handlerMergesLoggerMetadataProviderAndCallSiteAndFiltersByLevel() {
        let lines = Mutex<[String]>([])
        let provider = Logger.MetadataProvider { ["worker_id": "host:1:a"] }
        var logger = Logger(label: "medianest.test") { label in
            MediaNestLogHandler(label: label, format: .journald, level: .info, metadataProvider: provider) { line in lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "job_id"] = "j-9"
        logger.debug("not written")
        logger.notice("claimed", metadata: ["media_id": "m-9", "job_id": "j-10"])
        struct Failure: Error, CustomStringConvertible { var description: String { "disk full" } }
        logger.error("write failed", error: Failure())
        #expect(lines.withLock { $0 } == [
            "<5>claimed job_id=j-10 media_id=m-9 worker_id=host:1:a\n",
            "<3>write failed job_id=j-9 error=\"disk full\" worker_id=host:1:a\n",
        ])
    }

    @Test func autoPicksJournaldOnlyWhenStderrIsTheJournalStream() throws {
        let stream = FileIdentity(device: 64769, inode: 123_456)
        #expect(LoggingFormat.resolve(requested: .auto, journalStream: "64769:123456", standardError: stream) == .journald)
        #expect(LoggingFormat.resolve(requested: .auto, journalStream: "64769:999", standardError: stream) == .text,
                "inherited JOURNAL_STREAM, stderr redirected elsewhere")
        #expect(LoggingFormat.resolve(requested: .auto, journalStream: nil, standardError: stream) == .text)
        #expect(LoggingFormat.resolve(requested: .auto, journalStream: "garbage", standardError: stream) == .text)
        #expect(LoggingFormat.resolve(requested: .auto, journalStream: "64769:123456", standardError: nil) == .text)
        #expect(LoggingFormat.resolve(requested: .json, journalStream: "64769:123456", standardError: stream) == .json)
        #expect(LoggingFormat.resolve(requested: .text, journalStream: "64769:123456", standardError: stream) == .text)
        #expect(LoggingFormat.resolve(requested: .journald, journalStream: nil, standardError: nil) == .journald)
        #expect(LoggingFormat(rawValue: "json") == .json)
        #expect(LoggingFormat(rawValue: "xml") == nil)
    }

    @Test func detectComparesWithTheRealDescriptor() throws {
        let path = NSTemporaryDirectory() + "mn-journal-\(UUID().uuidString.prefix(8))"
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        var info = stat()
        try #require(fstat(fd, &info) == 0)
        let matching = "\(info.st_dev):\(info.st_ino)"
        #expect(LoggingFormat.detect(requested: .auto, environment: ["JOURNAL_STREAM": matching], fileDescriptor: fd) == .journald)
        #expect(LoggingFormat.detect(requested: .auto, environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"], fileDescriptor: fd) == .text)
        #expect(LoggingFormat.detect(requested: .auto, environment: ["JOURNAL_STREAM": matching], fileDescriptor: -1) == .text)
    }
}
