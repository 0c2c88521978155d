import Foundation
import MediaNestQueue
import Metrics

/// The runtime's figures for `/metrics` (README, "Metrics and health"), through swift-metrics:
/// whatever backend the process bootstrapped receives them (swift-prometheus in `run`), and
/// without one they cost nothing.
///
/// Queue depth, oldest pending age and bytes read are not reported yet (see the session notes).
struct WorkerMetrics: Sendable {
    func claimed(_ type: JobType, count: Int = 1) {
        Counter(label: "medianest_jobs_claimed_total", dimensions: [("type", type.rawValue)]).increment(by: count)
        Meter(label: "medianest_jobs_in_flight", dimensions: [("type", type.rawValue)]).increment(by: Double(count))
    }

    /// A run's handler returned (whatever became of its result).
    func handlerFinished(_ type: JobType, seconds: Double) {
        Meter(label: "medianest_jobs_in_flight", dimensions: [("type", type.rawValue)]).decrement(by: 1)
        Timer(label: "medianest_job_duration_seconds", dimensions: [("type", type.rawValue)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    func completed(_ type: JobType) {
        Counter(label: "medianest_jobs_completed_total", dimensions: [("type", type.rawValue)]).increment()
    }

    func failed(_ type: JobType) {
        Counter(label: "medianest_jobs_failed_total", dimensions: [("type", type.rawValue)]).increment()
    }

    func retried(_ type: JobType) {
        Counter(label: "medianest_jobs_retried_total", dimensions: [("type", type.rawValue)]).increment()
    }

    func rescued(requeued: Int, poisoned: Int) {
        if requeued > 0 { Counter(label: "medianest_lease_rescues_total").increment(by: requeued) }
        if poisoned > 0 { Counter(label: "medianest_poison_jobs_total").increment(by: poisoned) }
    }

    func databaseReconnect() {
        Counter(label: "medianest_database_reconnects_total").increment()
    }
}
