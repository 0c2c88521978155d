import MediaNestCore
import MediaNestQueue

/// What a claim is to the scheduler, and one cycle of it: the steps of a wake-up, in order, and
/// the claim pass's progress between the driver's reports.
extension Scheduler {
    /// A claimed job as the scheduler sees it.
    struct Claim: Sendable, Equatable {
        var jobID: String
        var type: JobType
        var runAlone = false
        /// Its memory estimate (``JobMemoryEstimator``); for a claimed unit, the lead's holds the
        /// unit's (its largest job's) and the others' are zero.
        var estimate: Int64 = 0
        /// The lead of the claimed unit this job came along with (``ClaimedUnit``): it runs in
        /// the lead's execution, on the lead's thread. `nil` for a unit's lead or a job claimed
        /// alone, each of which is an execution of its own.
        var ledBy: String? = nil
    }

    /// A run in flight: from its claim until its result is written.
    struct Run: Sendable, Equatable {
        var claim: Claim
        var token: UInt64
        var handlerDone = false
    }

    struct Cycle: Equatable {
        let now: Instant
        let storageAvailable: Bool
        var claimNow = false
        /// The cycle came from the fallback poll (no wake-up asked for it): the moment to look
        /// for a run-alone job waiting behind running ones.
        var pollTick = false
        var stage: Stage = .timers
        /// Free handler slots left in this pass, overall and by type.
        var globalFree = 0
        var slots: [JobType: Int] = [:]
        /// Held-back types whose room is free again, to claim one by one.
        var heldTypes: [JobType] = []
        var released = false
    }

    enum Stage: Equatable {
        case timers, claimStart, awaitingRunAlone, awaitingRunAloneCheck, slots, heldClaims
        case awaitingHeldClaim(JobType), mainClaim, awaitingMainClaim, drain, awaitingDrainCheck, drained, done
    }

    /// What a claim (or a run-alone claim) found; `nil` when the database could not be asked.
    typealias ClaimResult = [Claim]?

    /// The next thing to do in this cycle; ends with ``Action/sleep(until:)`` or ``Action/exit(_:)``.
    mutating func next() -> Action {
        guard var cycle else { preconditionFailure("tick(now:storageAvailable:) starts a cycle") }
        let now = cycle.now
        if shutdownAt != nil, let action = shutdownStep(now: now) { return action }
        while true {
            switch cycle.stage {
            case .timers:
                if let action = timerStep(now: now) { self.cycle = cycle; return action }
                cycle.stage = cycle.claimNow ? .claimStart : .drain
            case .claimStart:
                let runningNow = runningCount
                let runAloneActive = runs.values.contains { $0.claim.runAlone && !$0.handlerDone }
                // The writer's `written` wakes the loop once it has caught up.
                if runAloneActive || runs.count - runningNow >= settings.writeBacklogLimit {
                    cycle.stage = .drain
                } else if runningNow == 0 {
                    drainingForRunAlone = false
                    cycle.stage = .awaitingRunAlone
                    self.cycle = cycle
                    return .claimRunAlone
                } else if cycle.pollTick {
                    cycle.stage = .awaitingRunAloneCheck
                    self.cycle = cycle
                    return .checkRunAloneWaiting
                } else {
                    cycle.stage = drainingForRunAlone ? .drain : .slots
                }
            case .slots:
                budget.setReservations(runs.mapValues(\.claim.estimate))
                cycle.globalFree = settings.concurrency - executions
                guard cycle.globalFree > 0 else { cycle.stage = .drain; continue }
                for type in settings.types {
                    let limit = min(settings.perTypeLimits[type] ?? settings.concurrency, settings.concurrency)
                    cycle.slots[type] = max(0, min(limit - (running[type] ?? 0), cycle.globalFree))
                }
                // A job handed back for want of memory is claimed again first, alone in its
                // claim, once its room is free.
                cycle.heldTypes = budget.takeHoldsThatFit()
                cycle.stage = .heldClaims
            case .heldClaims:
                guard cycle.globalFree > 0 else { cycle.stage = .drain; continue }
                guard !cycle.heldTypes.isEmpty else { cycle.stage = .mainClaim; continue }
                let type = cycle.heldTypes.removeFirst()
                guard (cycle.slots[type] ?? 0) > 0 else { continue }
                cycle.stage = .awaitingHeldClaim(type)
                self.cycle = cycle
                return .claim(slots: [type: 1], limit: 1)
            case .mainClaim:
                for type in settings.types {
                    cycle.slots[type] = budget.slots(cycle.slots[type] ?? 0, of: type, minimum: settings.minimumEstimates[type] ?? 0)
                }
                cycle.stage = .awaitingMainClaim
                self.cycle = cycle
                return .claim(slots: cycle.slots, limit: cycle.globalFree)
            case .drain:
                cycle.stage = .done
                // Draining: done once nothing is in flight and the database has nothing runnable.
                if settings.drain, runs.isEmpty, !claimWanted {
                    cycle.stage = .awaitingDrainCheck
                    self.cycle = cycle
                    return .checkDrained
                }
            case .drained:
                self.cycle = cycle
                return .exit(.drained)
            case .done:
                self.cycle = cycle
                return .sleep(until: sleepDeadline(now: now))
            case .awaitingRunAlone, .awaitingRunAloneCheck, .awaitingHeldClaim, .awaitingMainClaim, .awaitingDrainCheck:
                preconditionFailure("report the result of \(cycle.stage) before asking for the next action")
            }
        }
    }

    /// A claim's result: which of the claimed jobs to start, and which to hand back (uncharged)
    /// because they do not fit the memory budget now; their type is held back until there is
    /// room. Start the first with ``start(_:)``, release the others; if that release fails,
    /// start them anyway rather than let their leases expire.
    /// A run-alone job starts whatever its estimate: it runs with nothing beside it.
    mutating func claimResult(_ result: ClaimResult) -> (start: [Claim], handBack: [Claim]) {
        guard var cycle else { preconditionFailure("no cycle") }
        defer { self.cycle = cycle }
        guard let claimed = result else {
            cycle.stage = .drain
            return ([], [])
        }
        switch cycle.stage {
        case .awaitingRunAlone:
            if claimed.isEmpty {
                cycle.stage = .slots
                return ([], [])
            }
            cycle.stage = .drain
            return (claimed, [])
        case .awaitingHeldClaim(let type):
            let admitted = admit(claimed)
            let executions = admitted.start.filter { $0.ledBy == nil }.count
            cycle.globalFree -= executions
            cycle.slots[type, default: 0] -= executions
            cycle.stage = .heldClaims
            return admitted
        case .awaitingMainClaim:
            cycle.stage = .drain
            return admit(claimed)
        default:
            preconditionFailure("no claim was asked for in \(cycle.stage)")
        }
    }

    /// Reserves memory for the claims that fit the budget, in claim order; holds back the
    /// others' types. A claimed unit fits or not as a whole, by its lead's estimate (the
    /// unit's): the jobs that came along follow their lead.
    private mutating func admit(_ claimed: [Claim]) -> (start: [Claim], handBack: [Claim]) {
        var start: [Claim] = []
        var handBack: [Claim] = []
        var leadStarted: [String: Bool] = [:]
        for claim in claimed {
            if let lead = claim.ledBy, let started = leadStarted[lead] {
                if started { start.append(claim) } else { handBack.append(claim) }
                continue
            }
            leadStarted[claim.jobID] = budget.admits(claim.estimate)
            if leadStarted[claim.jobID] == true {
                budget.reserve(claim.jobID, bytes: claim.estimate)
                start.append(claim)
            } else {
                budget.hold(claim.type, bytes: claim.estimate)
                handBack.append(claim)
            }
        }
        return (start, handBack)
    }

    /// Whether a job rescued after a crash waits to run alone (`nil`: the database could not
    /// be asked). While one waits, nothing else is claimed until the running jobs finish.
    /// - Returns: Whether the scheduler just began to wait for it (worth a log line).
    @discardableResult
    mutating func runAloneWaiting(_ waiting: Bool?) -> Bool {
        guard var cycle, cycle.stage == .awaitingRunAloneCheck else { preconditionFailure("no run-alone check was asked for") }
        defer { self.cycle = cycle }
        let began = waiting == true && !drainingForRunAlone
        if waiting == true { drainingForRunAlone = true }
        cycle.stage = drainingForRunAlone ? .drain : .slots
        return began
    }

    /// Whether anything is runnable (`nil`: the database could not be asked); when nothing is,
    /// the next action is ``Action/exit(_:)`` with ``WorkerExit/drained``.
    mutating func drainChecked(runnable: Bool?) {
        guard var cycle, cycle.stage == .awaitingDrainCheck else { preconditionFailure("no drain check was asked for") }
        cycle.stage = runnable == false ? .drained : .done
        self.cycle = cycle
    }
}
