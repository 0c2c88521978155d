import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// The thumbnail job stores the picture's perceptual hash (`MediaItemUpdate.perceptualHash`, the
/// `perceptual_hash` column), also when the thumbnail is made in one decode with the preview;
/// songs get none.
@Suite("perceptual hash in the thumbnail job")
struct PerceptualHashJobTests {
    let fixtures: MediaFixtures
    let storage: String

    init() throws {
        fixtures = try MediaFixtures.load()
        storage = try fixtures.makeScratchDirectory("phash-job")
        for (name, filter, quality) in [("photo.jpg", "null", "2"), ("sent.jpg", "scale=400:300", "20"), ("other.jpg", "hflip,vflip", "2")] {
            let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1200x900", "-frames:v", "1",
                                                                  "-vf", filter, "-q:v", quality, storage + "/" + name])
            try #require(result.status == 0, "\(result.stderr)")
        }
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.flac), toPath: storage + "/song.flac")
    }

    func context(_ type: JobType, path: String, mime: String = "image/jpeg", item: String) -> JobContext {
        let job = ClaimedJob(id: UUID().uuidString, mediaItemID: item, type: type, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let record = MediaItemRecord(id: item, ownerID: "owner", filename: path, originalFilename: nil, mimeType: mime,
                                     fileSize: nil, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: record, storage: StorageLayout(root: storage), progress: JobProgress(),
                          cancellation: JobCancellation(), logger: TestLogging.logger())
    }

    func run(_ type: JobType, path: String, mime: String = "image/jpeg", item: String) throws -> JobOutcome {
        let context = context(type, path: path, mime: mime, item: item)
        return type == .thumbnail ? try ThumbnailHandler().run(context) : try PreviewHandler().run(context)
    }

    @Test func photosGetAHashThatFindsTheirCopiesAndSongsGetNone() throws {
        let photo = try #require(try run(.thumbnail, path: "photo.jpg", item: UUID().uuidString.lowercased()).itemUpdate.perceptualHash)
        let sent = try #require(try run(.thumbnail, path: "sent.jpg", item: UUID().uuidString.lowercased()).itemUpdate.perceptualHash)
        let other = try #require(try run(.thumbnail, path: "other.jpg", item: UUID().uuidString.lowercased()).itemUpdate.perceptualHash)
        let distance = { (a: Int64, b: Int64) in PerceptualHash.distance(UInt64(bitPattern: a), UInt64(bitPattern: b)) }
        #expect(distance(photo, sent) <= DuplicateFinder.defaultDistance)
        #expect(distance(photo, other) > DuplicateFinder.defaultDistance)
        #expect(try run(.thumbnail, path: "song.flac", mime: "audio/flac", item: UUID().uuidString.lowercased()).itemUpdate.perceptualHash == nil)
    }

    @Test func aThumbnailMadeInOneDecodeWithThePreviewCarriesTheSameHash() throws {
        let alone = try #require(try run(.thumbnail, path: "photo.jpg", item: UUID().uuidString.lowercased()).itemUpdate.perceptualHash)
        let item = UUID().uuidString.lowercased()
        let results = StillJobsHandler().run(together: [context(.thumbnail, path: "photo.jpg", item: item),
                                                        context(.preview, path: "photo.jpg", item: item)])
        try #require(results.count == 2)
        let thumbnail = try results[0].get(), preview = try results[1].get()
        #expect(thumbnail.output["decode"]?["jobs"] == ["thumbnail", "preview"], "\(thumbnail.output)")
        #expect(thumbnail.itemUpdate.perceptualHash == alone)
        #expect(preview.itemUpdate.perceptualHash == nil, "only the thumbnail job records the hash")
    }
}
