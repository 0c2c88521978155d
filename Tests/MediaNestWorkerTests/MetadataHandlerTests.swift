import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Synchronization
import Testing

@Suite("MetadataHandler turns a file into item updates without a database")
struct MetadataHandlerTests {
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    func context(path: String, mime: String, size: Int64?, cancellation: JobCancellation = JobCancellation(),
                 root: String? = nil, logger: Logger = TestLogging.logger()) -> JobContext {
        let job = ClaimedJob(id: "job-1", mediaItemID: "item-1", type: .metadata, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: "item-1", ownerID: "owner-1", filename: path, originalFilename: nil, mimeType: mime,
                                   fileSize: size, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: root ?? fixtures.root), progress: JobProgress(),
                          cancellation: cancellation, logger: logger)
    }

    /// The first field `tool` prints for a corpus file (md5sum, sha256sum).
    func digest(_ tool: String, _ name: String) throws -> String {
        String(try ProcessRunner.run("/usr/bin/env", [tool, fixtures.path(name)]).stdout.prefix { $0 != " " })
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

    @Test func aSuccessfulRunLeavesTheSalvageEmpty() throws {
        let ctx = context(path: MediaFixtures.Name.flac, mime: "audio/flac", size: nil)
        _ = try MetadataHandler().run(ctx)
        #expect(ctx.salvage.current.isEmpty)
    }

    @Test func aCorruptFileFailsAndItsChecksumsAndSizeAreSalvaged() throws {
        let name = MediaFixtures.Name.truncatedMP4
        let ctx = context(path: name, mime: "video/mp4", size: nil)
        do {
            _ = try MetadataHandler().run(ctx)
            Issue.record("expected corrupt_media")
        } catch {
            #expect(error.code == .corruptMedia)
        }
        let salvage = ctx.salvage.current
        #expect(salvage.checksumMD5 == (try digest("md5sum", name)))
        #expect(salvage.checksumSHA256 == (try digest("sha256sum", name)))
        #expect(salvage.fileSize == (try fileSize(name)), "the recorded size was NULL")
        #expect(salvage.metadataMerge.isEmpty)
        #expect(salvage.providerMetadata.isEmpty)
    }

    @Test(arguments: [(MediaFixtures.Name.textAsJPEG, JobError.Code.mimeMismatch), (MediaFixtures.Name.randomBytes, .unsupportedFormat)])
    func anUnusableFileStillHasItsChecksumsSalvaged(name: String, code: JobError.Code) throws {
        let ctx = context(path: name, mime: "image/jpeg", size: try fileSize(name))
        do {
            _ = try MetadataHandler().run(ctx)
            Issue.record("expected \(code)")
        } catch {
            #expect(error.code == code)
        }
        let salvage = ctx.salvage.current
        #expect(salvage.checksumMD5 == (try digest("md5sum", name)))
        #expect(salvage.checksumSHA256 == (try digest("sha256sum", name)))
        #expect(salvage.fileSize == nil, "the recorded size was right")
    }

    @Test func aFileChangedWhileItWasReadFailsWithFileChangedAndSalvagesNothing() throws {
        let name = MediaFixtures.Name.truncatedMP4
        let scratch = try fixtures.makeScratchDirectory("handler-changed")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.copyItem(atPath: fixtures.path(name), toPath: scratch + "/" + name)
        let ctx = context(path: name, mime: "video/mp4", size: nil, root: scratch)
        let path = scratch + "/" + name
        let error = MetadataExtractor.$beforeChangeCheck.withValue({ _ in
            // Between the last read and the check: the upload is still being written.
            if let handle = FileHandle(forWritingAtPath: path) {
                _ = try? handle.seekToEnd()
                try? handle.write(contentsOf: Data(repeating: 7, count: 4096))
                try? handle.close()
            }
        }) { () -> JobError? in
            do throws(JobError) {
                _ = try MetadataHandler().run(ctx)
                return nil
            } catch {
                return error
            }
        }
        #expect(error?.code == .fileChanged)
        #expect(error?.isRetryable == true)
        #expect(ctx.salvage.current.isEmpty)
    }

    @Test func aNullFileSizeIsFilledInAtDebugLevelAndAWrongOneWarns() throws {
        let name = MediaFixtures.Name.flac
        let unknown = CapturedLog()
        let filled = try MetadataHandler().run(context(path: name, mime: "audio/flac", size: nil, logger: unknown.logger()))
        #expect(filled.itemUpdate.fileSize == (try fileSize(name)))
        #expect(unknown.levels(containing: "file_size") == [.debug])

        let wrong = CapturedLog()
        _ = try MetadataHandler().run(context(path: name, mime: "audio/flac", size: 1, logger: wrong.logger()))
        #expect(wrong.levels(containing: "file_size") == [.warning])
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
        let ctx = context(path: MediaFixtures.Name.escapingLink, mime: "video/mp4", size: nil)
        #expect((try? MetadataHandler().run(ctx)) == nil)
        #expect(ctx.salvage.current.isEmpty, "nothing was read, so nothing is salvaged")
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
