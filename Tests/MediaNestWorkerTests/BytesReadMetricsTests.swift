import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// What `medianest_bytes_read_total{type}` is made of: the bytes a run's readers take from its
/// media file, counted in the run's ``ByteCounter`` (the runtime adds it to the metric).
@Suite("bytes read metrics: a run counts what it reads from its media file")
struct BytesReadMetricsTests {
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    func fileSize(_ path: String) throws -> Int64 {
        Int64(try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int))
    }

    func context(_ type: JobType, path: String, mime: String, root: String) -> JobContext {
        let job = ClaimedJob(id: UUID().uuidString, mediaItemID: UUID().uuidString.lowercased(), type: type, attempt: 1, maxAttempts: 3,
                             priority: 0, input: [:])
        let item = MediaItemRecord(id: job.mediaItemID, ownerID: "owner", filename: path, originalFilename: nil, mimeType: mime,
                                   fileSize: nil, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: root), progress: JobProgress(),
                          cancellation: JobCancellation(), logger: TestLogging.logger())
    }

    @Test(arguments: [4096, Checksummer.defaultBufferSize])
    func theChecksumReadCountsExactlyTheFileSize(bufferSize: Int) throws {
        let counter = ByteCounter()
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.rotatedMP4, in: fixtures.root, countingInto: counter)
        let sums = try Checksummer.compute(file, bufferSize: bufferSize)
        #expect(sums.bytesRead == file.size)
        #expect(counter.total == file.size)
    }

    @Test func ffmpegReadsThroughTheAVIOCallbackAreCounted() throws {
        let counter = ByteCounter()
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.rotatedMP4, in: fixtures.root, countingInto: counter)
        _ = try MediaInput.open(file)
        #expect(counter.total > 0)
        #expect(counter.total <= 2 * file.size, "a probe reads the small file about once, not over and over")
    }

    @Test func aFileOpenedWithoutACounterCountsNowhere() throws {
        let counter = ByteCounter()
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.rotatedMP4, in: fixtures.root)
        _ = try Checksummer.compute(file)
        #expect(counter.total == 0)
    }

    @Test(arguments: [(MediaFixtures.Name.rotatedMP4, "video/mp4"), (MediaFixtures.Name.plainJPEG, "image/jpeg"),
                      (MediaFixtures.Name.taggedMP3, "audio/mpeg")])
    func aMetadataRunReportsAboutTheFileSize(name: String, mime: String) throws {
        let size = try fileSize(fixtures.path(name))
        let run = context(.metadata, path: name, mime: mime, root: fixtures.root)
        _ = try MetadataHandler().run(run)
        // The hash reads the whole file once; sniffing and probing read some of it again.
        #expect(run.bytesRead.total >= size)
        #expect(run.bytesRead.total <= 4 * size, "read \(run.bytesRead.total) bytes of a \(size)-byte file")
    }

    @Test func aThumbnailRunCountsTheBytesItsDecoderWasGiven() throws {
        let storage = try fixtures.makeScratchDirectory("bytes-read")
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainJPEG), toPath: storage + "/photo.jpg")
        let size = try fileSize(storage + "/photo.jpg")
        let run = context(.thumbnail, path: "photo.jpg", mime: "image/jpeg", root: storage)
        _ = try ThumbnailHandler().run(run)
        #expect(run.bytesRead.total >= size)
        #expect(run.bytesRead.total <= 4 * size, "read \(run.bytesRead.total) bytes of a \(size)-byte file")
    }
}
