import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Synchronization
import Testing

@Suite("MIME sniffing records mismatches between media types and refuses non-media")
struct MimeTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    @Test func differentMediaTypeThanDeclaredIsRecordedNotRefused() throws {
        let result = try extract(fixtures, Name.rotatedMP4, declared: "video/quicktime")
        #expect(result.mimeSniffed == "video/mp4")
        #expect(!result.mimeDeclaredMatches)
        #expect(result.summary["mime_declared_matches"] == false)
    }

    @Test func webpDeclaredAsJPEGProceeds() throws {
        let result = try extract(fixtures, Name.webp, declared: "image/jpeg")
        #expect(result.mimeSniffed == "image/webp")
        #expect(!result.mimeDeclaredMatches)
        #expect(result.kind == .image)
    }

    @Test func aliasesOfTheSameTypeMatch() throws {
        #expect(try extract(fixtures, Name.plainJPEG, declared: "image/jpg").mimeDeclaredMatches)
        #expect(try extract(fixtures, Name.taggedMP3, declared: "audio/mp3").mimeDeclaredMatches)
        #expect(try extract(fixtures, Name.vp9WebM, declared: "video/webm; codecs=vp9").mimeDeclaredMatches)
    }

    @Test(arguments: [
        ("image/jpeg", MimeClass.image), ("video/mp4", .video), ("audio/flac", .audio), ("application/ogg", .audio),
        ("application/octet-stream", .unknown), ("text/plain", .notMedia), ("application/zip", .notMedia),
        ("application/x-executable", .notMedia), ("audio/x-mpegurl", .playlist), ("application/vnd.apple.mpegurl", .playlist),
        ("application/vnd.rn-realmedia", .video),
    ])
    func classification(mime: String, expected: MimeClass) {
        #expect(MimeSniffer.classify(mime) == expected)
    }

    @Test func sniffingUsesContentNotNames() throws {
        let file = try SafeFile.open(relativePath: Name.textAsJPEG, in: fixtures.root)
        #expect(try MimeSniffer.sniff(file.read(at: 0, count: MimeSniffer.headerSize)) == "text/plain")
        let png = try SafeFile.open(relativePath: Name.png16Alpha, in: fixtures.root)
        #expect(try MimeSniffer.sniff(png.read(at: 0, count: 4096)) == "image/png")
    }

    @Test func sniffingWorksOnManyThreadsAtOnce() throws {
        let header = try SafeFile.open(relativePath: Name.png8, in: fixtures.root).read(at: 0, count: 4096)
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            results.append((try? MimeSniffer.sniff(header)) ?? "error")
        }
        #expect(results.values == Array(repeating: "image/png", count: 16))
    }

    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [String] = []
        func append(_ value: String) { lock.withLock { stored.append(value) } }
        var values: [String] { lock.withLock { stored } }
    }
}

@Suite("FFmpeg's log goes to the job's logger")
struct FFmpegLogTests {
    @Test func ffmpegErrorsReachTheJobLoggerTaggedAsFFmpeg() throws {
        let fixtures = try MediaFixtures.load()
        let log = CapturedLog()
        let error = jobError { () throws(JobError) in _ = try extract(fixtures, MediaFixtures.Name.truncatedMP4, logger: log.logger()) }
        #expect(error?.code == .corruptMedia)
        let ffmpegLines = log.all.filter { $0.metadata["source"] == "ffmpeg" }.map(\.message)
        #expect(ffmpegLines.contains { $0.contains("moov atom not found") }, "\(ffmpegLines)")
        #expect(error?.message.contains("Invalid data") == true, "FFmpeg's error text, not a number: \(error?.message ?? "")")
    }
}
