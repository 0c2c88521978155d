import Foundation
import MediaNestCore
import MediaNestTestSupport
@testable import MediaNestWorker
import Synchronization
import Testing

// The limit guards against a hang, not a slow run: under `make test` every test of the process
// shares Swift concurrency's cooperative threads (one per core, two here), and each resumption
// after an `await` queues behind the test starts already waiting for them, so a test of a few
// milliseconds alone has been seen to take over a minute of wall time in a loaded run.
/// The job pool owns exactly the configured number of threads, whatever libdispatch would do.
@Suite("job pool", .timeLimit(.minutes(5)))
struct JobPoolTests {
    /// A latch the pool's threads block on until the test opens it.
    final class Latch: Sendable {
        private let condition = NSCondition()
        private let open = Mutex(false)
        func wait() {
            condition.lock()
            while !open.withLock({ $0 }) { condition.wait() }
            condition.unlock()
        }
        func release() {
            condition.lock()
            open.withLock { $0 = true }
            condition.broadcast()
            condition.unlock()
        }
    }

    @Test func runsAtMostItsThreadCountAtOnceAndTheRestWhenAThreadFrees() async throws {
        let pool = JobPool(threads: 2)
        defer { pool.shutdown() }
        let started = Mutex<[Int]>([])
        let threads = Mutex<Set<UInt>>([])
        let latches = (0..<3).map { _ in Latch() }
        for index in 0..<3 {
            try pool.submit {
                started.withLock { $0.append(index) }
                threads.withLock { _ = $0.insert(UInt(pthread_self())) }
                latches[index].wait()
            }
        }
        // Both threads are taken by the first two jobs, which block: the third cannot start.
        #expect(try await waitUntil(timeout: .seconds(10)) { started.withLock { $0.count } == 2 })
        #expect(started.withLock { Set($0) } == [0, 1])
        latches[0].release()
        #expect(try await waitUntil(timeout: .seconds(10)) { started.withLock { $0.count } == 3 })
        latches[1].release()
        latches[2].release()
        // The third job ran on one of the two threads, not on a new one.
        #expect(threads.withLock { $0.count } == 2)
    }

    /// A batch wakes one sleeping thread, and each thread that takes a job and sees more waiting
    /// wakes the next: a batch of blocking jobs must still start on every thread, after the
    /// threads have gone to sleep once.
    @Test func aBatchStartsOnEveryIdleThreadAndRunsInOrder() async throws {
        let pool = JobPool(threads: 4)
        defer { pool.shutdown() }
        // Start the threads and let them all fall asleep.
        let warmed = Mutex(0)
        try pool.submit(contentsOf: (0..<4).map { _ in { warmed.withLock { $0 += 1 } } })
        #expect(try await waitUntil(timeout: .seconds(10)) { warmed.withLock { $0 } == 4 })
        try await Task.sleep(for: .milliseconds(100))

        let started = Mutex<[Int]>([])
        let latch = Latch()
        try pool.submit(contentsOf: (0..<6).map { index in {
            started.withLock { $0.append(index) }
            latch.wait()
        } })
        #expect(try await waitUntil(timeout: .seconds(10)) { started.withLock { $0.count } == 4 })
        // First in, first out: the four oldest started, the other two wait for a thread.
        #expect(started.withLock { Set($0) } == [0, 1, 2, 3])
        latch.release()
        #expect(try await waitUntil(timeout: .seconds(10)) { started.withLock { $0.count } == 6 })
    }

    /// Each thread carries its name where `top -H`, `perf` and gdb read it (the kernel's), not
    /// only in Foundation's `Thread` object.
    @Test func itsThreadsAreNamedForTheKernel() async throws {
        let pool = JobPool(threads: 2)
        defer { pool.shutdown() }
        let names = Mutex<[String]>([])
        let latch = Latch()
        try pool.submit(contentsOf: (0..<2).map { _ in {
            names.withLock { $0.append(currentThreadName()) }
            latch.wait()
        } })
        #expect(try await waitUntil(timeout: .seconds(10)) { names.withLock { $0.count } == 2 })
        latch.release()
        #expect(names.withLock { Set($0) } == ["medianest-job-0", "medianest-job-1"])
    }

    /// Shutdown lets queued work finish, refuses new work with an error the caller sees, and
    /// its threads are joined: none is left once the join returns.
    @Test func shutdownFinishesQueuedWorkRefusesNewWorkAndJoinsItsThreads() async throws {
        let pool = JobPool(threads: 2)
        #expect(pool.currentState == .idle)
        let latch = Latch()
        let ran = Mutex(0)
        try pool.submit(contentsOf: (0..<4).map { _ in {
            latch.wait()
            ran.withLock { $0 += 1 }
        } })
        #expect(pool.currentState == .running)
        #expect(pool.liveThreads == 2)
        pool.shutdown()
        #expect(pool.currentState == .draining)
        #expect(throws: JobPool.Closed.self) { try pool.submit { ran.withLock { $0 += 100 } } }
        // A job holds its thread: the join gives up at its deadline.
        #expect(!pool.join(until: .now + .milliseconds(50)))
        latch.release()
        #expect(pool.join(until: .now + .seconds(30)))
        #expect(pool.liveThreads == 0)
        #expect(pool.currentState == .stopped)
        #expect(ran.withLock { $0 } == 4, "queued work runs; work refused after shutdown never does")
    }

    @Test func aPoolShutDownBeforeItsFirstSubmissionStartsNoThread() {
        let pool = JobPool(threads: 3)
        pool.shutdown()
        #expect(pool.currentState == .stopped)
        #expect(throws: JobPool.Closed.self) { try pool.submit {} }
        #expect(pool.liveThreads == 0)
        #expect(pool.join(until: .now))
    }

    /// A job's time limit counts from when a thread picks it up, not from its claim: the worker
    /// calls `startClock` there (JobExecutor.execute). A token whose limit has long passed since it
    /// was made is not timed out once its clock is started.
    @Test func startingTheClockOnPickUpForgivesTheWait() {
        let cancellation = JobCancellation(timeout: .zero)
        cancellation.startClock(timeout: .seconds(3600))
        #expect(cancellation.stopReason == nil)
        let stopped = JobCancellation(timeout: nil)
        stopped.startClock(timeout: .zero)
        #expect(stopped.stopReason == .timeout)
    }
}
