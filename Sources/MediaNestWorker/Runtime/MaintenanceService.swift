import CoreMetrics
import Foundation
import Logging
import MediaNestDB
import MediaNestQueue
import Metrics
import ServiceLifecycle

/// Maintenance run by the daemon: ``Maintenance`` (audit partitions ahead, retention of old
/// rows) every ``WorkerConfiguration/maintenanceInterval``, for hosts that would rather not
/// install `medianest-maintenance.timer`. Off by default; the timer is the documented way.
///
/// - **One host at a time.** ``Maintenance`` takes a session advisory lock; a worker that finds
///   it held counts the run as `skipped` and logs it at debug level only.
/// - **No connection of its own.** It runs over the worker's writer connection (the
///   ``PGConnectionRunner`` that result writes and heartbeats share), keeping the worker at two
///   connections. Each step of a run (the lock, one partition's DDL, one `DELETE` batch, the
///   unlock) is its own call on the runner's queue, so a result write waits for one step at
///   most, never for a whole run.
/// - **Schedule.** The first run comes at a random moment within the first interval (hosts
///   started together do not all try at once), later ones an interval after the previous one
///   started; after a failure, the next try comes within five minutes.
/// - **Shutdown.** At the first signal (the runtime's shutdown request) it stops working: a step
///   in progress finishes, the lock is released, the run ends there, and no other starts. The
///   service itself returns when the group's graceful shutdown reaches it, right after the claim
///   loop drained (it sits before the claim loop in the group: a service that returned out of
///   turn would fail the group).
///
/// It reports each run as one info line with the ``MaintenanceReport`` figures and as metrics
/// (see ``MaintenanceMetrics``).
final class MaintenanceService: Service, Sendable {
    private let state: RuntimeState
    private let database: PGConnectionRunner
    private let interval: Duration
    private let maintenance: Maintenance
    private let logger: Logger
    private let metrics = MaintenanceMetrics()
    private let stopFlag = StopFlag()

    /// Creates the service.
    /// - Parameters:
    ///   - state: Whose start-up and shutdown it follows.
    ///   - database: The worker's writer connection.
    ///   - interval: Time between runs.
    ///   - logger: The worker's logger.
    ///   - policy: Retention and partitioning (the defaults of `medianest-worker maintenance`).
    init(state: RuntimeState, database: PGConnectionRunner, interval: Duration, logger: Logger,
         policy: MaintenancePolicy = MaintenancePolicy()) {
        self.state = state
        self.database = database
        self.interval = interval
        self.logger = logger
        // Maintenance's own per-step lines would repeat what the summary line says; keep only
        // its warnings (a partition left for the next run).
        var quiet = logger
        quiet.logLevel = max(quiet.logLevel, .warning)
        self.maintenance = Maintenance(policy: policy, logger: quiet)
    }

    func run() async {
        await runOnOwnThread(named: "medianest-maintenance", stop: stopFlag.stop) { [self] in loop() }
    }

    /// Whether to stop working: the group's graceful shutdown, or the runtime's own (a signal,
    /// `--drain` finishing), whichever comes first.
    private var stopping: Bool {
        stopFlag.isStopped || state.withLock { $0.shutdownRequestedAt != nil || $0.finished }
    }

    /// Returns only once the group stops the service (``stopFlag``); from the runtime's shutdown
    /// request until then, it starts no run.
    private func loop() {
        // Nothing touches the database before the start-up checks passed.
        while !state.withLock({ $0.started }) {
            if !stopFlag.sleep(until: .now + .milliseconds(100)) { return }
        }
        var next = ContinuousClock.now + interval * Double.random(in: 0..<1)
        while true {
            if !stopFlag.sleep(until: next) { return }
            if stopping {
                next = .now + .seconds(1)
                continue
            }
            let started = ContinuousClock.now
            let succeeded = runOnce()
            next = started + (succeeded ? interval : min(interval, .seconds(300)))
        }
    }

    /// One run, step by step on the result writer's connection.
    /// - Returns: `false` when it failed (the next try comes sooner).
    private func runOnce() -> Bool {
        let report: MaintenanceReport
        do {
            report = try maintenance.run(stopRequested: { [self] in stopping }) { step in
                try database.runBlocking(step)
            }
        } catch is CancellationError {
            logger.info("maintenance stopped for shutdown after its current step; what it did stays done")
            return true
        } catch {
            metrics.failed()
            logger.warning("maintenance failed; it is tried again later", metadata: ["error": "\(error)"])
            return false
        }
        if report.skipped {
            metrics.skipped()
            logger.debug("maintenance skipped: another session holds the maintenance lock",
                         metadata: ["holder_pid": "\(report.lockHolderPID.map(String.init) ?? "unknown")"])
            return true
        }
        metrics.succeeded(report)
        logger.info("maintenance finished", metadata: [
            "partitions_created": "\(report.partitionsCreated.count)", "partitions_dropped": "\(report.partitionsDropped.count)",
            "partitions_detached": "\(report.partitionsDetached.count)", "partitions_deferred": "\(report.partitionsDeferred.count)",
            "audit_default_rows": "\(report.auditDefaultRowsDeleted)", "cache_entries": "\(report.cacheEntriesDeleted)",
            "notifications": "\(report.notificationsDeleted)", "user_sessions": "\(report.userSessionsDeleted)",
            "processing_jobs": "\(report.processingJobsDeleted)", "batches": "\(report.batches)",
            "duration_s": "\(String(format: "%.3f", report.durationSeconds))",
        ])
        return true
    }
}

/// The maintenance service's swift-metrics instruments:
/// - `medianest_maintenance_runs_total{outcome}`: `ok`, `skipped` (another host held the lock)
///   or `failed`; a run stopped by shutdown counts in none;
/// - `medianest_maintenance_rows_deleted_total{table}`: `audit_logs_default`, `cache_entries`,
///   `notifications`, `user_sessions`, `processing_jobs`;
/// - `medianest_maintenance_partitions_total{action}`: `audit_logs` partitions `created`,
///   `dropped` or `detached`;
/// - `medianest_maintenance_last_success_timestamp_seconds`: Unix time of the last `ok` run.
struct MaintenanceMetrics: Sendable {
    private let ok = Counter(label: "medianest_maintenance_runs_total", dimensions: [("outcome", "ok")])
    private let skippedRuns = Counter(label: "medianest_maintenance_runs_total", dimensions: [("outcome", "skipped")])
    private let failedRuns = Counter(label: "medianest_maintenance_runs_total", dimensions: [("outcome", "failed")])
    private let rows: [String: Counter] = Dictionary(uniqueKeysWithValues: MaintenanceMetrics.tables.map {
        ($0, Counter(label: "medianest_maintenance_rows_deleted_total", dimensions: [("table", $0)]))
    })
    private let created = Counter(label: "medianest_maintenance_partitions_total", dimensions: [("action", "created")])
    private let dropped = Counter(label: "medianest_maintenance_partitions_total", dimensions: [("action", "dropped")])
    private let detached = Counter(label: "medianest_maintenance_partitions_total", dimensions: [("action", "detached")])
    private let lastSuccess = Gauge(label: "medianest_maintenance_last_success_timestamp_seconds")

    /// The tables retention deletes from, as the `table` label.
    static let tables = ["audit_logs_default", "cache_entries", "notifications", "user_sessions", "processing_jobs"]

    func succeeded(_ report: MaintenanceReport) {
        ok.increment()
        let deleted = [report.auditDefaultRowsDeleted, report.cacheEntriesDeleted, report.notificationsDeleted,
                       report.userSessionsDeleted, report.processingJobsDeleted]
        for (table, count) in zip(MaintenanceMetrics.tables, deleted) where count > 0 { rows[table]?.increment(by: Int64(count)) }
        if !report.partitionsCreated.isEmpty { created.increment(by: Int64(report.partitionsCreated.count)) }
        if !report.partitionsDropped.isEmpty { dropped.increment(by: Int64(report.partitionsDropped.count)) }
        if !report.partitionsDetached.isEmpty { detached.increment(by: Int64(report.partitionsDetached.count)) }
        lastSuccess.record(Date().timeIntervalSince1970)
    }

    func skipped() { skippedRuns.increment() }
    func failed() { failedRuns.increment() }
}
