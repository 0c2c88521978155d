import Foundation
import MediaNestTestSupport
@testable import MediaNestWorker
import Synchronization
import Testing

// The limit guards against a hang, not a slow run: under `make test` every test of the process
// shares Swift concurrency's cooperative threads (one per core, two here), and each resumption
// after an `await` queues behind the test starts already waiting for them, so a test of a few
// milliseconds alone has been seen to take over a minute of wall time in a loaded run.
/// When an idle worker gives memory back: the pure policy, the reclaimer over it, then the pool
/// and the reclaimer's thread.
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

    // MARK: The result writer's part

    /// The writer frees the runs' outcomes (and what they keep alive) after the pool went idle:
    /// memory given back before then would miss the last big buffers.
    @Test func nothingIsDueWhileTheWriterStillHoldsOutcomesThoughThePoolIsIdle() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.outcomesHanded(3)
        policy.poolWentIdle(at: t0)
        #expect(policy.reclaimAt == nil, "the writer holds 3 outcomes")
        #expect(!policy.isDue(at: t0 + .seconds(30)))
        policy.outcomesLetGo(2, at: t0 + .seconds(30))
        #expect(!policy.isDue(at: t0 + .seconds(60)), "one outcome is still held")
        policy.outcomesLetGo(1, at: t0 + .seconds(60))
        #expect(policy.reclaimAt == t0 + .seconds(61), "settled from the writer's drain, not from the pool's idle moment")
        #expect(!policy.isDue(at: t0 + .milliseconds(60_999)))
        #expect(policy.isDue(at: t0 + .seconds(61)))
    }

    @Test func aWriterThatDrainedBeforeThePoolWentIdleDoesNotPutItOff() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.outcomesHanded(1)
        policy.outcomesLetGo(1, at: t0)
        #expect(policy.reclaimAt == nil, "the pool is still busy")
        policy.poolWentIdle(at: t0 + .seconds(5))
        #expect(policy.reclaimAt == t0 + .seconds(6))
    }

    @Test func newWorkThatCameAndWentAfterAReclaimIsReclaimedAgain() {
        var policy = IdleReclaimPolicy(settle: .seconds(1))
        policy.workStarted()
        policy.outcomesHanded(1)
        policy.poolWentIdle(at: t0)
        policy.outcomesLetGo(1, at: t0)
        policy.reclaimed()
        #expect(policy.reclaimAt == nil)
        // A result handed over counts as work even when the pool's report of it came first.
        policy.outcomesHanded(1)
        #expect(policy.reclaimAt == nil)
        policy.outcomesLetGo(1, at: t0 + .seconds(10))
        #expect(policy.reclaimAt == t0 + .seconds(11))
    }

    /// The reclaimer object over the policy, driven by hand: the pool goes idle while the
    /// writer holds outcomes, and no memory goes back until the writer let go of them and the
    /// settle time passed.
    @Test func theReclaimerReleasesOnlyOnceTheWriterHasLetGoOfEveryOutcome() {
        let releases = Mutex(0)
        let reclaimer = MemoryReclaimer(settle: .seconds(1)) { releases.withLock { $0 += 1 } }
        reclaimer.workStarted()
        reclaimer.outcomesHanded(2)
        reclaimer.poolWentIdle(at: t0)
        #expect(!reclaimer.reclaimIfDue(at: t0 + .seconds(5)))
        reclaimer.outcomesLetGo(2, at: t0 + .seconds(5))
        #expect(!reclaimer.reclaimIfDue(at: t0 + .milliseconds(5_500)))
        #expect(reclaimer.reclaimIfDue(at: t0 + .seconds(6)))
        #expect(!reclaimer.reclaimIfDue(at: t0 + .seconds(60)), "once per quiet spell")
        #expect(releases.withLock { $0 } == 1)
    }

    /// The pool and the reclaimer's thread: a batch of jobs, then idle, gives memory back once; a
    /// job that keeps a thread busy holds it off; the next idle spell gives back again; and
    /// outcomes still held (as a writer holds them) hold it off too until they are let go of.
    @Test func thePoolReclaimsWhenItGoesIdleAfterWorkAndNotWhileAThreadIsBusy() async throws {
        let reclaims = Mutex(0)
        let reclaimer = MemoryReclaimer(settle: .milliseconds(20)) { reclaims.withLock { $0 += 1 } }
        // As in the runtime, the service's async part runs on an executor of its own: the
        // global pool may be held by other tests for longer than this test waits (it was, in CI).
        let executor = RunExecutor(name: "mn-test-reclaim")
        defer { executor.shutdown() }
        let service = Task(executorPreference: executor) { await reclaimer.run() }
        defer { service.cancel() }
        let pool = JobPool(threads: 2, reclaimer: reclaimer)
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

        // A job whose outcome the writer still holds once the pool is idle again.
        try pool.submit { reclaimer.outcomesHanded(1) }
        #expect(try await waitUntil(timeout: .seconds(10)) { reclaimer.policy.idleSince != nil && reclaimer.policy.outcomesHeld == 1 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(reclaims.withLock { $0 } == 2, "no reclaim while the writer holds an outcome")
        reclaimer.outcomesLetGo(1)
        #expect(try await waitUntil(timeout: .seconds(10)) { reclaims.withLock { $0 } == 3 })
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
