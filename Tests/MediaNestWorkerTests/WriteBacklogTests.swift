import Foundation
import MediaNestDB
import MediaNestTestSupport
@testable import MediaNestWorker
import Testing

/// A slot frees when its handler returns, not when its result is stored, so the claim loop
/// bounds the writer's backlog itself (`Scheduler.writeBacklogLimit`): a stalled writer must not
/// let it claim without end.
@Suite("the writer's backlog bounds claiming", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct WriteBacklogTests {
    @Test func aStalledWriterStopsTheClaimsAtTheBacklogLimit() async throws {
        try await withMigratedDatabase("backlog") { database, connection, owner in
            let jobs = 1500
            try connection.execute("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, 'b' || n || '.jpg', 'b' || n || '.jpg', 'image/jpeg', 'u/b' || n || '.jpg'
                      FROM generate_series(1, $2::int) n RETURNING id)
                INSERT INTO processing_jobs (media_item_id, job_type, input_data) SELECT id, 'metadata', '{}' FROM items
                """, [owner, jobs])
            // Every completion settles its item, which inserts a notification: with the table
            // locked no result can be stored, while claims (which never touch it) go on.
            let blocker = try database.connect()
            try blocker.execute("BEGIN")
            try blocker.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
            let concurrency = 8
            let limit = Scheduler.writeBacklogLimit(concurrency: concurrency)
            // Writes held up for longer than the retry window are given up and their runs
            // forgotten, which frees backlog: on a slow machine that came before the count below.
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--concurrency", "\(concurrency)", "--metrics-address", "off"],
                                           environment: ["MEDIANEST_TEST_RESULT_WRITE_RETRY_WINDOW": "600"])
            defer { worker.stop() }
            func count(_ status: String) throws -> Int {
                try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status = $1::job_status", [status])[0].decode("n", as: Int.self)
            }
            #expect(try await waitUntil(timeout: .seconds(30)) { try count("running") >= limit }, "log:\n\(worker.log)")
            // At the limit the loop stops claiming: the backlog, plus the slots, at the most.
            var most = 0
            for _ in 0..<20 {
                most = max(most, try count("running"))
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(most <= limit + concurrency, "claimed \(most) while no result could be written")
            #expect(try count("completed") == 0)

            try blocker.execute("COMMIT")
            #expect(try await waitUntil(timeout: .seconds(60)) { try count("completed") == jobs }, "log:\n\(worker.log)")
        }
    }
}
