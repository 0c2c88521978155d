import CMalloc
import Foundation
import Logging
import MediaNestQueue

/// When an idle job pool gives memory back: a pure decision over the pool's events, with the
/// time passed in, so it is tested without threads or clocks.
///
/// The pool reports each job it starts (``workStarted()``) and each moment every one of its
/// threads has gone idle (``poolWentIdle(at:)``). Memory is given back once the pool has stayed
/// idle for ``settle`` after some work, and once per idle spell: a stream of jobs with short
/// gaps keeps its memory (the next job would only fault the same pages in again), an idle pool
/// is not trimmed again and again.
struct IdleReclaimPolicy: Sendable, Equatable {
    /// How long the pool must stay idle before memory is given back.
    let settle: Duration
    /// Some job started since memory was last given back.
    private(set) var workSinceReclaim = false
    /// When the pool last became idle, while it still is.
    private(set) var idleSince: ContinuousClock.Instant?

    init(settle: Duration) {
        self.settle = settle
    }

    /// A thread picked up a job: the pool is busy.
    mutating func workStarted() {
        workSinceReclaim = true
        idleSince = nil
    }

    /// Every thread is idle and nothing waits (again, if it already was: the first time counts).
    mutating func poolWentIdle(at now: ContinuousClock.Instant) {
        if idleSince == nil { idleSince = now }
    }

    /// When to give memory back, or `nil` while busy or when nothing ran since the last time.
    var reclaimAt: ContinuousClock.Instant? {
        guard workSinceReclaim, let idleSince else { return nil }
        return idleSince + settle
    }

    /// Whether memory is due to be given back at `now`.
    func isDue(at now: ContinuousClock.Instant) -> Bool {
        reclaimAt.map { now >= $0 } ?? false
    }

    /// Memory was given back; nothing more is due until the next job.
    mutating func reclaimed() {
        workSinceReclaim = false
    }
}

/// Gives the worker's free heap memory back to the kernel when its ``JobPool`` goes idle.
///
/// Between jobs, what a worker holds beyond its start-up size is mostly free memory of the C
/// heap, not live objects. Decoders and encoders (FFmpeg, libheif, libjpeg-turbo, libwebp, x264)
/// allocate frame-sized buffers on every thread that runs them; glibc serves each thread from an
/// arena of its own (up to 8 per core) and keeps what a job freed in that arena for the next one.
/// It also raises its mmap threshold to the largest block freed so far (up to 32 MiB), so after
/// the first big frame, later frames come from the arenas instead of from `mmap` and stay there
/// once freed. FFmpeg's buffer pools, codec contexts and libheif's decoders are freed at the end
/// of each job into those arenas; the runtime keeps no media cache of its own.
///
/// `malloc_trim(0)` (glibc 2.8 and later) returns the free pages inside every arena with
/// `madvise(MADV_DONTNEED)`, not only the top of the main heap, which is what brings an idle
/// worker back near its start-up RSS. It takes a few milliseconds and the next job faults its
/// pages in again, which is why it waits for the pool to stay idle (``IdleReclaimPolicy``)
/// rather than running after every job. What it cannot return is pages pinned by live blocks
/// scattered through many arenas, which is why the daemon also keeps one arena per core
/// (``MallocArenaLimit``). Fixing the mmap threshold (`M_MMAP_THRESHOLD`) instead would cost
/// page faults on every frame of every job.
final class MemoryReclaimer: Sendable {
    /// How long the pool must stay idle before memory is given back.
    let settle: Duration
    private let release: @Sendable () -> Void
    private let logger: Logger?

    /// How long the runtime's pool waits, idle, before giving memory back.
    static let defaultSettle: Duration = .seconds(1)

    /// - Parameters:
    ///   - settle: How long the pool must stay idle first.
    ///   - logger: Where each reclaim is reported, at debug level, with the RSS before and after.
    ///   - release: What gives memory back; `malloc_trim(0)` unless a test passes its own.
    init(settle: Duration = MemoryReclaimer.defaultSettle, logger: Logger? = nil,
         release: @escaping @Sendable () -> Void = { _ = malloc_trim(0) }) {
        self.settle = settle
        self.logger = logger
        self.release = release
    }

    /// Gives memory back now (on the calling thread).
    func reclaim() {
        guard let logger, logger.logLevel <= .debug else {
            release()
            return
        }
        let before = Self.residentBytes()
        let start = ContinuousClock.now
        release()
        let elapsed = ContinuousClock.now - start
        let after = Self.residentBytes()
        logger.debug("idle: gave free heap memory back", metadata: [
            "rss_before_mib": "\(before / 1_048_576)", "rss_after_mib": "\(after / 1_048_576)",
            "took_ms": "\(Int(elapsed.seconds * 1000))",
        ])
    }

    /// This process's resident set (`/proc/self/statm`), in bytes; 0 where there is no /proc.
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
