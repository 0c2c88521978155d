import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import Testing

/// A file whose name and tags are shaped like SQL goes through a real metadata job (the
/// production `run --drain`, a real PostgreSQL): the name and every tag are stored verbatim,
/// and nothing they say is executed.
@Suite("SQL-shaped names and tags are stored verbatim", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(5)))
struct HostileNameTests {
    static let fileName = "x'); DROP TABLE processing_jobs;-- $1 \\ %.mp3"
    static let tags = [
        "title": "Robert'); DROP TABLE media_items; --",
        "artist": "\"; SELECT pg_sleep(30); --",
        "album": "$1 $$ E'\\\\x00' OR '1'='1",
    ]

    @Test func sqlShapedFileNameAndTagsAreStoredVerbatim() async throws {
        let root = NSTemporaryDirectory() + "medianest-sql-names-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ffmpeg = try #require(["/usr/bin/ffmpeg", "/usr/local/bin/ffmpeg"].first { FileManager.default.isExecutableFile(atPath: $0) })
        let tagArguments = Self.tags.sorted { $0.key < $1.key }.flatMap { ["-metadata", "\($0.key)=\($0.value)"] }
        let made = try ProcessRunner.run(ffmpeg, ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                                                  "sine=frequency=440:sample_rate=44100:duration=1", "-c:a", "libmp3lame", "-id3v2_version", "3"]
                                         + tagArguments + [root + "/" + Self.fileName])
        try #require(made.status == 0, "\(made.stderr)")

        try await withMigratedDatabase("sqlnames") { database, connection, owner in
            let item = try connection.query("""
                INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path)
                VALUES ($1::uuid, $2, $2, 'audio/mpeg', 1, $2) RETURNING id::text AS id
                """, [owner, Self.fileName])[0].decode("id", as: String.self)
            let enqueue = try runCLI(["enqueue", item, "--types", "metadata", "--database-url", database.connectionString])
            #expect(enqueue.status == 0, "\(enqueue.error)")

            let binary = binDirectory.appendingPathComponent("medianest-worker").path
            let connectionString = database.connectionString
            let run = try await offCooperativePool {
                try MeasuredChild.run(binary, ["run", "--drain", "--database-url", connectionString, "--storage-root", root,
                                               "--log-level", "warning"],
                                      environment: ProcessInfo.processInfo.environment, directory: root, deadline: .seconds(90))
            }
            #expect(run.exitStatus == 0, "worker log:\n\(run.stderr)")
            if HostileFileTests.peakRSSIsTheProducts {
                #expect(run.maxRSSKiB <= HostileFileTests.peakRSSLimitKiB, "peak RSS \(run.maxRSSKiB) KiB")
            }

            let row = try connection.query("""
                SELECT m.filename, m.original_filename, m.storage_path, m.status::text AS status, m.metadata,
                       j.status::text AS job_status, j.output_data
                  FROM media_items m JOIN processing_jobs j ON j.media_item_id = m.id WHERE m.id = $1::uuid
                """, [item])[0]
            let output = try row.decode("output_data", as: JSONValue.self)
            #expect(try row.decode("job_status", as: String.self) == "completed", "\(output)")
            #expect(try row.decode("status", as: String.self) == "ready")
            #expect(try row.decode("filename", as: String.self) == Self.fileName)
            #expect(try row.decode("original_filename", as: String.self) == Self.fileName)
            #expect(try row.decode("storage_path", as: String.self) == Self.fileName)
            let stored = try row.decode("metadata", as: JSONValue.self)["tags"]
            for (key, value) in Self.tags {
                #expect(stored?[key] == .string(value), "\(key): \(String(describing: stored))")
            }
            // Nothing the strings say was executed: both tables are still there, with their rows.
            #expect(try connection.query("SELECT count(*) AS n FROM media_items")[0].decode("n", as: Int.self) == 1)
            #expect(try connection.query("SELECT count(*) AS n FROM processing_jobs")[0].decode("n", as: Int.self) == 1)
            HostileFileTests.report(Self.fileName, "metadata job (run --drain)", "ok", run.maxRSSMiB)
        }
    }
}
