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
final class Heartbeat: Service, @unchecked Sendable {
    private let runtime: WorkerRuntime
    private let lane: DatabaseLane
    private let stopFlag = StopFlag()

    init(runtime: WorkerRuntime, database: PGConnectionRunner) {
        self.runtime = runtime
        self.lane = DatabaseLane(database, metrics: runtime.metrics)
    }

    func run() async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await onOwnThread(named: "medianest-heartbeat") { [self] in loop() }
            } onGracefulShutdown: { [stopFlag] in
                stopFlag.stop()
            }
        } onCancel: { [stopFlag] in
            stopFlag.stop()
        }
    }

    private var logger: Logger { runtime.logger }
    private var configuration: WorkerConfiguration { runtime.configuration }

    private func loop() {
        // Nothing touches the database before the start-up checks passed.
        while !runtime.state.withLock({ $0.started }) {
            if !stopFlag.sleep(until: .now + .milliseconds(100)) { return }
        }
        var nextBeat = ContinuousClock.now
        var nextRegistration = ContinuousClock.now
        var failing = false
        while true {
            if !stopFlag.sleep(until: min(nextBeat, nextRegistration)) { return }
            do {
                if ContinuousClock.now >= nextRegistration {
                    _ = try lane.runner.runBlocking { connection in
                        try runtime.store.registerWorker(types: runtime.types, concurrency: configuration.concurrency, ttl: configuration.registryTTL, on: connection)
                    }
                    nextRegistration = .now + configuration.registryInterval * Double.random(in: 0.9...1.1)
                }
                if ContinuousClock.now >= nextBeat {
                    try beat()
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

    /// One heartbeat statement for every in-flight job; nothing at all when none is in flight.
    private func beat() throws {
        let state = runtime.state
        let (entries, cancellations) = state.withLock { state in
            let runs = Array(state.inFlight.values)
            let entries = runs.map { run -> HeartbeatEntry in
                let current = run.progress.current
                let changed = current.version != run.sentProgressVersion
                run.sentProgressVersion = current.version
                return HeartbeatEntry(jobID: run.work.job.id, leaseID: run.work.job.leaseID,
                                      progress: changed ? current.snapshot?.json : nil)
            }
            return (entries, runs.map { ($0.work.job.id, $0.cancellation) })
        }
        guard !entries.isEmpty else { return }
        // The database stamps the new expiry after this instant: the runs' own view of their
        // lease counts from here (see JobCancellation.extendLease(until:)).
        let sentAt = ContinuousClock.now
        let stops = try lane.runner.runBlocking { connection in
            try runtime.store.heartbeat(entries, on: connection)
        }
        for (id, cancellation) in cancellations where stops[id] == nil {
            cancellation.extendLease(until: sentAt + configuration.ownedLease)
        }
        guard !stops.isEmpty else { return }
        state.withLock { state in
            for (id, reason) in stops {
                guard let run = state.inFlight[id] else { continue }
                run.cancellation.stop(reason)
                let what = switch reason {
                case .cancelled: "job was cancelled; stopping it"
                case .mediaItemDeleted: "the job's media item was deleted; stopping it"
                default: "lost the lease on a job; stopping it"
                }
                runtime.jobLogger(for: run.work.job).notice("\(what)")
            }
        }
    }
}
