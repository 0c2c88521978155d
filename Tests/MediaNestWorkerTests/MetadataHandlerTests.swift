import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

@Suite("MetadataHandler turns a file into item updates without a database")
struct MetadataHandlerTests {
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    func context(path: String, mime: String, size: Int64?, cancellation: JobCancellation = JobCancellation()) -> JobContext {
        let job = ClaimedJob(id: "job-1", mediaItemID: "item-1", type: .metadata, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: "item-1", ownerID: "owner-1", filename: path, originalFilename: nil, mimeType: mime,
                                   fileSize: size, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: fixtures.root), progress: JobProgress(),
                          cancellation: cancellation, logger: Logger(label: "test"))
    }

    func fileSize(_ name: String) throws -> Int64 {
        Int64(try #require(FileManager.default.attributesOfItem(atPath: fixtures.path(name))[.size] as? Int))
    }

    @Test func videoJobRecordsSummaryChecksumsAndProbe() throws {
        let name = MediaFixtures.Name.rotatedMP4
        let size = try fileSize(name)
        let outcome = try MetadataHandler().run(context(path: name, mime: "video/mp4", size: size))
        let md5 = try ProcessRunner.run("/usr/bin/env", ["md5sum", fixtures.path(name)]).stdout.prefix(32)
        #expect(outcome.itemUpdate.checksumMD5 == String(md5))
        #expect(outcome.itemUpdate.checksumSHA256?.count == 64)
        #expect(outcome.itemUpdate.fileSize == nil, "size was right, so it is not rewritten")
        #expect(outcome.itemUpdate.metadataMerge["kind"] == "video")
        #expect(outcome.itemUpdate.metadataMerge["width"] == 32)
        #expect(outcome.itemUpdate.metadataMerge["height"] == 64)
        #expect(outcome.itemUpdate.metadataMerge["mime_declared_matches"] == true)
        #expect(outcome.itemUpdate.providerMetadata.count == 1)
        #expect(outcome.itemUpdate.providerMetadata.first?.provider == "local")
        #expect(outcome.itemUpdate.providerMetadata.first?.data["streams"]?.arrayValue?.count == 2)
        #expect(outcome.output["size"] == .int(size))
        #expect(outcome.output["md5"] == .string(String(md5)))
        #expect(outcome.output["mime_note"] == nil)
        #expect(outcome.output["kind"] == "video")
    }

    @Test func wrongRecordedSizeIsCorrected() throws {
        let name = MediaFixtures.Name.flac
        let outcome = try MetadataHandler().run(context(path: name, mime: "audio/flac", size: 1))
        #expect(outcome.itemUpdate.fileSize == (try fileSize(name)))
    }

    @Test func declaredTypeMismatchIsNotedButSucceeds() throws {
        let outcome = try MetadataHandler().run(context(path: MediaFixtures.Name.webp, mime: "image/jpeg", size: nil))
        #expect(outcome.output["mime_note"] == "declared image/jpeg, content is image/webp")
        #expect(outcome.itemUpdate.metadataMerge["mime_declared_matches"] == false)
    }

    @Test func nonMediaContentFailsWithMimeMismatch() {
        let handler = MetadataHandler()
        let ctx = context(path: MediaFixtures.Name.textAsJPEG, mime: "image/jpeg", size: nil)
        #expect(throws: JobError.self) { try handler.run(ctx) }
        do {
            _ = try handler.run(ctx)
        } catch {
            #expect(error.code == .mimeMismatch)
            #expect(!error.isRetryable)
        }
    }

    @Test func escapingPathFailsWithPathOutsideStorage() {
        do {
            _ = try MetadataHandler().run(context(path: "../outside/secret.mp4", mime: "video/mp4", size: nil))
            Issue.record("expected path_outside_storage")
        } catch {
            #expect(error.code == .pathOutsideStorage)
        }
    }

    @Test func cancelledJobStopsWithCancelled() {
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        do {
            _ = try MetadataHandler().run(context(path: MediaFixtures.Name.plainMP4, mime: "video/mp4", size: nil, cancellation: cancellation))
            Issue.record("expected cancelled")
        } catch {
            #expect(error.code == .cancelled)
        }
    }
}
