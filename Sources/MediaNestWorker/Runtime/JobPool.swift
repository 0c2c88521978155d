import CoreMetrics
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// The threads that run handlers: exactly `threads` of them, started at once and owned by the
/// runtime, never Swift's cooperative pool (FFmpeg, libmagic and file reads block) and never a
/// concurrent `DispatchQueue`, whose width follows libdispatch's thread growth rather than
/// `--concurrency`.
///
/// Work waits in a FIFO until a thread is free. The claim loop never claims more than there
/// are free slots, so the queue is normally empty; a job does wait for a thread when a stopped
/// run (lease lost, shutdown) still occupies one. The closure is told nothing about the wait:
/// the caller starts the job's clock in it (see ``JobCancellation/startClock(timeout:)``), and
/// the heartbeat keeps the lease of a waiting job as it does for a running one.
///
/// With a ``MemoryReclaimer``, the pool tells it when every thread has gone idle and when a
/// thread picks up work again, under the pool's lock, so the reclaimer sees the pool's spells in
/// order; the reclaimer decides when memory goes back, on its own thread.
///
/// Its life is one ``State``: made, running (threads started by the first submission),
/// draining (``shutdown()``: queued work still runs, nothing new is taken), stopped (every
/// thread has returned, see ``join(until:)``). Submitting once it drains throws
/// ``Closed``: the caller decides what becomes of work no thread will run.
// @unchecked Sendable: every mutable field is read and written only while `condition` is held
// (the threads sleep on it, so a Mutex cannot replace it); `size` and `reclaimer` are constants.
final class JobPool: @unchecked Sendable {
    /// Where the pool is in its life.
    enum State: Equatable {
        /// Made; no thread yet.
        case idle
        /// Threads started; work is taken.
        case running
        /// ``shutdown()`` was called: queued work still runs, then the threads return.
        case draining
        /// Every thread has returned.
        case stopped
    }

    /// Work was submitted after ``shutdown()``; it will not run.
    struct Closed: Error, CustomStringConvertible {
        var count: Int
        var description: String { "the job pool is shut down; \(count) submitted run(s) will not run" }
    }

    private let condition = NSCondition()
    private var state = State.idle
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    /// Threads started and not yet returned.
    private var live = 0
    /// Threads asleep in `condition.wait()`.
    private var idle = 0
    /// The number of threads.
    let size: Int
    /// Told when the pool goes idle and busy again; `nil`: nobody.
    private let reclaimer: MemoryReclaimer?
    /// The reclaimer was last told the pool is idle (and not busy since). A pool that has run
    /// nothing counts as idle, so its first job is reported.
    private var reportedIdle = true

    /// A pool of `threads` threads named `medianest-job-N`, started with the first ``submit(_:)``
    /// (a runtime that is made but never run starts none).
    /// - Parameter reclaimer: Told when the pool goes idle and busy again.
    init(threads: Int, reclaimer: MemoryReclaimer? = nil) {
        size = max(1, threads)
        self.reclaimer = reclaimer
    }

    /// Where the pool is in its life now.
    var currentState: State {
        condition.lock()
        defer { condition.unlock() }
        return state
    }

    /// Threads started and not yet returned.
    var liveThreads: Int {
        condition.lock()
        defer { condition.unlock() }
        return live
    }

    /// Called with `condition` held.
    private func startThreads() {
        for index in 0..<size {
            live += 1
            // FFmpeg's decoders and libheif use deep stacks; do not depend on the default.
            startThread(named: "medianest-job-\(index)", stackSize: 8 << 20) { [self] in
                work()
                condition.lock()
                live -= 1
                if live == 0 && state == .draining { state = .stopped }
                condition.broadcast()
                condition.unlock()
            }
        }
    }

    /// Queues `bodies`, in order, for the next free threads.
    ///
    /// One idle thread is woken; each thread that takes work and sees more waiting wakes the
    /// next idle one. A batch of short jobs is then run by as many threads as it keeps busy,
    /// not by one futex wake-up per job, and a batch of long ones still starts on every free
    /// thread within microseconds.
    /// - Throws: ``Closed`` after ``shutdown()``: none of `bodies` will run.
    func submit(contentsOf bodies: [@Sendable () -> Void]) throws(Closed) {
        guard !bodies.isEmpty else { return }
        condition.lock()
        defer { condition.unlock() }
        switch state {
        case .draining, .stopped:
            throw Closed(count: bodies.count)
        case .idle:
            state = .running
            startThreads()
        case .running:
            break
        }
        queue.append(contentsOf: bodies)
        if idle > 0 { condition.signal() }
    }

    /// Queues `body` for the next free thread.
    /// - Throws: ``Closed`` after ``shutdown()``.
    func submit(_ body: @escaping @Sendable () -> Void) throws(Closed) {
        try submit(contentsOf: [body])
    }

    /// Stops taking work: what is queued still runs, then the threads return. Does not wait;
    /// see ``join(until:)``.
    func shutdown() {
        condition.lock()
        switch state {
        case .idle: state = .stopped
        case .running: state = live == 0 ? .stopped : .draining
        case .draining, .stopped: break
        }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits, after ``shutdown()``, until every thread has returned or `deadline` passes (a
    /// handler stuck in C code does not return; the process may exit without it).
    /// - Returns: Whether every thread returned.
    @discardableResult
    func join(until deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        precondition(state != .idle && state != .running, "join(until:) waits for a pool that was shut down")
        while live > 0 {
            let remaining = deadline - .now
            if remaining <= .zero { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return true
    }

    private func work() {
        while true {
            condition.lock()
            while head == queue.count && state == .running {
                idle += 1
                if idle == size && !reportedIdle {
                    reportedIdle = true
                    reclaimer?.poolWentIdle()
                }
                condition.wait()
                idle -= 1
            }
            if head == queue.count {
                condition.unlock()
                return
            }
            let body = queue[head]
            head += 1
            if reportedIdle {
                reportedIdle = false
                reclaimer?.workStarted()
            }
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            } else if idle > 0 {
                // Pass the wake-up on: more work waits and a thread sleeps.
                condition.signal()
            }
            condition.unlock()
            body()
        }
    }
}
