import CMalloc
import Foundation
import Logging
import MediaNestCore
import MediaNestQueue
import ServiceLifecycle

/// Gives the worker's free heap memory back to the kernel once the worker is quiet: its
/// ``JobPool`` idle and its ``ResultWriter`` holding no finished run (``IdleReclaimPolicy``).
///
/// Between jobs, what a worker holds beyond its start-up size is mostly free memory of the C
/// heap, not live objects. Decoders and encoders (FFmpeg, libheif, libjpeg-turbo, libwebp, x264)
/// allocate frame-sized buffers on every thread that runs them; glibc serves each thread from an
/// arena of its own (up to 8 per core) and keeps what a job freed in that arena for the next one.
/// It also raises its mmap threshold to the largest block freed so far (up to 32 MiB), so after
/// the first big frame, later frames come from the arenas instead of from `mmap` and stay there
/// once freed. FFmpeg's buffer pools, codec contexts and libheif's decoders are freed at the end
/// of each job into those arenas; the runtime keeps no media cache of its own. The last of a
/// run's memory goes when the writer lets go of its outcome, which is why the writer, not only
/// the pool, must be quiet.
///
/// `malloc_trim(0)` (glibc 2.8 and later) returns the free pages inside every arena with
/// `madvise(MADV_DONTNEED)`, not only the top of the main heap, which is what brings an idle
/// worker back near its start-up RSS. It takes a few milliseconds and the next job faults its
/// pages in again, which is why it waits for the worker to stay quiet rather than running after
/// every job. What it cannot return is pages pinned by live blocks scattered through many
/// arenas, which is why the daemon also keeps one arena per core (``MallocArenaLimit``). Fixing
/// the mmap threshold (`M_MMAP_THRESHOLD`) instead would cost page faults on every frame of
/// every job.
///
/// The pool and the writer report to it from their threads; it gives memory back on a thread
/// of its own (a service of the runtime's group), which sleeps until the policy says memory is
/// due and is woken by every report that may make it due sooner.
final class MemoryReclaimer: Service, Sendable {
    /// How long the worker must stay quiet before memory is given back.
    let settle: Duration
    private let release: @Sendable () -> Void
    private let logger: Logger?
    private struct Fields {
        var policy: IdleReclaimPolicy
        var stopped = false
    }
    /// Only to sleep on and wake; what it guards is in `fields`.
    private let condition = NSCondition()
    /// A ``ContendedLock``, not a `Mutex`: every pool thread reports through it for every job
    /// while the writer's thread does too, and ThreadSanitizer cannot see a contended `Mutex`
    /// change hands (it reported this lock's sections as races).
    private let fields: ContendedLock<Fields>

    /// How long the runtime's worker waits, quiet, before giving memory back.
    static let defaultSettle: Duration = .seconds(1)

    /// - Parameters:
    ///   - settle: How long the worker must stay quiet first.
    ///   - logger: Where each reclaim is reported, at debug level, with the RSS before and after.
    ///   - release: What gives memory back; `malloc_trim(0)` unless a test passes its own.
    init(settle: Duration = MemoryReclaimer.defaultSettle, logger: Logger? = nil,
         release: @escaping @Sendable () -> Void = { _ = malloc_trim(0) }) {
        self.settle = settle
        self.logger = logger
        self.release = release
        self.fields = ContendedLock(Fields(policy: IdleReclaimPolicy(settle: settle)))
    }

    // MARK: Reports (from the pool's and the writer's threads)

    /// A pool thread picked up a job after the pool had gone idle.
    func workStarted() { fields.withLock { $0.policy.workStarted() } }

    /// Every pool thread is idle and nothing waits.
    func poolWentIdle(at now: ContinuousClock.Instant = .now) { updateAndWake { $0.poolWentIdle(at: now) } }

    /// Finished runs were handed to the writer (before the pool thread that made them goes idle).
    func outcomesHanded(_ count: Int) { fields.withLock { $0.policy.outcomesHanded(count) } }

    /// The writer let go of `count` finished runs: written or given up, and no longer referenced.
    func outcomesLetGo(_ count: Int, at now: ContinuousClock.Instant = .now) {
        guard count > 0 else { return }
        updateAndWake { $0.outcomesLetGo(count, at: now) }
    }

    /// The policy as it stands (for tests and logs).
    var policy: IdleReclaimPolicy { fields.withLock { $0.policy } }

    /// Changes the policy under the condition's lock, so the reclaimer's thread, which checks
    /// the policy under that lock before it sleeps, cannot miss the wake-up.
    private func updateAndWake(_ body: (inout IdleReclaimPolicy) -> Void) {
        condition.lock()
        fields.withLock { body(&$0.policy) }
        condition.signal()
        condition.unlock()
    }

    // MARK: Giving memory back

    /// Gives memory back if the policy says it is due at `now`, once per quiet spell.
    /// - Returns: Whether it did.
    @discardableResult
    func reclaimIfDue(at now: ContinuousClock.Instant = .now) -> Bool {
        let due = fields.withLock { fields -> Bool in
            guard fields.policy.isDue(at: now) else { return false }
            fields.policy.reclaimed()
            return true
        }
        if due { reclaim() }
        return due
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

    /// Sleeps until memory is due and gives it back, until the group stops the service.
    func run() async {
        await runOnOwnThread(named: "medianest-reclaimer", stop: stop) { [self] in loop() }
    }

    func stop() {
        condition.lock()
        fields.withLock { $0.stopped = true }
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while true {
                let (stopped, due) = fields.withLock { ($0.stopped, $0.policy.reclaimAt) }
                if stopped {
                    condition.unlock()
                    return
                }
                if let due, due <= .now { break }
                if let due {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: max(0.001, (due - .now).seconds)))
                } else {
                    condition.wait()
                }
            }
            condition.unlock()
            // Outside the lock: reports made meanwhile do not wait for the trim.
            reclaimIfDue()
        }
    }

    /// This process's resident set (`/proc/self/statm`), in bytes; 0 where there is no /proc.
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
