import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
import MediaNestTestSupport
import Testing

/// A real worker process gives the memory of a mixed batch (big stills, a video, an audio file,
/// every job type) back once it is idle.
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

    /// The resident anonymous memory of a process's main malloc heap (`[heap]`) and of its
    /// other anonymous mappings of 1 MiB or more (the other malloc arenas, thread stacks), in
    /// MiB, from /proc/PID/smaps (read with cat: Foundation stops at 4 KiB of a /proc file).
    func heaps(of pid: Int32) throws -> (main: Double, others: Double) {
        let smaps = try ProcessRunner.run("/bin/cat", ["/proc/\(pid)/smaps"]).stdout
        var main = 0, others = 0, size = 0
        var isHeap = false, isAnonymousMapping = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), range.first?.isHexDigit == true {
                isHeap = fields.last == "[heap]"
                isAnonymousMapping = fields.count == 5
            } else if fields.first == "Size:", fields.count > 1 {
                size = Int(fields[1]) ?? 0
            } else if fields.first == "Anonymous:", fields.count > 1, let kib = Int(fields[1]) {
                if isHeap { main += kib } else if isAnonymousMapping && size >= 1024 { others += kib }
            }
        }
        return (Double(main) / 1024, Double(others) / 1024)
    }

    @Test func afterAMixedBatchTheIdleWorkerFallsBackNearItsStartUpSize() async throws {
        let fixtures = try MediaFixtures.load()
        let storage = try fixtures.makeScratchDirectory("idle-memory")
        // 12 MP stills decode to frames of 36–48 MB each, several per job; the video and the
        // audio bring decoders, scalers and encoders of their own. Four jobs at once, all four
        // job types.
        let png = storage + "/source.png", jpeg = storage + "/source.jpg", video = storage + "/source.mp4", audio = storage + "/source.mp3"
        let sources: [(String, [String])] = [
            (png, ["-f", "lavfi", "-i", "testsrc2=size=4000x3000", "-frames:v", "1"]),
            (jpeg, ["-f", "lavfi", "-i", "testsrc2=size=4000x3000", "-frames:v", "1", "-q:v", "3"]),
            (video, ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
                     "-pix_fmt", "yuv420p"]),
            (audio, ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=20", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"]),
        ]
        for (output, arguments) in sources {
            let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + arguments + [output])
            try #require(made.status == 0, "\(made.stderr)")
        }
        let names = (0..<12).map { n in ["still-\(n).png", "still-\(n).jpg", "clip-\(n).mp4", "song-\(n).mp3"][n % 4] }
        let source = ["png": png, "jpg": jpeg, "mp4": video, "mp3": audio]
        for name in names {
            try FileManager.default.linkItem(atPath: source[String(name.split(separator: ".").last ?? "")] ?? png, toPath: storage + "/" + name)
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
            let startHeaps = try heaps(of: worker.pid)

            let jobs = try connection.query("""
                WITH items AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    SELECT $1::uuid, f, f, CASE WHEN f LIKE '%.png' THEN 'image/png' WHEN f LIKE '%.jpg' THEN 'image/jpeg'
                                                WHEN f LIKE '%.mp3' THEN 'audio/mpeg' ELSE 'video/mp4' END, f
                      FROM unnest($2::text[]) f
                    RETURNING id, mime_type)
                SELECT count(*) AS n FROM items,
                       LATERAL (SELECT enqueue_media_processing(id, CASE mime_type
                                WHEN 'video/mp4' THEN ARRAY['metadata', 'thumbnail', 'preview', 'transcode']
                                WHEN 'audio/mpeg' THEN ARRAY['metadata', 'transcode']
                                ELSE ARRAY['metadata', 'thumbnail', 'preview'] END)) e
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

            // Once idle (the pool idle and the writer holding no outcome, for a second), the
            // worker gives the heap's free memory back: the main malloc heap's anonymous memory
            // falls back within a margin of where it started. Measured on 2 cores under a load
            // of about 16 (debug build, 2026-12-04), from a start of 0.3–0.4 MiB: 0.4, 0.6 and
            // 0.6 MiB above it after the reclaim, 18.6 MiB above it without (a no-op release),
            // after peaks some 115–130 MiB above the start-up RSS. 4 MiB is six times the worst
            // figure with the reclaim and a fifth of the one without.
            //
            // The other malloc arena is reported, not judged: malloc_trim(0) gives back the free
            // chunks inside every arena but trims the top chunk of the main heap only (glibc's
            // mtrim calls systrim for the main arena alone), so what a job freed at the top of
            // another arena stays resident: 6–38 MiB in the same runs, depending on which
            // thread's arena the last big buffers came from. That, not the reclaim's timing, is
            // what made the whole anonymous figure swing (+6 to +60 MiB). VmRSS also counts the
            // codec libraries' code the decoders paged in: shared, clean file pages.
            let margin = 4.0
            var idle = try heaps(of: worker.pid)
            let fellBack = try await waitUntil(timeout: .seconds(30)) {
                idle = try heaps(of: worker.pid)
                return idle.main <= startHeaps.main + margin
            }
            let total = try memory(of: worker.pid)
            #expect(fellBack, """
                idle: main heap \(idle.main) MiB, other arenas and stacks \(idle.others) MiB, anonymous \(total.anonymous) MiB \
                (RSS \(total.rss)); start-up: main heap \(startHeaps.main) MiB, others \(startHeaps.others) MiB, \
                anonymous \(startAnonymous) MiB (RSS \(start)); peak RSS \(peak) MiB
                """)
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(worker.log)")
        }
    }
}
