import Foundation
import Logging
import MediaNestCore
import MediaNestQueue

/// Claimed units: an item's jobs claimed together (``ClaimedUnit``: its thumbnail and preview)
/// run as one execution, and each of them still ends in its own ``RunOutcome``.
extension JobExecutor {
    /// Runs the jobs of one claimed unit as one execution on the calling pool thread and decides
    /// each one's outcome.
    ///
    /// Every job starts its own clock and keeps its own cancellation: one that was stopped
    /// while it waited for the thread (a cancel, a lost lease) is not started, and one that is
    /// stopped while the others run ends as its own stop says (the handler checks each job's
    /// token before it commits that job's outputs). The jobs left to start go to the
    /// registry's ``JointJobHandler`` for their types in one call; a job left alone (its
    /// siblings stopped or their items missing) runs in its own type's handler, as if claimed
    /// alone.
    /// - Parameters:
    ///   - runs: The unit's jobs, lead first.
    ///   - storageGone: As for ``execute(_:storageGone:)``.
    /// - Returns: One outcome per run, in the order of `runs`.
    func execute(unit runs: [Run], storageGone: Bool = false) -> [RunOutcome] {
        guard runs.count > 1 else { return runs.map { execute($0, storageGone: storageGone) } }
        guard !storageGone else { return runs.map { _ in .release(.environmentFault(.ioError)) } }
        for run in runs { run.cancellation.startClock(timeout: timeouts[run.work.job.type]) }
        var results = [Result<JobOutcome, JobError>?](repeating: nil, count: runs.count)
        var contexts: [(index: Int, context: JobContext)] = []
        for (index, run) in runs.enumerated() {
            switch context(for: run) {
            case .success(let context): contexts.append((index, context))
            case .failure(let error): results[index] = .failure(error)
            }
        }
        let types = Set(contexts.map(\.context.job.type))
        if contexts.count > 1, types.count == contexts.count, let joint = registry.jointHandler(for: types) {
            for (index, context) in contexts {
                let others = contexts.filter { $0.index != index }.map(\.context.job.id)
                context.logger.info("job started", metadata: ["together_with": "\(others.joined(separator: ","))"])
            }
            let outcomes = joint.run(together: contexts.map(\.context))
            for (position, (index, context)) in contexts.enumerated() {
                results[index] = position < outcomes.count ? outcomes[position]
                    : .failure(JobError(.internalError, "The handler returned no result for this job.", retryable: true))
                countBytesRead(context.bytesRead.total, context.job.type)
            }
        } else {
            for (index, context) in contexts { results[index] = call(context) }
        }
        return runs.enumerated().map { index, run in
            outcome(of: run, result: results[index] ?? .failure(JobError(.internalError, "The job was not run.", retryable: true)))
        }
    }
}
