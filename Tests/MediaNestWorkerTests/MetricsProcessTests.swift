import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

/// The probes of a real worker process, configured through its configuration file.
@Suite("worker metrics endpoint", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct MetricsProcessTests {
    /// The value of the sample named exactly `series` (name and labels) in a Prometheus text body.
    func sample(_ series: String, in body: String) -> Double? {
        body.split(separator: "\n").lazy.compactMap { line -> Double? in
            guard line.hasPrefix(series + " ") else { return nil }
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }.first
    }

    @Test func aRunningWorkerServesMetricsHealthAndReadinessOnItsConfiguredAddress() async throws {
        try await withMigratedDatabase("metricsproc") { database, connection, owner in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-metricsproc-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            // Port 0: the kernel picks a free one, and the worker logs the address it bound.
            // Real metadata jobs over real photos, so that the bytes the handler reads are counted.
            let fixtures = try MediaFixtures.load()
            let storage = try fixtures.makeScratchDirectory("metricsproc")
            try FileManager.default.createDirectory(atPath: storage + "/u", withIntermediateDirectories: true)
            for n in 1...5 {
                try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainJPEG), toPath: storage + "/u/m\(n).jpg")
            }
            let photoSize = try #require(FileManager.default.attributesOfItem(atPath: storage + "/u/m1.jpg")[.size] as? Int)
            try Data("metrics:\n  listen: 127.0.0.1:0\nqueue:\n  poll_interval: 0.5\nstorage:\n  root: \(storage)\nlog:\n  level: info\n".utf8)
                .write(to: URL(fileURLWithPath: dir + "/worker.yaml"))
            _ = try connection.query("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, 'm' || n || '.jpg', 'm' || n || '.jpg', 'image/jpeg', 'u/m' || n || '.jpg' FROM generate_series(1, 5) n
                    RETURNING id)
                INSERT INTO processing_jobs (media_item_id, job_type, input_data) SELECT id, 'metadata', '{}'::jsonb FROM items RETURNING id
                """, [owner])
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--config", dir + "/worker.yaml", "--instance", "metrics", "--types", "metadata"],
                                           executable: "medianest-worker")
            defer { worker.stop() }
            let base = try await metricsBaseURL(of: worker)
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status = 'completed'")[0].decode("n", as: Int.self) == 5
            })
            #expect(try await httpGet(base + "/healthz").status == 200)
            #expect(try await httpGet(base + "/readyz").status == 200)
            let metrics = try await httpGet(base + "/metrics")
            #expect(metrics.status == 200)
            // The runtime's counters moved with the jobs it ran.
            #expect(metrics.body.contains(#"medianest_jobs_completed_total{type="metadata"} 5"#), "\(metrics.body)")
            #expect(metrics.body.contains(#"medianest_jobs_claimed_total{type="metadata"} 5"#), "\(metrics.body)")
            #expect(metrics.body.contains("medianest_job_duration_seconds"), "\(metrics.body)")
            // Each metadata run hashes its whole photo, so at least five photos' worth was read.
            let bytesRead = try #require(sample(#"medianest_bytes_read_total{type="metadata"}"#, in: metrics.body), "\(metrics.body)")
            #expect(bytesRead >= Double(5 * photoSize), "\(metrics.body)")
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(worker.log)")
        }
    }

    /// The queue gauges a worker exports and what `status` prints come from one reader
    /// (``QueueStateReader``), so they agree: with one slot busy on a long job, the two jobs
    /// behind it are the depth both report.
    @Test func theQueueGaugesShowWhatStatusShows() async throws {
        try await withMigratedDatabase("gaugestatus") { database, connection, owner in
            for n in 1...3 {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "p\(n).jpg", on: connection)
                _ = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", input: #"{"sleep_ms": 600000}"#, on: connection)
            }
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--metrics-address", "127.0.0.1:0", "--types", "metadata", "--concurrency", "1"])
            defer { worker.stop() }
            let base = try await metricsBaseURL(of: worker)
            let depth = #"medianest_queue_depth{type="metadata"}"#
            // The sampler runs every 15 s: wait for a sample taken after the first claim.
            var body = ""
            var sampled = false
            let deadline = ContinuousClock.now + .seconds(60)
            while !sampled && ContinuousClock.now < deadline {
                if try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status = 'running'")[0].decode("n", as: Int.self) == 1 {
                    body = try await httpGet(base + "/metrics").body
                    sampled = sample(depth, in: body) == 2
                }
                if !sampled { try await Task.sleep(for: .milliseconds(500)) }
            }
            #expect(sampled, "metrics:\n\(body)\nlog:\n\(worker.log)")

            let snapshot = try QueueStateReader.snapshot(on: connection)
            let metadata = try #require(snapshot.types.first { $0.type == .metadata })
            #expect(metadata.runnable?.count == 2 && metadata.pending == 2 && metadata.running == 1)
            let status = try runCLI(["status", "--database-url", database.connectionString])
            #expect(status.status == 0, "\(status.error)")
            #expect(status.output.contains("metadata   pending 2, running 1"), "\(status.output)")
            let oldest = try #require(sample(#"medianest_queue_oldest_pending_seconds{type="metadata"}"#, in: body), "\(body)")
            #expect(oldest > 0 && oldest <= (snapshot.oldestRunnableAge ?? 0), "sampled before the snapshot, so not older than it says")
        }
    }
}
