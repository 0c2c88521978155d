import MediaNestQueue
@testable import MediaNestWorker
import Testing

/// Drives a ``Scheduler`` the way the claim loop does, with a manual clock and a scripted
/// database: pending jobs by type, a run-alone job, what a drain check finds.
private struct Harness {
    var scheduler: Scheduler
    var now: ContinuousClock.Instant
    var storageAvailable = true
    var pending: [JobType: Int] = [:]
    var runAloneJob: Scheduler.Claim?
    var runAloneWaits = false
    var runnable = true
    var estimate: Int64 = 0
    /// Answers `nil` (database unreachable) to every query.
    var databaseDown = false
    private var nextID = 0

    init(_ settings: Scheduler.Settings, random: Double = 0.5) {
        let start = ContinuousClock.now
        now = start
        scheduler = Scheduler(settings: settings, now: start, random: { random })
    }

    mutating func advance(_ duration: Duration) { now += duration }
    mutating func post(_ events: Scheduler.Event...) { for event in events { scheduler.handle(event, now: now) } }

    /// One wake-up: every action up to the sleep (or the exit), answering the queries.
    @discardableResult
    mutating func cycle() -> [Scheduler.Action] {
        scheduler.tick(now: now, storageAvailable: storageAvailable)
        var actions: [Scheduler.Action] = []
        while true {
            let action = scheduler.next()
            actions.append(action)
            switch action {
            case .sleep, .exit: return actions
            case .stopRuns, .release, .sampleQueue: break
            case .claimRunAlone:
                let found = runAloneJob.map { [$0] } ?? []
                runAloneJob = nil
                _ = scheduler.start(scheduler.claimResult(databaseDown ? nil : found).start)
            case .checkRunAloneWaiting: scheduler.runAloneWaiting(databaseDown ? nil : runAloneWaits)
            case .claim(let slots, let limit):
                var claimed: [Scheduler.Claim] = []
                for type in slots.keys.sorted() {
                    let take = min(slots[type] ?? 0, pending[type] ?? 0, limit - claimed.count)
                    guard take > 0 else { continue }
                    pending[type, default: 0] -= take
                    for _ in 0..<take {
                        nextID += 1
                        claimed.append(Scheduler.Claim(jobID: "job-\(nextID)", type: type, estimate: estimate))
                    }
                }
                let decision = scheduler.claimResult(databaseDown ? nil : claimed)
                _ = scheduler.start(decision.start)
                // Handed back: pending again.
                for claim in decision.handBack { pending[claim.type, default: 0] += 1 }
            case .checkDrained: scheduler.drainChecked(runnable: databaseDown ? nil : runnable)
            }
        }
    }

    /// Handler returned and result written, for every run of `type` (or every run).
    mutating func finishAll(_ type: JobType? = nil, write: Bool = true) {
        for run in scheduler.runs.values where type == nil || run.claim.type == type {
            post(.finished(jobID: run.claim.jobID, token: run.token))
            if write { post(.written(jobID: run.claim.jobID, token: run.token)) }
        }
    }
}

private func claims(_ actions: [Scheduler.Action]) -> [Scheduler.Action] {
    actions.filter { if case .claim = $0 { true } else if case .claimRunAlone = $0 { true } else { false } }
}

private func settings(concurrency: Int = 4, types: [JobType] = ["metadata", "thumbnail"]) -> Scheduler.Settings {
    Scheduler.Settings(types: types, concurrency: concurrency)
}

/// The claim loop's policies, decided by the ``Scheduler`` alone: no database, no threads, no
/// sleeps; time moves only when a test moves it.
@Suite("scheduler")
struct SchedulerTests {
    @Test func claimsFillTheFreeSlotsOverallAndPerType() {
        var config = settings(concurrency: 4)
        config.perTypeLimits = ["thumbnail": 1]
        var harness = Harness(config)
        harness.pending = ["metadata": 2, "thumbnail": 5]
        let first = harness.cycle()
        #expect(claims(first) == [.claimRunAlone, .claim(slots: ["metadata": 4, "thumbnail": 1], limit: 4)])
        #expect(harness.scheduler.running == ["metadata": 2, "thumbnail": 1])
        // One metadata run finishes: one slot overall, none for thumbnails (one runs).
        let done = harness.scheduler.runs.values.first { $0.claim.type == "metadata" }!
        harness.post(.finished(jobID: done.claim.jobID, token: done.token))
        #expect(claims(harness.cycle()) == [.claim(slots: ["metadata": 2, "thumbnail": 0], limit: 2)])
    }

    @Test func nothingIsClaimedWithoutAWakeUpBeforeTheJitteredPoll() {
        var fast = Harness(settings(), random: 0)
        fast.cycle()
        fast.pending = ["metadata": 1]
        // A wake-up-free cycle before the poll claims nothing; the poll is 5 s × 0.8.
        #expect(fast.cycle().last == .sleep(until: fast.now + .seconds(4)))
        fast.advance(.seconds(3))
        #expect(claims(fast.cycle()).isEmpty)
        fast.advance(.seconds(1))
        #expect(claims(fast.cycle()) == [.claimRunAlone, .claim(slots: ["metadata": 4, "thumbnail": 4], limit: 4)])
        // At the other end of the jitter, 5 s × 1.2.
        var slow = Harness(settings(), random: 1)
        slow.cycle()
        guard case .sleep(let until) = slow.cycle().last else { Issue.record("no sleep"); return }
        #expect(abs((until - slow.now).seconds - 6) < 0.001)
    }

    @Test func aHealthyListenSlowsThePollAndItsLossSpeedsItUpAtOnce() {
        var config = settings()
        config.listens = true
        var harness = Harness(config, random: 0)
        harness.post(.listen(healthy: true))
        // 30 s × 0.8 while LISTEN works.
        #expect(harness.cycle().last == .sleep(until: harness.now + .seconds(24)))
        harness.advance(.seconds(1))
        harness.post(.listen(healthy: false))
        #expect(harness.cycle().last == .sleep(until: harness.now + .seconds(4)))
    }

    @Test func aWakeUpClaimsAtOnceAndARetryWakesTheLoopWhenItComesDue() {
        var harness = Harness(settings(), random: 0.5)
        harness.cycle()
        harness.pending = ["thumbnail": 1]
        harness.post(.woken)
        #expect(claims(harness.cycle()).count == 2)
        harness.finishAll()
        harness.cycle()
        harness.post(.retryDue(harness.now + .seconds(2)))
        #expect(harness.cycle().last == .sleep(until: harness.now + .seconds(2)))
        harness.pending = ["thumbnail": 1]
        harness.advance(.seconds(2))
        #expect(claims(harness.cycle()).count == 2)
    }

    @Test func aRunAloneJobRunsWithNothingBesideIt() {
        var harness = Harness(settings())
        harness.pending = ["metadata": 3]
        harness.runAloneJob = Scheduler.Claim(jobID: "rescued", type: "metadata", runAlone: true)
        // Nothing runs: the run-alone job is claimed, and nothing else in that cycle.
        #expect(claims(harness.cycle()) == [.claimRunAlone])
        harness.post(.woken)
        #expect(claims(harness.cycle()).isEmpty)
        harness.finishAll()
        #expect(claims(harness.cycle()) == [.claimRunAlone, .claim(slots: ["metadata": 4, "thumbnail": 4], limit: 4)])
    }

    @Test func aRunAloneJobWaitingBehindRunningJobsStopsTheClaimsUntilTheyFinish() {
        var harness = Harness(settings(), random: 0)
        harness.pending = ["metadata": 1]
        harness.cycle()
        harness.pending = ["metadata": 5]
        harness.runAloneWaits = true
        // Only a poll cycle asks whether a run-alone job waits.
        harness.advance(.seconds(4))
        let polled = harness.cycle()
        #expect(polled.contains(.checkRunAloneWaiting))
        #expect(claims(polled).isEmpty)
        #expect(harness.scheduler.drainingForRunAlone)
        harness.post(.woken)
        #expect(claims(harness.cycle()).isEmpty)
        harness.runAloneJob = Scheduler.Claim(jobID: "rescued", type: "metadata", runAlone: true)
        harness.finishAll()
        #expect(claims(harness.cycle()) == [.claimRunAlone])
        #expect(!harness.scheduler.drainingForRunAlone)
    }

    @Test func aFullWriterBacklogStopsTheClaimsUntilAResultIsWritten() {
        var harness = Harness(settings(concurrency: 2))
        let limit = harness.scheduler.settings.writeBacklogLimit
        #expect(limit == Scheduler.writeBacklogLimit(concurrency: 2))
        let runs = harness.scheduler.start((0..<limit).map { Scheduler.Claim(jobID: "b\($0)", type: "metadata") })
        harness.finishAll(write: false)
        harness.pending = ["metadata": 10]
        #expect(claims(harness.cycle()).isEmpty)
        harness.post(.written(jobID: runs[0].claim.jobID, token: runs[0].token))
        #expect(claims(harness.cycle()) == [.claimRunAlone, .claim(slots: ["metadata": 2, "thumbnail": 2], limit: 2)])
    }

    @Test func aJobRescuedBackToUsReplacesItsOldRun() {
        var harness = Harness(settings())
        let old = harness.scheduler.start([Scheduler.Claim(jobID: "same", type: "metadata")])[0]
        let new = harness.scheduler.start([Scheduler.Claim(jobID: "same", type: "metadata")])[0]
        #expect(harness.scheduler.running["metadata"] == 1)
        // The old run's events no longer count.
        harness.post(.finished(jobID: "same", token: old.token), .written(jobID: "same", token: old.token))
        #expect(harness.scheduler.runs["same"]?.token == new.token)
        #expect(harness.scheduler.running["metadata"] == 1)
    }

    @Test func nothingIsClaimedWhileTheStorageRootIsGoneAndAClaimFollowsItsReturn() {
        var harness = Harness(settings(), random: 0)
        harness.cycle()
        harness.storageAvailable = false
        harness.post(.woken)
        let gone = harness.cycle()
        #expect(claims(gone).isEmpty)
        #expect(gone.last == .sleep(until: harness.now + .seconds(1)))
        harness.advance(.seconds(1))
        harness.storageAvailable = true
        #expect(!claims(harness.cycle()).isEmpty)
    }

    @Test func jobsThatDoNotFitTheMemoryBudgetAreHandedBackAndClaimedFirstWhenThereIsRoom() {
        var config = settings(concurrency: 4, types: ["transcode"])
        config.memoryCapacity = 100
        var harness = Harness(config)
        harness.estimate = 60
        harness.pending = ["transcode": 3]
        harness.cycle()
        #expect(harness.scheduler.runs.count == 1)
        #expect(harness.pending["transcode"] == 2)
        harness.finishAll()
        // The held type is claimed again first, alone in its claim.
        #expect(claims(harness.cycle()).prefix(2) == [.claimRunAlone, .claim(slots: ["transcode": 1], limit: 1)])
    }

    @Test func drainExitsOnceNothingIsInFlightAndNothingIsRunnable() {
        var config = settings()
        config.drain = true
        var harness = Harness(config)
        harness.pending = ["metadata": 1]
        let busy = harness.cycle()
        #expect(!busy.contains(.checkDrained))
        #expect(busy.last == .sleep(until: harness.now + .milliseconds(250)))
        harness.finishAll()
        harness.runnable = true
        #expect(harness.cycle().last != .exit(.drained))
        harness.runnable = false
        #expect(harness.cycle().suffix(2) == [.checkDrained, .exit(.drained)])
    }

    @Test func gracefulShutdownStopsRunsAfterTheGracePeriodAndReleasesThemAtTheHardDeadline() {
        var config = settings()
        config.gracePeriod = .seconds(30)
        var harness = Harness(config)
        harness.pending = ["metadata": 2]
        harness.cycle()
        let ids = harness.scheduler.runs.keys.sorted()
        harness.post(.signal(immediately: false))
        harness.pending = ["metadata": 5]
        harness.post(.woken)
        #expect(harness.cycle() == [.sleep(until: harness.now + .milliseconds(100))])
        harness.advance(.seconds(30))
        #expect(harness.cycle() == [.stopRuns(ids), .sleep(until: harness.now + .milliseconds(100))])
        harness.advance(.seconds(2))
        #expect(claims(harness.cycle()).isEmpty)
        harness.advance(.seconds(1))
        #expect(harness.cycle() == [.release(ids), .exit(.shutdown)])
    }

    @Test func anImmediateStopStopsAtOnceAndAnEmptyWorkerExitsAtOnce() {
        var harness = Harness(settings())
        harness.pending = ["metadata": 1]
        harness.cycle()
        let ids = harness.scheduler.runs.keys.sorted()
        harness.post(.signal(immediately: true))
        #expect(harness.cycle().first == .stopRuns(ids))
        // The handler returns and its result is written: nothing is left to release.
        harness.finishAll()
        #expect(harness.cycle() == [.exit(.shutdown)])

        var idle = Harness(settings())
        idle.cycle()
        idle.post(.signal(immediately: false))
        #expect(idle.cycle() == [.exit(.shutdown)])
    }

    @Test func anUnreachableDatabaseEndsTheClaimPassAndIsAskedAgainNextTime() {
        var harness = Harness(settings())
        harness.databaseDown = true
        harness.pending = ["metadata": 1]
        // The run-alone claim failed: no other claim in this cycle.
        #expect(claims(harness.cycle()) == [.claimRunAlone])
        harness.databaseDown = false
        harness.post(.woken)
        #expect(claims(harness.cycle()).count == 2)
    }
}
