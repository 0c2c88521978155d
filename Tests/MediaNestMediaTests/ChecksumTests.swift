import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("Checksums match coreutils and stop when asked")
struct ChecksumTests {
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    static let corpus = [
        MediaFixtures.Name.plainJPEG, MediaFixtures.Name.png8, MediaFixtures.Name.png16Alpha, MediaFixtures.Name.gif,
        MediaFixtures.Name.webp, MediaFixtures.Name.plainMP4, MediaFixtures.Name.rotatedMP4, MediaFixtures.Name.hevc10MKV,
        MediaFixtures.Name.vp9WebM, MediaFixtures.Name.taggedMP3, MediaFixtures.Name.flac, MediaFixtures.Name.truncatedMP4,
        MediaFixtures.Name.randomBytes, MediaFixtures.Name.textAsJPEG, MediaFixtures.Name.zipAsPNG,
        MediaFixtures.Name.exifJPEG(orientation: 6),
    ]

    static func coreutils(_ tool: String, _ path: String) throws -> String {
        let output = try ProcessRunner.run("/usr/bin/env", [tool, path])
        try #require(output.status == 0, "\(tool) failed: \(output.stderr)")
        return String(output.stdout.split(separator: " ").first ?? "")
    }

    @Test(arguments: corpus)
    func checksumsEqualMd5sumAndSha256sum(name: String) throws {
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        let sums = try Checksummer.compute(file)
        #expect(sums.md5 == (try Self.coreutils("md5sum", fixtures.path(name))))
        #expect(sums.sha256 == (try Self.coreutils("sha256sum", fixtures.path(name))))
        #expect(sums.bytesRead == file.size)
    }

    @Test func smallBuffersGiveTheSameDigestsAsLargeOnes() throws {
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.rotatedMP4, in: fixtures.root)
        let small = try Checksummer.compute(file, bufferSize: 4096)
        let large = try Checksummer.compute(file)
        #expect(small == large)
    }

    @Test func progressEndsAtTheWholeFile() throws {
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.vp9WebM, in: fixtures.root)
        let progress = JobProgress()
        _ = try Checksummer.compute(file, progress: progress, bufferSize: 4096)
        let snapshot = try #require(progress.current.snapshot)
        #expect(snapshot.stage == "hashing")
        #expect(snapshot.fraction == 1)
        #expect(progress.current.version > 2)
    }

    @Test func pastDeadlineFailsWithTimeout() throws {
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.plainMP4, in: fixtures.root)
        let cancellation = JobCancellation(timeout: .zero)
        let error = jobError { () throws(JobError) in _ = try Checksummer.compute(file, cancellation: cancellation) }
        #expect(error?.code == .timeout)
    }

    @Test func operatorCancellationFailsWithCancelled() throws {
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.plainMP4, in: fixtures.root)
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        let error = jobError { () throws(JobError) in _ = try Checksummer.compute(file, cancellation: cancellation) }
        #expect(error?.code == .cancelled)
    }

    @Test func sparseFileLargerThan4GiBHashesLikeCoreutils() throws {
        let directory = try fixtures.makeScratchDirectory("sparse")
        let path = directory + "/big.bin"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size: UInt64 = (4 << 30) + 4096
        try #require(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data("head of a sparse file".utf8))
        try handle.truncate(atOffset: size)
        try handle.seek(toOffset: size - 10)
        try handle.write(contentsOf: Data("tail bytes".utf8))
        try handle.close()

        let file = try SafeFile.open(relativePath: "big.bin", in: directory)
        #expect(file.size == Int64(size))
        let sums = try Checksummer.compute(file)
        #expect(sums.bytesRead == Int64(size))
        #expect(sums.md5 == (try Self.coreutils("md5sum", path)))
        #expect(sums.sha256 == (try Self.coreutils("sha256sum", path)))
    }
}
