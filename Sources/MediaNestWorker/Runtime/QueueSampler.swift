import MediaNestDB
import MediaNestQueue

/// The queue gauges' reading: the runnable pending jobs of each served type, their count and
/// the age of the oldest, from ``QueueStateReader/runnable(types:on:)``, the reader `status`
/// uses too. The scheduler asks for it every ``WorkerRuntime/queueSampleInterval``, and only
/// while a metrics backend is bootstrapped: a worker nobody scrapes pays nothing.
struct QueueSampler: Sendable {
    var types: [JobType]

    /// - Returns: `(job_type, depth, oldest pending seconds)` for each type that has any.
    func sample(_ connection: PGConnection) throws -> [(String, Int64, Double)] {
        let sample = try QueueStateReader.runnable(types: types, on: connection)
        return sample.runnable.map { ($0.type.rawValue, Int64($0.count), $0.age(at: sample.takenAt)) }
    }
}
