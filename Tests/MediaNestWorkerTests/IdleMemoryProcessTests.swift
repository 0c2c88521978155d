import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
import MediaNestTestSupport
import Testing

/// A real worker process gives the memory of a mixed batch (big stills, videos, every job type)
/// back once it is idle.
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
        // 12 MP stills decode to frames of 36–48 MB each, several per job; the videos bring
        // decoders, scalers and encoders of their own. Four jobs at once, all four job types.
        let png = storage + "/source.png", jpeg = storage + "/source.jpg", video = storage + "/source.mp4"
        let sources: [(String, [String])] = [
            (png, ["-f", "lavfi", "-i", "testsrc2=size=4000x3000", "-frames:v", "1"]),
            (jpeg, ["-f", "lavfi", "-i", "testsrc2=size=4000x3000", "-frames:v", "1", "-q:v", "3"]),
            (video, ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
                     "-pix_fmt", "yuv420p"]),
        ]
        for (output, arguments) in sources {
            let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + arguments + [output])
            try #require(made.status == 0, "\(made.stderr)")
        }
        let names = (0..<12).map { n in ["still-\(n).png", "still-\(n).jpg", "clip-\(n).mp4"][n % 3] }
        for name in names {
            try FileManager.default.linkItem(atPath: name.hasSuffix(".png") ? png : name.hasSuffix(".jpg") ? jpeg : video, toPath: storage + "/" + name)
        }

        try await withMigratedDatabase("idlememory") { database, connection, owner in
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--storage-root", storage, "--concurrency", "4",
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

            let jobs = try connection.query("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, f, f, CASE WHEN f LIKE '%.png' THEN 'image/png' WHEN f LIKE '%.jpg' THEN 'image/jpeg' ELSE 'video/mp4' END, f
                      FROM unnest($2::text[]) f
                    RETURNING id, mime_type)
                SELECT count(*) AS n FROM items,
                       LATERAL (SELECT enqueue_media_processing(id, CASE WHEN mime_type = 'video/mp4'
                                THEN ARRAY['metadata', 'thumbnail', 'preview', 'transcode'] ELSE ARRAY['metadata', 'thumbnail', 'preview'] END)) e
                """, [owner, names])
            try #require(jobs.count == 1)
            #expect(try await waitUntil(timeout: .seconds(240)) {
                try connection.query("SELECT count(*) FILTER (WHERE status NOT IN ('completed', 'failed')) AS open, count(*) AS n FROM processing_jobs")
                    .first.map { try $0.decode("open", as: Int.self) == 0 && $0.decode("n", as: Int.self) > 0 } ?? false
            }, "log:\n\(worker.log)")
            let failed = try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status <> 'completed'")[0].decode("n", as: Int.self)
            #expect(failed == 0, "log:\n\(worker.log)")
            let peak = try memory(of: worker.pid).peak
            // The batch must really have grown the heap, or the check below would prove nothing.
            try #require(peak - start >= 48, "peak \(peak) MiB against \(start) MiB at start: the batch did not grow the worker")

            // Once idle, the worker gives the heap's free memory back: its anonymous memory (the
            // heap, what malloc_trim governs) falls back within a margin of where it started.
            // Measured on 2 cores (debug build, 2026-12-04), after a peak some 120–135 MiB above
            // start: 15 MiB above start with the reclaim and one malloc arena per core
            // (MallocArenaLimit); 45 MiB with glibc's default of 8 arenas per core
            // (GLIBC_TUNABLES=glibc.malloc.arena_max=16), whose scattered live blocks pin pages
            // malloc_trim cannot return. VmRSS also counts the codec libraries' code the decoders
            // paged in: shared, clean file pages, so it is reported, not judged.
            let margin = 24.0
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
