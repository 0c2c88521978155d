import MediaNestCore
import MediaNestQueue

/// The scheduler's vocabulary: the ``Event``s its driver feeds it (what happened on other
/// threads) and the ``Action``s it answers with (what the driver must do next).
extension Scheduler {
    /// What happened outside the scheduler.
    enum Event: Sendable, Equatable {
        /// A NOTIFY for our types, the rescuer put jobs back, a new LISTEN session: claim now.
        case woken
        /// LISTEN works (or stopped working): the fallback poll may be slow (must be fast).
        case listen(healthy: Bool)
        /// A handler returned: its slot is free, its result is on its way to the writer.
        case finished(jobID: String, token: UInt64)
        /// A run's result was written (or given up): it leaves the in-flight set.
        case written(jobID: String, token: UInt64)
        /// The writer scheduled a retry whose `run_at` comes at this instant.
        case retryDue(Instant)
        /// Shut down: after the grace period, or at once.
        case signal(immediately: Bool)
    }

    /// What the driver must do next.
    enum Action: Equatable {
        /// Stop these running handlers for shutdown.
        case stopRuns([String])
        /// Put these runs back to pending, uncharged: their handlers did not return in time.
        case release([String])
        case exit(WorkerExit)
        case sampleQueue
        /// Claim a job rescued after a crash, to run alone; report with ``claimResult(_:)``.
        case claimRunAlone
        /// Ask whether a run-alone job waits; report with ``runAloneWaiting(_:)``.
        case checkRunAloneWaiting
        /// Claim at most `limit` jobs, at most `slots[type]` of each type; report with ``claimResult(_:)``.
        case claim(slots: [JobType: Int], limit: Int)
        /// Ask whether anything is runnable; report with ``drainChecked(runnable:)``.
        case checkDrained
        /// Sleep until then, or until an event arrives.
        case sleep(until: Instant)
    }
}
