import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
@testable import MediaNestWorker
import Testing

/// The memory budget in the production `medianest-worker run`, with real transcodes and
/// thumbnails on generated media and a real database: what ran beside what is read from the
/// jobs' `started_at` (set by the claim) and `completed_at` (set by the result write; a run holds
/// its reservation until then).
@Suite("memory budget in a worker", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(5)))
struct MemoryBudgetProcessTests {
    private func register(_ name: String, mime: String, owner: String, on connection: PGConnection) throws -> String {
        try connection.query("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
            VALUES ($1::uuid, $2, $2, $3, 1, $2) RETURNING id::text AS id
            """, [owner, name, mime])[0].decode("id", as: String.self)
    }

    /// The item as a claim returns it, for the estimator.
    private func record(_ id: String, on connection: PGConnection) throws -> MediaItemRecord {
        let row = try connection.query("SELECT mime_type, metadata FROM media_items WHERE id = $1::uuid", [id])[0]
        return MediaItemRecord(id: id, ownerID: "", filename: "", originalFilename: nil, mimeType: try row.decode("mime_type", as: String.self),
                               fileSize: nil, storagePath: "", metadata: try row.decode("metadata", as: JSONValue.self))
    }

    /// A scratch storage root with `stills` copies of a small JPEG named `s<N>.jpg`.
    private func storage(_ label: String, stills: Int) throws -> String {
        let fixtures = try MediaFixtures.load()
        let root = try fixtures.makeScratchDirectory(label)
        for index in 0..<stills {
            try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainJPEG), toPath: root + "/s\(index).jpg")
        }
        return root
    }

    private func run(_ database: TestDatabase, root: String, _ arguments: [String]) throws {
        let run = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", root, "--log-level", "warning",
                              "--metrics-address", "off"] + arguments)
        #expect(run.status == 0, "worker log:\n\(run.error)")
    }

    @Test func twoTranscodesThatDoNotFitTogetherRunOneAfterTheOtherWhileStillsRunBeside() async throws {
        let root = try storage("budget-serial", stills: 8)
        for name in ["a.mp4", "b.mp4"] {
            let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                                                                 "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=2",
                                                                 "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", root + "/" + name])
            try #require(made.status == 0, "\(made.stderr)")
        }
        try await withMigratedDatabase("budgetserial") { database, connection, owner in
            let clips = try ["a.mp4", "b.mp4"].map { try register($0, mime: "video/mp4", owner: owner, on: connection) }
            let stills = try (0..<8).map { try register("s\($0).jpg", mime: "image/jpeg", owner: owner, on: connection) }
            // The metadata job runs first, as it does for an upload, so that the claims know the sizes.
            for item in clips + stills { _ = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection) }
            try run(database, root: root, ["--types", "metadata"])
            let clip = try record(clips[0], on: connection)
            try #require(clip.metadata["width"] == 1920 && clip.metadata["height"] == 1080, "\(clip.metadata)")

            // A budget that fits one 1080p transcode and three stills, never two transcodes.
            let estimator = JobMemoryEstimator(transcodeThreads: 1)
            let transcode = estimator.estimate(type: .transcode, item: clip)
            let still = estimator.estimate(type: .thumbnail, item: try record(stills[0], on: connection))
            try #require(transcode > 3 * still)
            let budget = transcode + 3 * still

            let transcodes = try clips.map { try DatabaseFixtures.insertJob(mediaItemID: $0, type: "transcode", on: connection) }
            let thumbnails = try stills.map { try DatabaseFixtures.insertJob(mediaItemID: $0, type: "thumbnail", on: connection) }
            // The type limits alone would run both transcodes at once.
            try run(database, root: root, ["--types", "transcode,thumbnail", "--concurrency", "4", "--type-limits", "transcode=2,thumbnail=4",
                                           "--memory-budget", String(budget), "--transcode-mode", "always", "--transcode-threads", "1"])

            let all = transcodes + thumbnails
            let done = try connection.query("""
                SELECT count(*) FILTER (WHERE status = 'completed') AS completed, count(*) FILTER (WHERE attempts = 1) AS first_attempt
                  FROM processing_jobs WHERE id = ANY($1::text[]::uuid[])
                """, [all])[0]
            #expect(try done.decode("completed", as: Int.self) == all.count)
            #expect(try done.decode("first_attempt", as: Int.self) == all.count, "a job handed back for want of memory is not charged an attempt")

            let order = try connection.query("""
                WITH t AS (SELECT id, started_at, completed_at FROM processing_jobs WHERE id = ANY($1::text[]::uuid[]) ORDER BY started_at LIMIT 2),
                     first AS (SELECT * FROM t ORDER BY started_at LIMIT 1),
                     second AS (SELECT * FROM t ORDER BY started_at DESC LIMIT 1)
                SELECT second.started_at >= first.completed_at AS serial,
                       (SELECT count(*) FROM processing_jobs s
                         WHERE s.id = ANY($2::text[]::uuid[]) AND s.started_at >= first.started_at AND s.completed_at <= first.completed_at) AS beside_first,
                       (SELECT count(*) FROM processing_jobs s
                         WHERE s.id = ANY($2::text[]::uuid[]) AND s.started_at > first.started_at AND s.completed_at <= first.completed_at) AS started_during_first
                  FROM first, second
                """, [transcodes, thumbnails])[0]
            #expect(try order.decode("serial", as: Bool.self), "the second transcode started before the first one completed")
            #expect(try order.decode("beside_first", as: Int.self) >= 1, "stills ran beside the first transcode")
            #expect(try order.decode("started_during_first", as: Int.self) >= 1,
                    "stills were still claimed while the first transcode ran and the second waited")
        }
    }

    @Test func aJobLargerThanTheWholeBudgetStillRunsAlone() async throws {
        let root = try storage("budget-alone", stills: 6)
        let fixtures = try MediaFixtures.load()
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainMP4), toPath: root + "/clip.mp4")
        try await withMigratedDatabase("budgetalone") { database, connection, owner in
            // No metadata yet: the clip is estimated as 2160p, far above a budget that fits one still.
            let clip = try register("clip.mp4", mime: "video/mp4", owner: owner, on: connection)
            let stills = try (0..<6).map { try register("s\($0).jpg", mime: "image/jpeg", owner: owner, on: connection) }
            let estimator = JobMemoryEstimator()
            let still = estimator.estimate(type: .thumbnail, item: try record(stills[0], on: connection))
            try #require(estimator.estimate(type: .transcode, item: try record(clip, on: connection)) > 2 * still)

            // Half the stills before the transcode in the queue, half after.
            var thumbnails = try stills.prefix(3).map { try DatabaseFixtures.insertJob(mediaItemID: $0, type: "thumbnail", on: connection) }
            let transcode = try DatabaseFixtures.insertJob(mediaItemID: clip, type: "transcode", on: connection)
            thumbnails += try stills.suffix(3).map { try DatabaseFixtures.insertJob(mediaItemID: $0, type: "thumbnail", on: connection) }
            try run(database, root: root, ["--types", "transcode,thumbnail", "--concurrency", "4", "--type-limits", "transcode=1,thumbnail=4",
                                           "--memory-budget", String(still), "--transcode-mode", "always", "--transcode-threads", "1"])

            #expect(try jobStatus(transcode, on: connection) == "completed", "a job larger than the budget runs")
            let row = try connection.query("""
                SELECT count(*) FILTER (WHERE s.status = 'completed') AS completed,
                       count(*) FILTER (WHERE NOT (s.completed_at <= t.started_at OR s.started_at >= t.completed_at)) AS beside
                  FROM processing_jobs s, processing_jobs t
                 WHERE s.id = ANY($1::text[]::uuid[]) AND t.id = $2::uuid
                """, [thumbnails, transcode])[0]
            #expect(try row.decode("completed", as: Int.self) == thumbnails.count)
            #expect(try row.decode("beside", as: Int.self) == 0, "no still ran beside the job larger than the budget")
        }
    }
}
