import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// The production `medianest-worker run --drain` with the real thumbnail and preview handlers,
/// real files and a real database.
@Suite("thumbnail and preview jobs end to end", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct StillEndToEndTests {
    @Test func drainingTheQueueSetsThumbnailAndPreviewPathsToFilesThatDecode() async throws {
        let fixtures = try MediaFixtures.load()
        let storage = try fixtures.makeScratchDirectory("stills-e2e")
        let tagged = try ExifBuilder.insert(app1: ExifBuilder.app1(orientation: 8, littleEndian: false),
                                            into: Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG))))
        try tagged.write(to: URL(fileURLWithPath: storage + "/portrait.jpg"))
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.webp), toPath: storage + "/image.webp")
        try Data("not a picture".utf8).write(to: URL(fileURLWithPath: storage + "/fake.png"))

        try await withMigratedDatabase("stills") { database, connection, owner in
            func register(_ name: String, mime: String) throws -> String {
                try connection.query("""
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
                    VALUES ($1::uuid, $2, $2, $3, 1, $2) RETURNING id::text AS id
                    """, [owner, name, mime])[0].decode("id", as: String.self)
            }
            let portrait = try register("portrait.jpg", mime: "image/jpeg")
            let webp = try register("image.webp", mime: "image/webp")
            let fake = try register("fake.png", mime: "image/png")
            for item in [portrait, webp, fake] {
                let enqueue = try runCLI(["enqueue", item, "--types", "thumbnail,preview", "--database-url", database.connectionString])
                #expect(enqueue.status == 0, "\(enqueue.error)")
            }
            let run = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", storage,
                                  "--types", "thumbnail,preview", "--log-level", "warning"])
            #expect(run.status == 0, "worker log:\n\(run.error)")

            for (id, size) in [(portrait, (32, 64)), (webp, (50, 30))] {
                let row = try connection.query("SELECT thumbnail_path, preview_path FROM media_items WHERE id = $1::uuid", [id])[0]
                let thumbnail = try row.decode("thumbnail_path", as: String.self)
                let preview = try row.decode("preview_path", as: String.self)
                #expect(thumbnail == ".derived/\(id.prefix(2))/\(id)/thumbnail.webp")
                #expect(preview == ".derived/\(id.prefix(2))/\(id)/preview.jpg")
                for path in [thumbnail, preview] {
                    let decoded = try #require(try cliImageSize(storage + "/" + path), "\(path) must decode")
                    #expect(decoded.width == size.0 && decoded.height == size.1, "\(path): upright, never upscaled")
                }
                let jobs = try connection.query("""
                    SELECT job_type::text AS t, status::text AS s, output_data, completed_at FROM processing_jobs
                     WHERE media_item_id = $1::uuid ORDER BY job_type
                    """, [id])
                #expect(try jobs.map { try $0.decode("s", as: String.self) } == ["completed", "completed"])
                // Claimed together, run as one: one decode at the preview's size made both
                // outputs, and one transaction completed both.
                let decodes = try jobs.map { try $0.decode("output_data", as: JSONValue.self)["decode"] }
                for decode in decodes {
                    #expect(decode?["long_edge"] == 1440, "\(decodes)")
                    #expect(Set(decode?["jobs"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["thumbnail", "preview"], "\(decodes)")
                }
                #expect(try Set(jobs.map { try $0.decode("completed_at", as: Date.self) }).count == 1, "one result write")
            }

            // A job retried on its own is claimed alone and renders alone, at its own size; its
            // sibling's file is left as it was.
            let thumbnailJob = try connection.query("""
                SELECT id::text AS id FROM processing_jobs WHERE media_item_id = $1::uuid AND job_type = 'thumbnail'
                """, [portrait])[0].decode("id", as: String.self)
            let previewFile = storage + "/.derived/\(portrait.prefix(2))/\(portrait)/preview.jpg"
            let previewInode = try FileManager.default.attributesOfItem(atPath: previewFile)[.systemFileNumber] as? UInt64
            try connection.execute("UPDATE processing_jobs SET status = 'failed', completed_at = now() WHERE id = $1::uuid", [thumbnailJob])
            let retry = try runCLI(["retry", thumbnailJob, "--database-url", database.connectionString])
            #expect(retry.status == 0, "\(retry.error)")
            let again = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", storage,
                                    "--types", "thumbnail,preview", "--log-level", "warning"])
            #expect(again.status == 0, "worker log:\n\(again.error)")
            let retried = try connection.query("""
                SELECT status::text AS s, output_data FROM processing_jobs WHERE id = $1::uuid
                """, [thumbnailJob])[0]
            #expect(try retried.decode("s", as: String.self) == "completed")
            #expect(try retried.decode("output_data", as: JSONValue.self)["decode"] == ["long_edge": 320, "jobs": ["thumbnail"]])
            #expect(try FileManager.default.attributesOfItem(atPath: previewFile)[.systemFileNumber] as? UInt64 == previewInode)
            let failed = try connection.query("""
                SELECT j.status::text AS s, j.output_data, m.thumbnail_path FROM processing_jobs j JOIN media_items m ON m.id = j.media_item_id
                 WHERE m.id = $1::uuid
                """, [fake])
            for row in failed {
                #expect(try row.decode("s", as: String.self) == "failed")
                #expect(try row.decode("output_data", as: JSONValue.self)["error"]?["code"] == "unsupported_format")
            }
        }
    }
}

@Suite("the thumbnail command", .enabled(if: executablesAvailable, "needs the built executables"))
struct ThumbnailCommandTests {
    @Test func rendersUprightThumbnailsAndReportsBadFilesWithoutStopping() throws {
        let fixtures = try MediaFixtures.load()
        let output = try fixtures.makeScratchDirectory("thumbnail-cli")
        let result = try runCLI(["thumbnail", "--size", "16", "--format", "png", "--output-dir", output,
                                 fixtures.path(MediaFixtures.Name.exifJPEG(orientation: 6)), fixtures.path(MediaFixtures.Name.textAsJPEG),
                                 fixtures.path(MediaFixtures.Name.webp)])
        #expect(result.status == 1, "a failed file makes the exit status 1")
        let lines = try result.output.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
        try #require(lines.count == 3, "\(result.output)")
        #expect(lines[0]["width"] == 8 && lines[0]["height"] == 16, "orientation 6 turns the 64×32 photo upright")
        #expect(lines[1]["error"]?["code"] == "unsupported_format")
        #expect(lines[2]["width"] == 16)
        let size = try #require(try cliImageSize(output + "/" + MediaFixtures.Name.exifJPEG(orientation: 6) + ".png"))
        #expect(size.width == 8 && size.height == 16)
        #expect(try FileManager.default.contentsOfDirectory(atPath: output).sorted() == [
            MediaFixtures.Name.exifJPEG(orientation: 6) + ".png", MediaFixtures.Name.webp + ".png",
        ], "no temporary file is left behind")
    }

    /// `--preview-size` is what `make bench` times as "everything the thumbnail job does": it must
    /// be the jobs' own path, so its files and hashes are held to the jobs' byte for byte.
    @Test func withAPreviewSizeItMakesWhatTheThumbnailAndPreviewJobsMakeTogether() throws {
        let fixtures = try MediaFixtures.load()
        let storage = try fixtures.makeScratchDirectory("thumbnail-cli-preview")
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=2000x1500",
                                                            "-frames:v", "1", "-q:v", "3", storage + "/photo.jpg"])
        try #require(made.status == 0, "\(made.stderr)")
        let output = storage + "/out"
        let result = try runCLI(["thumbnail", "--size", "320", "--preview-size", "1440", "--output-dir", output, storage + "/photo.jpg"])
        #expect(result.status == 0, "\(result.error)")
        let line = try JSONValue(parsing: result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(line["width"] == 320 && line["height"] == 240)
        #expect(line["preview"]?["width"] == 1440 && line["preview"]?["height"] == 1080)
        #expect(line["jpeg_scale"] == "3/4", "2000 px decoded at 3/4 (1500 px) covers 1440")
        #expect(try FileManager.default.contentsOfDirectory(atPath: output).sorted() == ["photo.jpg.preview.jpg", "photo.jpg.webp"])

        // The same file through the jobs, claimed together.
        let itemID = UUID().uuidString.lowercased()
        func context(_ type: JobType) -> JobContext {
            let job = ClaimedJob(id: UUID().uuidString, mediaItemID: itemID, type: type, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
            let item = MediaItemRecord(id: itemID, ownerID: "owner", filename: "photo.jpg", originalFilename: nil, mimeType: "image/jpeg",
                                       fileSize: nil, storagePath: "photo.jpg", metadata: [:])
            return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: storage), progress: JobProgress(),
                              cancellation: JobCancellation(), logger: TestLogging.logger())
        }
        let results = StillJobsHandler().run(together: [context(.thumbnail), context(.preview)])
        let thumbnail = try results[0].get()
        _ = try results[1].get()
        #expect(line["thumbhash"] == thumbnail.itemUpdate.metadataMerge["thumbhash"])
        #expect(line["perceptual_hash"] == thumbnail.output["perceptual_hash"])
        let derived = storage + "/.derived/" + String(itemID.prefix(2)) + "/" + itemID
        for (mine, jobs) in [("photo.jpg.webp", "thumbnail.webp"), ("photo.jpg.preview.jpg", "preview.jpg")] {
            let a = try Data(contentsOf: URL(fileURLWithPath: output + "/" + mine))
            let b = try Data(contentsOf: URL(fileURLWithPath: derived + "/" + jobs))
            #expect(a == b, "\(mine) and the job's \(jobs) differ")
        }
    }
}
