import Foundation
import MediaNestQueue
import Metrics

/// The runtime's figures for `/metrics` (README, "Metrics and health"), through swift-metrics:
/// whatever backend the process bootstrapped receives them (swift-prometheus in `run`), and
/// without one they cost nothing.
///
/// The handles are made once per job type at start-up, so recording a job is an atomic add, not
/// a registry lookup, on the queue's hot path. Queue depth, oldest pending age, reconnects and
/// bytes read are not reported yet.
struct WorkerMetrics: Sendable {
    private struct PerType: Sendable {
        let claimed, completed, failed, retried: Counter
        let inFlight: Meter
        let duration: Timer
    }

    private let perType: [JobType: PerType]
    private let rescues = Counter(label: "medianest_lease_rescues_total")
    private let poison = Counter(label: "medianest_poison_jobs_total")

    init(types: [JobType] = JobType.all) {
        var perType: [JobType: PerType] = [:]
        for type in Set(types + JobType.all) {
            let dimensions = [("type", type.rawValue)]
            perType[type] = PerType(
                claimed: Counter(label: "medianest_jobs_claimed_total", dimensions: dimensions),
                completed: Counter(label: "medianest_jobs_completed_total", dimensions: dimensions),
                failed: Counter(label: "medianest_jobs_failed_total", dimensions: dimensions),
                retried: Counter(label: "medianest_jobs_retried_total", dimensions: dimensions),
                inFlight: Meter(label: "medianest_jobs_in_flight", dimensions: dimensions),
                duration: Timer(label: "medianest_job_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds))
        }
        self.perType = perType
    }

    func claimed(_ type: JobType) {
        perType[type]?.claimed.increment()
        perType[type]?.inFlight.increment(by: 1)
    }

    /// A run's handler returned (whatever became of its result).
    func handlerFinished(_ type: JobType, seconds: Double) {
        perType[type]?.inFlight.decrement(by: 1)
        perType[type]?.duration.recordNanoseconds(Int64(seconds * 1e9))
    }

    func completed(_ type: JobType) { perType[type]?.completed.increment() }
    func failed(_ type: JobType) { perType[type]?.failed.increment() }
    func retried(_ type: JobType) { perType[type]?.retried.increment() }

    func rescued(requeued: Int, poisoned: Int) {
        if requeued > 0 { rescues.increment(by: requeued) }
        if poisoned > 0 { poison.increment(by: poisoned) }
    }
}
