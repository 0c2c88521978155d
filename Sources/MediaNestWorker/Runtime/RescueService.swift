import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

/// The rescuer (River's `JobRescuer`): every ``WorkerConfiguration/rescueInterval`` it puts
/// back to pending the running jobs whose leases expired, because their worker died, hung or
/// lost the database (``JobStore/rescueExpired(excluding:on:)``: one worker at a time, the lost
/// run uncharged, the job marked to run alone; a job lost again while running alone fails as
/// poison).
///
/// Runs on a thread of its own over the writer's connection (one call per pass on its serial
/// queue), from the moment the start-up checks passed until the runtime's shutdown request;
/// when it put jobs back it wakes the scheduler, which claims them (alone) at once. This
/// worker's own runs are never rescued here, even when their leases ran out: they are still in
/// flight, and their end is fenced by the executor (``RunOutcome/ReleaseReason/leaseLost``).
final class RescueService: Service, Sendable {
    private let database: PGConnectionRunner
    private let store: JobStore
    private let metrics: WorkerMetrics
    private let state: RuntimeState
    private let interval: Duration
    private let logger: Logger
    private let stopFlag = StopFlag()

    /// - Parameters:
    ///   - database: The writer's connection.
    ///   - state: The runs in flight here (never rescued by this worker), and the scheduler's inbox.
    ///   - interval: Time between passes.
    init(database: PGConnectionRunner, store: JobStore, metrics: WorkerMetrics, state: RuntimeState, interval: Duration, logger: Logger) {
        self.database = database
        self.store = store
        self.metrics = metrics
        self.state = state
        self.interval = interval
        self.logger = logger
    }

    func run() async {
        await runOnOwnThread(named: "medianest-rescuer", stop: stopFlag.stop) { [self] in loop() }
    }

    /// Returns only once the group stops the service; from the shutdown request on it rescues
    /// nothing.
    private func loop() {
        // Nothing touches the database before the start-up checks passed.
        while !state.withLock({ $0.started }) {
            if !stopFlag.sleep(until: .now + .milliseconds(100)) { return }
        }
        let lane = DatabaseLane(database, metrics: metrics)
        var next = ContinuousClock.now
        while stopFlag.sleep(until: next) {
            next = .now + interval
            guard !state.withLock({ $0.shutdownRequestedAt != nil }) else { continue }
            if rescueOnce(on: lane) > 0 { state.post(.woken) }
        }
    }

    /// One pass. - Returns: How many jobs went back to pending.
    private func rescueOnce(on lane: DatabaseLane) -> Int {
        let running = state.withLock { Array($0.inFlight.keys) }
        guard let report = lane.call("rescue", logger: logger, { try store.rescueExpired(excluding: running, on: $0) }) else {
            // A schema fault is the claim loop's to stop the worker for: it meets it at its next claim.
            if let fatal = lane.fatal { logger.error("rescue failed", metadata: ["error": "\(fatal)"]) }
            return 0
        }
        if !report.requeued.isEmpty {
            metrics.leaseRescues.increment(by: Int64(report.requeued.count))
            logger.warning("rescued jobs whose worker stopped heartbeating; they will run alone", metadata: ["jobs": "\(report.requeued.joined(separator: ","))"])
        }
        if !report.poisoned.isEmpty {
            metrics.poisonJobs.increment(by: Int64(report.poisoned.count))
            logger.error("jobs failed as poison: they crashed the worker while running alone", metadata: ["jobs": "\(report.poisoned.joined(separator: ","))"])
        }
        return report.requeued.count
    }
}
