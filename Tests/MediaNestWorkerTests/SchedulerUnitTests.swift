import MediaNestQueue
@testable import MediaNestWorker
import Testing

/// Claimed units (an item's thumbnail and preview claimed together, ``ClaimedUnit``) as the
/// ``Scheduler`` accounts them: one execution on one thread, each job against its own type's
/// slots, and a memory budget that takes or hands back a unit as a whole. No database, no clock.
@Suite("scheduler: claimed units")
struct SchedulerUnitTests {
    private static let stills: [JobType] = [.thumbnail, .preview]

    /// A thumbnail that brought its item's preview along.
    private func unit(_ n: Int, estimate: Int64 = 0) -> [Scheduler.Claim] {
        [Scheduler.Claim(jobID: "t\(n)", type: .thumbnail, estimate: estimate),
         Scheduler.Claim(jobID: "p\(n)", type: .preview, ledBy: "t\(n)")]
    }

    /// Runs a cycle up to its main claim and answers it with `found`.
    private func claim(_ scheduler: inout Scheduler, found: [Scheduler.Claim], now: ContinuousClock.Instant)
        -> (action: Scheduler.Action, decision: (start: [Scheduler.Claim], handBack: [Scheduler.Claim]))? {
        scheduler.tick(now: now, storageAvailable: true)
        while true {
            let action = scheduler.next()
            switch action {
            case .claimRunAlone: _ = scheduler.claimResult([])
            case .checkRunAloneWaiting: scheduler.runAloneWaiting(false)
            case .claim: return (action, scheduler.claimResult(found))
            default: return nil
            }
        }
    }

    @Test func aUnitTakesOneThreadAndEachOfItsJobsASlotOfItsType() {
        let now = ContinuousClock.now
        var settings = Scheduler.Settings(types: Self.stills, concurrency: 2)
        settings.perTypeLimits = [.preview: 1]
        var scheduler = Scheduler(settings: settings, now: now, random: { 0.5 })
        let runs = scheduler.start(unit(1))
        #expect(scheduler.executions == 1)
        #expect(scheduler.running == [.thumbnail: 1, .preview: 1])
        // One thread is still free; the preview that came along took the only preview slot.
        #expect(claim(&scheduler, found: [], now: now)?.action == .claim(slots: [.thumbnail: 1, .preview: 0], limit: 1))
        // The unit's handler returned: both jobs and the thread are free again.
        for run in runs { scheduler.handle(.finished(jobID: run.claim.jobID, token: run.token), now: now) }
        #expect(scheduler.executions == 0)
        #expect(scheduler.running == [.thumbnail: 0, .preview: 0])
        #expect(claim(&scheduler, found: [], now: now)?.action == .claim(slots: [.thumbnail: 2, .preview: 1], limit: 2))
    }

    @Test func aUnitWrittenBeforeItsFinishedEventStillGivesItsThreadBack() {
        let now = ContinuousClock.now
        var scheduler = Scheduler(settings: Scheduler.Settings(types: Self.stills, concurrency: 2), now: now, random: { 0.5 })
        let runs = scheduler.start(unit(1))
        for run in runs { scheduler.handle(.written(jobID: run.claim.jobID, token: run.token), now: now) }
        #expect(scheduler.executions == 0)
        #expect(scheduler.runs.isEmpty)
    }

    @Test func aUnitFitsTheMemoryBudgetOrGoesBackAsAWhole() {
        let now = ContinuousClock.now
        var settings = Scheduler.Settings(types: Self.stills, concurrency: 4)
        settings.memoryCapacity = 100
        var scheduler = Scheduler(settings: settings, now: now, random: { 0.5 })
        guard let (_, decision) = claim(&scheduler, found: unit(1, estimate: 60) + unit(2, estimate: 60), now: now) else {
            Issue.record("no claim")
            return
        }
        // The second unit's lead does not fit: its preview, which estimates nothing of its
        // own, goes back with it rather than run without its lead.
        #expect(decision.start.map(\.jobID) == ["t1", "p1"])
        #expect(decision.handBack.map(\.jobID) == ["t2", "p2"])
    }
}
