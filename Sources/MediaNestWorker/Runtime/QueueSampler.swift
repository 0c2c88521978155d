import MediaNestDB
import MediaNestQueue

/// The queue gauges' reading: one grouped query for the runnable pending jobs of each served
/// type, their count and the age of the oldest. The scheduler asks for it every
/// ``WorkerRuntime/queueSampleInterval``, and only while a metrics backend is bootstrapped: a
/// worker nobody scrapes pays nothing.
struct QueueSampler: Sendable {
    var types: [JobType]

    /// - Returns: `(job_type, depth, oldest pending seconds)` for each type that has any.
    func sample(_ connection: PGConnection) throws -> [(String, Int64, Double)] {
        try connection.query("""
            SELECT job_type, count(*)::int8 AS depth,
                   coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8 AS oldest
              FROM processing_jobs
             WHERE status = 'pending' AND run_at <= now() AND job_type = ANY($1::text[])
             GROUP BY job_type
            """, [types.map(\.rawValue)]).map { row in
            (try row.decode("job_type", as: String.self), try row.decode("depth", as: Int64.self), try row.decode("oldest", as: Double.self))
        }
    }
}
