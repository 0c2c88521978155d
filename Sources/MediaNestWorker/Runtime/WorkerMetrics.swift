import CoreMetrics
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import Metrics
import Synchronization

/// The worker's swift-metrics instruments. Which backend receives them is the executable's
/// choice (`MetricsSystem.bootstrap`); without one they cost next to nothing.
///
/// Names (Prometheus style; `type` is the job type):
/// - `medianest_jobs_claimed_total{type}`, `medianest_jobs_completed_total{type}`,
///   `medianest_jobs_failed_total{type}` (failed for good), `medianest_jobs_retried_total{type}`
///   (failed, will run again);
/// - `medianest_lease_rescues_total`, `medianest_poison_jobs_total`,
///   `medianest_database_reconnects_total`;
/// - `medianest_job_duration_seconds{type}` (a timer: a histogram in Prometheus), completed runs;
/// - `medianest_bytes_read_total{type}`: bytes handlers read from media files, every run
///   (completed or not), counted by the run's ``MediaNestCore/ByteCounter``;
/// - gauges `medianest_jobs_in_flight{type}`, `medianest_queue_depth{type}` and
///   `medianest_queue_oldest_pending_seconds{type}` (runnable pending jobs, sampled by one
///   grouped query every 15 s while a backend is bootstrapped).
final class WorkerMetrics: Sendable {
    let leaseRescues = Counter(label: "medianest_lease_rescues_total")
    let poisonJobs = Counter(label: "medianest_poison_jobs_total")
    let databaseReconnects = Counter(label: "medianest_database_reconnects_total")
    private let types: [JobType]
    private let claimedCounters: [JobType: Counter]
    private let completedCounters: [JobType: Counter]
    private let failedCounters: [JobType: Counter]
    private let retriedCounters: [JobType: Counter]
    private let durations: [JobType: Metrics.Timer]
    private let bytesReadCounters: [JobType: Counter]
    private let inFlight: [JobType: Gauge]
    private let depth: [JobType: Gauge]
    private let oldest: [JobType: Gauge]
    /// In-process totals for systemd's STATUS= line.
    private let totals = Mutex<(completed: Int, failed: Int)>((0, 0))
    /// Whether a backend is bootstrapped, so the queue is worth sampling.
    let sampling: Bool

    init(types: [JobType]) {
        self.types = types
        func per<T>(_ make: (JobType) -> T) -> [JobType: T] { Dictionary(uniqueKeysWithValues: types.map { ($0, make($0)) }) }
        claimedCounters = per { Counter(label: "medianest_jobs_claimed_total", dimensions: [("type", $0.rawValue)]) }
        completedCounters = per { Counter(label: "medianest_jobs_completed_total", dimensions: [("type", $0.rawValue)]) }
        failedCounters = per { Counter(label: "medianest_jobs_failed_total", dimensions: [("type", $0.rawValue)]) }
        retriedCounters = per { Counter(label: "medianest_jobs_retried_total", dimensions: [("type", $0.rawValue)]) }
        bytesReadCounters = per { Counter(label: "medianest_bytes_read_total", dimensions: [("type", $0.rawValue)]) }
        durations = per { Metrics.Timer(label: "medianest_job_duration_seconds", dimensions: [("type", $0.rawValue)], preferredDisplayUnit: .seconds) }
        inFlight = per { Gauge(label: "medianest_jobs_in_flight", dimensions: [("type", $0.rawValue)]) }
        depth = per { Gauge(label: "medianest_queue_depth", dimensions: [("type", $0.rawValue)]) }
        oldest = per { Gauge(label: "medianest_queue_oldest_pending_seconds", dimensions: [("type", $0.rawValue)]) }
        sampling = !(MetricsSystem.factory is NOOPMetricsHandler)
    }

    func claimed(_ type: JobType) { claimedCounters[type]?.increment() }

    /// Adds what one run read from its media file. A run that read nothing (the queue bench's
    /// no-op handler) touches no counter.
    func read(_ bytes: Int64, type: JobType) {
        guard bytes > 0 else { return }
        bytesReadCounters[type]?.increment(by: bytes)
    }

    func completed(_ type: JobType, duration: Duration) {
        completedCounters[type]?.increment()
        durations[type]?.recordNanoseconds(Int64(duration.seconds * 1e9))
        totals.withLock { $0.completed += 1 }
    }

    func failed(_ type: JobType) {
        failedCounters[type]?.increment()
        totals.withLock { $0.failed += 1 }
    }

    func retried(_ type: JobType) {
        retriedCounters[type]?.increment()
        totals.withLock { $0.failed += 1 }
    }

    /// Completed and failed (including retried) runs since start.
    var finishedTotals: (completed: Int, failed: Int) { totals.withLock { $0 } }

    func updateInFlight(_ running: [JobType: Int]) {
        for type in types { inFlight[type]?.record(running[type] ?? 0) }
    }

    func updateQueue(types: [JobType], rows: [(String, Int64, Double)]) {
        let byType = Dictionary(rows.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { first, _ in first })
        for type in types {
            let (count, age) = byType[type.rawValue] ?? (0, 0)
            depth[type]?.record(count)
            oldest[type]?.record(age)
        }
    }
}
