import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

/// The heartbeat: extends in-flight leases every heartbeat interval (only while jobs are in
/// flight: an idle worker touches no job row) and refreshes the worker's `processing_workers`
/// row every ``WorkerConfiguration/registryInterval``, busy or idle.
///
/// A claimed job waiting for a pool thread is in flight too, so its lease is kept while it
/// waits. Runs on a thread of its own over the result writer's connection, and stops last, after
/// the claim loop has drained, so the leases of draining jobs stay alive.
///
/// The registry row is its own: it writes it and, when it stops after a clean run, removes it.
/// The claim loop used to remove it when it finished, which a `--drain` run could do before the
/// heartbeat's first registration (it waits for the start-up checks): the row was then written
/// after it was removed and outlived the worker until its TTL (a fresh-clone test run saw it).
final class Heartbeat: Service, Sendable {
    private let database: PGConnectionRunner
    private let metrics: WorkerMetrics
    private let state: RuntimeState
    private let store: JobStore
    private let types: [JobType]
    private let configuration: WorkerConfiguration
    private let logger: Logger
    private let stopFlag = StopFlag()

    /// - Parameters:
    ///   - database: The writer's connection.
    ///   - state: The in-flight runs whose leases it extends (and whose cancellation it stops).
    ///   - store: The queue, as this worker.
    ///   - types: The types this worker serves (its registry row says so).
    init(database: PGConnectionRunner, metrics: WorkerMetrics, state: RuntimeState, store: JobStore, types: [JobType],
         configuration: WorkerConfiguration, logger: Logger) {
        self.database = database
        self.metrics = metrics
        self.state = state
        self.store = store
        self.types = types
        self.configuration = configuration
        self.logger = logger
    }

    func run() async {
        await runOnOwnThread(named: "medianest-heartbeat", stop: stopFlag.stop) { [self] in loop() }
    }

    private func loop() {
        // Nothing touches the database before the start-up checks passed.
        while !state.withLock({ $0.started }) {
            if !stopFlag.sleep(until: .now + .milliseconds(100)) { return }
        }
        let lane = DatabaseLane(database, metrics: metrics)
        var nextBeat = ContinuousClock.now
        var nextRegistration = ContinuousClock.now
        var failing = false
        while true {
            if !stopFlag.sleep(until: min(nextBeat, nextRegistration)) {
                unregister(on: lane)
                return
            }
            do {
                if ContinuousClock.now >= nextRegistration {
                    _ = try lane.runner.runBlocking { connection in
                        try store.registerWorker(types: types, concurrency: configuration.concurrency, ttl: configuration.registryTTL, on: connection)
                    }
                    nextRegistration = .now + configuration.registryInterval * Double.random(in: 0.9...1.1)
                }
                if ContinuousClock.now >= nextBeat {
                    try beat(on: lane)
                    nextBeat = .now + configuration.heartbeatInterval
                }
                if failing { logger.notice("heartbeat works again") }
                failing = false
            } catch {
                // Progress not written is written next time; the version check in beat() is only
                // an optimisation, so a lost snapshot costs one stale progress_info.
                if !failing { logger.warning("heartbeat failed; retrying", metadata: ["error": "\(error)"]) }
                failing = true
                let retry = ContinuousClock.now + min(configuration.heartbeatInterval, .seconds(1))
                nextBeat = min(nextBeat, retry)
                nextRegistration = min(nextRegistration, retry)
            }
        }
    }

    /// Removes this worker's registry row, the last write to it, unless the worker stops on a
    /// fatal error (the database no longer matches it, or is gone).
    private func unregister(on lane: DatabaseLane) {
        guard state.withLock({ $0.fatal }) == nil else { return }
        _ = lane.call("unregister", logger: logger) { try store.unregister(on: $0) }
    }

    /// One heartbeat statement for every in-flight job; nothing at all when none is in flight.
    private func beat(on lane: DatabaseLane) throws {
        let beat = state.heartbeatEntries()
        guard !beat.isEmpty else { return }
        // The database stamps the new expiry after this instant: the runs' own view of their
        // lease counts from here (see JobCancellation.extendLease(until:)).
        let sentAt = ContinuousClock.now
        let stops = try lane.runner.runBlocking { connection in
            try store.heartbeat(beat.map(\.entry), on: connection)
        }
        for (entry, cancellation) in beat where stops[entry.jobID] == nil {
            cancellation.extendLease(until: sentAt + configuration.ownedLease)
        }
        guard !stops.isEmpty else { return }
        for (job, reason) in state.stopRuns(stops) {
            let what = switch reason {
            case .cancelled: "job was cancelled; stopping it"
            case .mediaItemDeleted: "the job's media item was deleted; stopping it"
            default: "lost the lease on a job; stopping it"
            }
            JobExecutor.logger(logger, for: job).notice("\(what)")
        }
    }
}
