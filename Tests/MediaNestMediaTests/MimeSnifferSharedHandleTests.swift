import Foundation
import Synchronization
@testable import MediaNestMedia
import Testing

/// The process keeps one libmagic handle for every thread, so the compiled database is mapped
/// once however many pool threads sniff.
@Suite("libmagic handle")
struct MimeSnifferSharedHandleTests {
    /// Mappings of libmagic's compiled database in this process.
    ///
    /// Read with `read(2)` to the end: Foundation's `String(contentsOfFile:)` stops after the first
    /// 4 KiB of a /proc file (its size reads as 0), and the test process maps far more than that.
    func magicDatabaseMappings() throws -> Int {
        let fd = open("/proc/self/maps", O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 16)
        while case let count = read(fd, &chunk, chunk.count), count > 0 { bytes += chunk[..<count] }
        let maps = String(decoding: bytes, as: UTF8.self)
        return Set(maps.split(separator: "\n").filter { $0.hasSuffix(".mgc") }.map { $0.split(separator: " ")[0] }).count
    }

    @Test func threadsSniffingAtOnceShareOneMappingOfTheDatabaseAndEachGetsItsOwnAnswer() throws {
        let headers: [(bytes: [UInt8], mime: String)] = [
            ([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10] + Array("JFIF".utf8) + [0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00], "image/jpeg"),
            ([0x89] + Array("PNG\r\n".utf8) + [0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8) + [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0], "image/png"),
            (Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0], "image/gif"),
            (Array("fLaC".utf8) + [0, 0, 0, 34] + [UInt8](repeating: 0, count: 34), "audio/flac"),
        ]
        let threads = 4, rounds = 50
        let answers = Mutex<[[String]]>(Array(repeating: [], count: threads))
        let sniffed = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        for index in 0..<threads {
            // Threads of their own that stay alive until the mappings are counted: a handle per
            // thread would be mapped once per live thread.
            Thread {
                for round in 0..<rounds {
                    let header = headers[(index + round) % headers.count]
                    let mime = (try? MimeSniffer.sniff(header.bytes)) ?? "error"
                    answers.withLock { $0[index].append(mime == header.mime ? "ok" : "\(mime) for \(header.mime)") }
                }
                sniffed.signal()
                release.wait()
            }.start()
        }
        for _ in 0..<threads { sniffed.wait() }
        let mappings = try magicDatabaseMappings()
        for _ in 0..<threads { release.signal() }
        #expect(mappings == 1, "libmagic's database is mapped \(mappings) times by \(threads) live threads")
        let wrong = answers.withLock { $0.flatMap { $0 }.filter { $0 != "ok" } }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect(answers.withLock { $0.map(\.count) } == Array(repeating: rounds, count: threads))
    }
}
