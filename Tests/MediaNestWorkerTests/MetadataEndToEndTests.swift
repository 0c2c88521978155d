import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import Testing

/// The production `medianest-worker run --drain` with the real metadata handler, real files and a
/// real database: what the upload pipeline and a person looking at the library would see.
@Suite("metadata jobs end to end", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct MetadataEndToEndTests {
    /// Inserts a media item for a corpus file, with the size on disk unless `recordedSize` says otherwise.
    private func register(_ name: String, mime: String, owner: String, fixtures: MediaFixtures, recordedSize: Int64? = nil,
                          on connection: PGConnection) throws -> String {
        let size = recordedSize ?? ((try? FileManager.default.attributesOfItem(atPath: fixtures.path(name))[.size] as? Int64) ?? 0)
        return try connection.query("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
            VALUES ($1::uuid, $2, $2, $3, $4, $2) RETURNING id::text AS id
            """, [owner, name, mime, size])[0].decode("id", as: String.self)
    }

    @Test func drainingTheQueueRecordsMetadataChecksumsAndReadableErrors() async throws {
        let fixtures = try MediaFixtures.load()
        try await withMigratedDatabase("metadata") { database, connection, owner in
            let portrait = try register(MediaFixtures.Name.exifJPEG(orientation: 6), mime: "image/jpeg", owner: owner, fixtures: fixtures,
                                        recordedSize: 1, on: connection)
            let video = try register(MediaFixtures.Name.rotatedMP4, mime: "video/quicktime", owner: owner, fixtures: fixtures, on: connection)
            let song = try register(MediaFixtures.Name.taggedMP3, mime: "audio/mpeg", owner: owner, fixtures: fixtures, on: connection)
            let truncated = try register(MediaFixtures.Name.truncatedMP4, mime: "video/mp4", owner: owner, fixtures: fixtures, on: connection)
            let text = try register(MediaFixtures.Name.textAsJPEG, mime: "image/jpeg", owner: owner, fixtures: fixtures, on: connection)
            let escape = try register(MediaFixtures.Name.escapingLink, mime: "video/mp4", owner: owner, fixtures: fixtures, on: connection)
            let items = [portrait, video, song, truncated, text, escape]
            for item in items {
                let enqueue = try runCLI(["enqueue", item, "--types", "metadata", "--database-url", database.connectionString])
                #expect(enqueue.status == 0, "\(enqueue.error)")
            }

            let run = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", fixtures.root,
                                  "--log-level", "warning"])
            #expect(run.status == 0, "worker log:\n\(run.error)")

            func item(_ id: String) throws -> PGRow {
                try connection.query("""
                    SELECT m.status::text AS status, m.metadata, m.checksum_md5, m.checksum_sha256, m.file_size,
                           j.status::text AS job_status, j.output_data, j.error_message, j.attempts
                      FROM media_items m JOIN processing_jobs j ON j.media_item_id = m.id WHERE m.id = $1::uuid
                    """, [id])[0]
            }

            // A portrait phone photo stored landscape with Orientation 6 reports portrait.
            let photo = try item(portrait)
            #expect(try photo.decode("status", as: String.self) == "ready")
            let photoMetadata = try photo.decode("metadata", as: JSONValue.self)
            #expect(photoMetadata["kind"] == "image")
            #expect(photoMetadata["width"]?.intValue == 32 && photoMetadata["height"]?.intValue == 64)
            #expect(photoMetadata["orientation"]?.intValue == 6)
            #expect(photoMetadata["taken_at"] == .string(MediaFixtures.ExifValues.takenAt))
            let md5 = try ProcessRunner.run("/usr/bin/env", ["md5sum", fixtures.path(MediaFixtures.Name.exifJPEG(orientation: 6))]).stdout.prefix(32)
            #expect(try photo.decode("checksum_md5", as: String.self) == String(md5))
            #expect(try photo.decode("checksum_sha256", as: String.self).count == 64)
            let onDisk = try FileManager.default.attributesOfItem(atPath: fixtures.path(MediaFixtures.Name.exifJPEG(orientation: 6)))[.size] as? Int64
            #expect(try photo.decode("file_size", as: Int64.self) == onDisk, "the wrong recorded size is corrected")

            // A different media type than declared is recorded and the job proceeds.
            let clip = try item(video)
            #expect(try clip.decode("status", as: String.self) == "ready")
            #expect(try clip.decode("metadata", as: JSONValue.self)["mime_declared_matches"] == false)
            #expect(try clip.decode("output_data", as: JSONValue.self)["mime_note"] != nil)

            let audio = try item(song)
            #expect(try audio.decode("metadata", as: JSONValue.self)["kind"] == "audio")

            // The full probe goes to media_metadata as the local provider's row.
            let probeRows = try connection.query("""
                SELECT provider, confidence_score, data, fetched_at IS NOT NULL AS fetched FROM media_metadata WHERE media_item_id = $1::uuid
                """, [video])
            #expect(probeRows.count == 1)
            #expect(try probeRows[0].decode("provider", as: String.self) == "local")
            #expect(try probeRows[0].decode("confidence_score", as: Double.self) == 1.0)
            #expect(try probeRows[0].decode("fetched", as: Bool.self))
            #expect(try probeRows[0].decode("data", as: JSONValue.self)["streams"]?.arrayValue?.isEmpty == false)

            // Bad input: a stable code, a readable message, nothing retried, the item in error.
            for (id, code) in [(truncated, "corrupt_media"), (text, "mime_mismatch"), (escape, "path_outside_storage")] {
                let row = try item(id)
                #expect(try row.decode("job_status", as: String.self) == "failed", "\(code)")
                #expect(try row.decode("status", as: String.self) == "error")
                #expect(try row.decode("attempts", as: Int.self) == 1, "permanent errors fail at once")
                let error = try row.decode("output_data", as: JSONValue.self)["error"]
                #expect(error?["code"] == .string(code))
                #expect(error?["retryable"] == false)
                let message = try row.decode("error_message", as: String.self)
                #expect(message.count > 20 && !message.contains("AVERROR"), "a sentence, not an FFmpeg number: \(message)")
            }
            let notifications = try connection.query("SELECT type, count(*) AS n FROM notifications GROUP BY type ORDER BY type")
            #expect(try notifications.map { try $0.decode("type", as: String.self) } == ["error", "success"])
        }
    }

    @Test func workerWithoutListenStillRunsJobsByPolling() async throws {
        try await withMigratedDatabase("nolisten") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--no-listen", "--poll-interval", "0.3", "--log-level", "info"])
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(job, on: connection) == "completed" }, "log:\n\(worker.log)")
            // The worker opened no LISTEN session (PgBouncer transaction pooling cannot carry one):
            // its one connection is the writer's. The LISTEN session is the one named
            // "medianest-worker listener"; it claims too, so its last query is not LISTEN.
            let sessions = try connection.query("""
                SELECT application_name AS name FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name LIKE 'medianest-worker%' AND application_name <> 'medianest-worker preflight'
                """).map { try $0.decode("name", as: String.self) }
            #expect(sessions == ["medianest-worker"])

            let listening = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(), arguments: ["--log-level", "info"])
            defer { listening.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'medianest-worker listener'")[0]
                    .decode("n", as: Int.self) == 1
            }, "the default worker does LISTEN, so the check above can see one")
        }
    }

    @Test func ffmpegsOwnLogGoesThroughTheLoggerNeverRawToStderr() throws {
        let fixtures = try MediaFixtures.load()
        let result = try runCLI(["probe", "--no-checksums", fixtures.path(MediaFixtures.Name.truncatedMP4)])
        #expect(result.status == 0)
        #expect(result.output.contains("corrupt_media"))
        // FFmpeg itself prints "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] moov atom not found" at line start.
        let rawLines = result.error.split(separator: "\n").filter { $0.hasPrefix("[") && $0.contains(" @ 0x") }
        #expect(rawLines.isEmpty, "raw FFmpeg output on stderr:\n\(rawLines.joined(separator: "\n"))")
    }
}
