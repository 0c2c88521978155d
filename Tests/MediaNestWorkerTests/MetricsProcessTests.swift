import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
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
}
