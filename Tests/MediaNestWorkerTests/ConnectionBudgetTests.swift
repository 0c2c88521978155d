import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

/// Issue 10, "Connection budget": a worker process holds at most two server connections (the
/// LISTEN session, on which the claim loop also claims, and one for result writes and
/// heartbeats, and maintenance when the worker runs it), and one with `--no-listen`.
@Suite("connection budget", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct ConnectionBudgetTests {
    /// The worker's connections to this database, by `application_name`.
    private func workerConnections(on connection: PGConnection) throws -> [String] {
        try connection.query("""
            SELECT application_name AS name FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'medianest-worker%'
               AND application_name <> 'medianest-worker preflight' ORDER BY 1
            """).map { try $0.decode("name", as: String.self) }
    }

    private func runJobs(listen: Bool) async throws -> [String] {
        try await withMigratedDatabase("budget\(listen ? 1 : 0)") { database, connection, owner in
            // Jobs that take a moment, finishing at different times: claims, heartbeats and
            // result writes all happen while the connections are counted.
            let jobs = try connection.query("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, 'f' || n || '.jpg', 'f' || n || '.jpg', 'image/jpeg', 'u/f' || n || '.jpg'
                      FROM generate_series(1, 12) n RETURNING id)
                INSERT INTO processing_jobs (media_item_id, job_type, input_data)
                SELECT id, 'metadata', jsonb_build_object('sleep_ms', 300 + 100 * (row_number() OVER ())::int % 5) FROM items
                RETURNING id::text AS id
                """, [owner]).map { try $0.decode("id", as: String.self) }
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--concurrency", "4", "--heartbeat", "0.2", "--poll-interval", "0.2",
                                                       // Maintenance runs on the writer's connection, not one of its own.
                                                       "--maintenance-interval", "1"] + (listen ? [] : ["--no-listen"]))
            defer { worker.stop() }
            var most: [String] = []
            let done = try await waitUntil(timeout: .seconds(60)) {
                let now = try workerConnections(on: connection)
                if now.count > most.count { most = now }
                return try connection.query("SELECT count(*) FILTER (WHERE status = 'completed') AS n FROM processing_jobs")[0].decode("n", as: Int.self) == jobs.count
                    && worker.log.contains("maintenance finished")
            }
            #expect(done, "log:\n\(worker.log)")
            let atEnd = try workerConnections(on: connection)
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(30)) == 0)
            return most.count >= atEnd.count ? most : atEnd
        }
    }

    @Test func aListeningWorkerHoldsTwoConnections() async throws {
        let most = try await runJobs(listen: true)
        #expect(most == ["medianest-worker", "medianest-worker listener"], "\(most)")
    }

    @Test func aWorkerWithoutListenHoldsOneConnection() async throws {
        let most = try await runJobs(listen: false)
        #expect(most == ["medianest-worker"], "\(most)")
    }
}
