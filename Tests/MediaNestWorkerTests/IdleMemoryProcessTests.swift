import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
import MediaNestTestSupport
import Testing

/// A real worker process gives the memory of a batch of big stills back once it is idle.
@Suite("idle worker memory", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(4)))
struct IdleMemoryProcessTests {
    /// Resident set, its anonymous part and the peak resident set of a process, in MiB, from
    /// /proc/PID/status.
    func memory(of pid: Int32) throws -> (rss: Double, anonymous: Double, peak: Double) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func kib(_ key: String) -> Double {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return (kib("VmRSS") / 1024, kib("RssAnon") / 1024, kib("VmHWM") / 1024)
    }

    @Test func afterABatchOfBigStillsTheIdleWorkerFallsBackNearItsStartUpSize() async throws {
        let fixtures = try MediaFixtures.load()
        let storage = try fixtures.makeScratchDirectory("idle-memory")
        // 12 MP stills decode to frames of 36–48 MB each, several per job with three jobs at once.
        let png = storage + "/source.png", jpeg = storage + "/source.jpg"
        for (output, extra) in [(png, [String]()), (jpeg, ["-q:v", "3"])] {
            let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
                                             "-i", "testsrc2=size=4000x3000", "-frames:v", "1"] + extra + [output])
            try #require(made.status == 0, "\(made.stderr)")
        }
        let items = 12
        for n in 0..<items {
            try FileManager.default.linkItem(atPath: n % 2 == 0 ? png : jpeg, toPath: storage + "/still-\(n)" + (n % 2 == 0 ? ".png" : ".jpg"))
        }

        try await withMigratedDatabase("idlememory") { database, connection, owner in
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--storage-root", storage, "--types", "thumbnail,preview", "--concurrency", "3",
                                                       "--metrics-address", "127.0.0.1:0", "--log-level", "info", "--log-format", "text"],
                                           executable: "medianest-worker")
            defer { worker.stop() }
            let base = try await metricsBaseURL(of: worker)
            var ready = false
            for _ in 0..<600 where !ready {
                ready = (try? await httpGet(base + "/readyz"))?.status == 200
                if !ready { try await Task.sleep(for: .milliseconds(100)) }
            }
            try #require(ready, "log:\n\(worker.log)")
            let start = try memory(of: worker.pid).rss
            let startAnonymous = try memory(of: worker.pid).anonymous

            _ = try connection.query("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, f, f, CASE WHEN f LIKE '%.png' THEN 'image/png' ELSE 'image/jpeg' END, f
                      FROM (SELECT 'still-' || n || CASE WHEN n % 2 = 0 THEN '.png' ELSE '.jpg' END AS f FROM generate_series(0, $2::int - 1) n) names
                    RETURNING id)
                SELECT enqueue_media_processing(id, ARRAY['thumbnail', 'preview']) FROM items
                """, [owner, items])
            #expect(try await waitUntil(timeout: .seconds(180)) {
                try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status = 'completed'")[0].decode("n", as: Int.self) == 2 * items
            }, "log:\n\(worker.log)")
            let peak = try memory(of: worker.pid).peak
            // The batch must really have grown the heap, or the check below would prove nothing.
            try #require(peak - start >= 48, "peak \(peak) MiB against \(start) MiB at start: the batch did not grow the worker")

            // Once idle, the worker gives the heap's free memory back: its anonymous memory (the
            // heap, what malloc_trim governs) falls back within a margin of where it started.
            // Measured: about 4 MiB above start with the reclaim, about 25 MiB without it, after
            // a peak some 85 MiB above start. VmRSS also counts the codec libraries' code the
            // decoders paged in: shared, clean file pages, so it is reported, not judged.
            let margin = 16.0
            var idle = try memory(of: worker.pid)
            let fellBack = try await waitUntil(timeout: .seconds(30)) {
                idle = try memory(of: worker.pid)
                return idle.anonymous <= startAnonymous + margin
            }
            #expect(fellBack, "idle: anonymous \(idle.anonymous) MiB (RSS \(idle.rss)); start-up: anonymous \(startAnonymous) MiB (RSS \(start)); peak RSS \(peak) MiB")
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(worker.log)")
        }
    }
}
