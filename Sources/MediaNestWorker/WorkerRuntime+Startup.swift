import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// The start-up checks: what must hold before any service touches the database or the disk.
extension WorkerRuntime {
    /// Checks, before anything runs, what no retry would fix: the storage root (absolute, present,
    /// a directory) and the database (it exists, the role and password work, the schema is
    /// migrated). While the server merely cannot be reached (down, starting up) it waits, with a
    /// warning per try, until it can or a shutdown is requested.
    /// - Returns: `false` when a shutdown was requested while waiting.
    /// - Throws: ``WorkerStartupError`` (exit code 78) naming the fault and what to do.
    public func checkEnvironment() async throws(WorkerStartupError) -> Bool {
        if let storage = configuration.storage {
            try StorageRootMonitor.validateAtStart(storage.root)
            try StorageRootMonitor.validateDerivedRootAtStart(storage.derivedRoot)
        }
        var backoff: Duration = .milliseconds(250)
        while true {
            let database = configuration.database
            let logger = self.logger
            // libpq blocks; keep it off the cooperative pool.
            let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<DatabasePreflight.Outcome, WorkerStartupError>, Never>) in
                Thread.detachNewThread {
                    continuation.resume(returning: Result { () throws(WorkerStartupError) in try DatabasePreflight.check(database, logger: logger) })
                }
            }
            switch outcome {
            case .success(.ready):
                return true
            case .success(.unreachable(let error)):
                logger.warning("database unreachable at start; waiting for it", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(backoff.seconds * 1000))"])
            case .failure(let error):
                throw error
            }
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            try? await Task.sleep(for: backoff)
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}
