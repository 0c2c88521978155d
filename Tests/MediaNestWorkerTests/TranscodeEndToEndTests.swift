import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import Testing

/// The production `medianest-worker run` with the real transcode handler, real files and a real
/// database.
@Suite("transcode jobs end to end", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(4)))
struct TranscodeEndToEndTests {
    /// A storage root of its own (the renditions land under its `.derived`), with `names` copied in.
    private func storage(_ label: String, copying names: [String]) throws -> String {
        let fixtures = try MediaFixtures.load()
        let root = try fixtures.makeScratchDirectory(label)
        for name in names { try FileManager.default.copyItem(atPath: fixtures.path(name), toPath: root + "/" + name) }
        return root
    }

    private func register(_ name: String, mime: String, owner: String, on connection: PGConnection) throws -> String {
        try connection.query("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
            VALUES ($1::uuid, $2, $2, $3, 1, $2) RETURNING id::text AS id
            """, [owner, name, mime])[0].decode("id", as: String.self)
    }

    private func transcodeJob(_ item: String, on connection: PGConnection) throws -> PGRow {
        try connection.query("""
            SELECT j.id::text AS id, j.status::text AS status, j.output_data, j.error_message, m.processing_info
              FROM processing_jobs j JOIN media_items m ON m.id = j.media_item_id
             WHERE j.media_item_id = $1::uuid AND j.job_type = 'transcode'
            """, [item])[0]
    }

    @Test func renditionsAreRecordedInProcessingInfoAndOutputWithPathsRelativeToTheStorageRoot() async throws {
        let root = try storage("transcode-e2e", copying: [MediaFixtures.Name.hevc10MKV, MediaFixtures.Name.plainMP4])
        try await withMigratedDatabase("transcode") { database, connection, owner in
            let hdr = try register(MediaFixtures.Name.hevc10MKV, mime: "video/x-matroska", owner: owner, on: connection)
            let plain = try register(MediaFixtures.Name.plainMP4, mime: "video/mp4", owner: owner, on: connection)
            for item in [hdr, plain] {
                let enqueue = try runCLI(["enqueue", item, "--types", "transcode", "--database-url", database.connectionString])
                #expect(enqueue.status == 0, "\(enqueue.error)")
            }
            let run = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", root, "--log-level", "warning"])
            #expect(run.status == 0, "worker log:\n\(run.error)")

            let made = try transcodeJob(hdr, on: connection)
            let madeError = try made.decode("error_message", as: String?.self) ?? ""
            #expect(try made.decode("status", as: String.self) == "completed", "\(madeError)")
            let output = try made.decode("output_data", as: JSONValue.self)
            #expect(output["rendition_needed"] == true)
            #expect(output["action"] == "transcode")
            let renditions = try made.decode("processing_info", as: JSONValue.self)["renditions"]?.arrayValue ?? []
            let rendition = try #require(renditions.first)
            let path = try #require(rendition["path"]?.stringValue)
            #expect(path == ".derived/\(hdr.prefix(2))/\(hdr)/renditions/web.mp4")
            #expect(rendition["container"] == "mp4")
            #expect(rendition["codecs"] == .array(["h264"]))
            #expect(rendition["width"]?.intValue == 64 && rendition["height"]?.intValue == 64)
            let size = try FileManager.default.attributesOfItem(atPath: root + "/" + path)[.size] as? Int64
            #expect(rendition["size"]?.intValue == size)
            #expect(rendition["duration"]?.doubleValue.map { abs($0 - 1.0) < 0.05 } == true)
            #expect(rendition["bitrate"]?.intValue.map { $0 > 0 } == true)
            #expect(output["rendition"] == rendition)
            // Only the committed file: no temporary left behind.
            let directory = root + "/.derived/\(hdr.prefix(2))/\(hdr)/renditions"
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["web.mp4"])

            let none = try transcodeJob(plain, on: connection)
            #expect(try none.decode("status", as: String.self) == "completed")
            let noneOutput = try none.decode("output_data", as: JSONValue.self)
            #expect(noneOutput["rendition_needed"] == false)
            #expect(noneOutput["reason"]?.stringValue?.hasPrefix("Already playable") == true)
            #expect(try none.decode("processing_info", as: JSONValue.self)["renditions"] == .array([]))
            #expect(!FileManager.default.fileExists(atPath: root + "/.derived/\(plain.prefix(2))/\(plain)"), "no empty directories for an item without a rendition")
        }
    }

    @Test func thumbnailAndMetadataJobsKeepFinishingWhileALongTranscodeRunsAndStatusShowsItsProgress() async throws {
        let root = try storage("transcode-beside", copying: [MediaFixtures.Name.plainMP4, MediaFixtures.Name.flac, MediaFixtures.Name.plainJPEG])
        // Two minutes of video: long enough to still be encoding while the other jobs run.
        let long = "long.avi"
        let generate = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                                                                 "-f", "lavfi", "-i", "testsrc2=size=480x270:rate=25:duration=120",
                                                                 "-c:v", "mpeg4", "-q:v", "8", root + "/" + long])
        #expect(generate.status == 0, "\(generate.stderr)")
        try await withMigratedDatabase("beside") { database, connection, owner in
            let video = try register(long, mime: "video/x-msvideo", owner: owner, on: connection)
            let transcode = try DatabaseFixtures.insertJob(mediaItemID: video, type: "transcode", on: connection)
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--storage-root", root, "--types", "transcode,metadata,thumbnail", "--transcode-threads", "1",
                                                       "--heartbeat", "0.5", "--lease", "10", "--log-level", "info"],
                                           executable: "medianest-worker")
            defer { worker.stop() }
            // Wait until the encode has reported frames through the heartbeat.
            #expect(try await waitUntil(timeout: .seconds(60)) {
                let progress = try connection.query("SELECT progress_info FROM processing_jobs WHERE id = $1::uuid", [transcode])[0]
                    .decode("progress_info", as: JSONValue.self)
                return (progress["frames"]?.intValue ?? 0) > 0
            }, "log:\n\(worker.log)")
            let status = try runCLI(["status", "--database-url", database.connectionString])
            #expect(status.output.contains("transcoding"), "\(status.output)")
            #expect(status.output.contains("fps") && status.output.contains("out_time") && status.output.contains("eta"), "\(status.output)")

            // Other work arrives while the transcode holds its slot: it finishes.
            var others: [String] = []
            for (name, mime) in [(MediaFixtures.Name.plainMP4, "video/mp4"), (MediaFixtures.Name.flac, "audio/flac"), (MediaFixtures.Name.plainJPEG, "image/jpeg")] {
                let item = try register(name, mime: mime, owner: owner, on: connection)
                others.append(try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection))
                others.append(try DatabaseFixtures.insertJob(mediaItemID: item, type: "thumbnail", on: connection))
            }
            #expect(try await waitUntil(timeout: .seconds(60)) {
                try others.allSatisfy { try jobStatus($0, on: connection) == "completed" }
            }, "log:\n\(worker.log)")
            #expect(try jobStatus(transcode, on: connection) == "running", "the transcode was still encoding when the others finished")

            // Cancelling stops the encode and leaves no file.
            let cancel = try runCLI(["cancel", transcode, "--database-url", database.connectionString])
            #expect(cancel.status == 0, "\(cancel.error)")
            let directory = root + "/.derived/\(video.prefix(2))/\(video)/renditions"
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try jobStatus(transcode, on: connection) == "cancelled" && (try? FileManager.default.contentsOfDirectory(atPath: directory))?.isEmpty == true
            }, "log:\n\(worker.log)")
        }
    }
}
