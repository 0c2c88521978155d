import Foundation
import MediaNestTestSupport
@testable import MediaNestWorker
import Synchronization
import Testing

// The limit guards against a hang, not a slow run: under `make test` every test of the process
// shares Swift concurrency's cooperative threads (one per core, two here), and each resumption
// after an `await` queues behind the test starts already waiting for them, so a test of a few
// milliseconds alone has been seen to take over a minute of wall time in a loaded run.
/// When an idle pool gives memory back: the pure policy, then the pool that follows it.
@Suite("memory reclaim on idle", .timeLimit(.minutes(5)))
struct MemoryReclaimerTests {
    let t0 = ContinuousClock.now

    @Test func nothingIsDueBeforeAnyWorkRan() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.poolWentIdle(at: t0)
        #expect(policy.reclaimAt == nil)
        #expect(!policy.isDue(at: t0 + .seconds(60)))
    }

    @Test func dueOnceThePoolStayedIdleForTheSettleTimeAfterWork() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        #expect(policy.reclaimAt == nil, "busy: nothing is due")
        policy.poolWentIdle(at: t0)
        #expect(policy.reclaimAt == t0 + .seconds(1))
        #expect(!policy.isDue(at: t0 + .milliseconds(999)))
        #expect(policy.isDue(at: t0 + .seconds(1)))
    }

    @Test func theIdleSpellCountsFromItsFirstMomentNotFromEachReport() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.poolWentIdle(at: t0)
        // A thread that wakes without work reports idle again; the settle time does not restart.
        policy.poolWentIdle(at: t0 + .milliseconds(900))
        #expect(policy.isDue(at: t0 + .seconds(1)))
    }

    @Test func workDuringTheSettleTimePutsItOff() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.poolWentIdle(at: t0)
        policy.workStarted()
        #expect(!policy.isDue(at: t0 + .seconds(5)), "busy again: not while work runs")
        policy.poolWentIdle(at: t0 + .seconds(5))
        #expect(!policy.isDue(at: t0 + .milliseconds(5_500)))
        #expect(policy.isDue(at: t0 + .seconds(6)))
    }

    @Test func onceReclaimedNothingIsDueUntilTheNextJob() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.poolWentIdle(at: t0)
        policy.reclaimed()
        #expect(!policy.isDue(at: t0 + .seconds(60)), "an idle pool is trimmed once, not again and again")
        policy.workStarted()
        policy.poolWentIdle(at: t0 + .seconds(61))
        #expect(policy.isDue(at: t0 + .seconds(62)))
    }

    /// The pool itself: a batch of jobs, then idle, gives memory back once; a job that keeps a
    /// thread busy holds it off; the next idle spell gives back again.
    @Test func thePoolReclaimsWhenItGoesIdleAfterWorkAndNotWhileAThreadIsBusy() async throws {
        let reclaims = Mutex(0)
        let pool = JobPool(threads: 2, reclaimer: MemoryReclaimer(settle: .milliseconds(20)) { reclaims.withLock { $0 += 1 } })
        defer { pool.shutdown() }
        let ran = Mutex(0)
        try pool.submit(contentsOf: (0..<6).map { _ in { ran.withLock { $0 += 1 } } })
        #expect(try await waitUntil(timeout: .seconds(10)) { reclaims.withLock { $0 } == 1 })
        #expect(ran.withLock { $0 } == 6, "memory is given back after the batch, not during it")

        let latch = JobPoolTests.Latch()
        let started = Mutex(false)
        try pool.submit {
            started.withLock { $0 = true }
            latch.wait()
        }
        #expect(try await waitUntil(timeout: .seconds(10)) { started.withLock { $0 } })
        // One thread is idle far longer than the settle time while the other works: not idle.
        try await Task.sleep(for: .milliseconds(200))
        #expect(reclaims.withLock { $0 } == 1, "no reclaim while a job runs")
        latch.release()
        #expect(try await waitUntil(timeout: .seconds(10)) { reclaims.withLock { $0 } == 2 })
    }
}

/// The daemon's cap on glibc malloc arenas.
@Suite("malloc arena limit")
struct MallocArenaLimitTests {
    @Test func oneArenaPerCoreAndNeverFewerThanTwo() {
        #expect(MallocArenaLimit.limit(cores: 1, environment: [:]) == 2)
        #expect(MallocArenaLimit.limit(cores: 2, environment: [:]) == 2)
        #expect(MallocArenaLimit.limit(cores: 16, environment: ["PATH": "/usr/bin"]) == 16)
    }

    @Test func anOperatorsOwnLimitInTheEnvironmentIsKept() {
        #expect(MallocArenaLimit.limit(cores: 4, environment: ["MALLOC_ARENA_MAX": "8"]) == nil)
        #expect(MallocArenaLimit.limit(cores: 4, environment: ["GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0:glibc.malloc.arena_max=1"]) == nil)
        #expect(MallocArenaLimit.limit(cores: 4, environment: ["GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"]) == 4)
    }
}
