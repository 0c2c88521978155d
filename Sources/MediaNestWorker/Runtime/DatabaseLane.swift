import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// One service's use of a connection, with its own reconnect backoff: while the database is
/// down, calls are skipped until ``retryAt`` instead of blocking the service.
///
/// The result writer and the heartbeat each hold a lane over the same ``PGConnectionRunner``
/// (one server connection; the runner's serial queue orders their calls); the claim loop holds
/// one over the LISTEN session, or over that same runner with `--no-listen`.
final class DatabaseLane {
    let runner: PGConnectionRunner
    var retryAt: ContinuousClock.Instant = .now
    var backoff: Duration = .milliseconds(100)
    /// Set when a call failed in a way no retry can fix.
    var fatal: String?
    private let metrics: WorkerMetrics

    init(_ runner: PGConnectionRunner, metrics: WorkerMetrics) {
        self.runner = runner
        self.metrics = metrics
    }

    /// Runs `body` unless the database is known to be down; `nil` when skipped or failed.
    func call<T>(_ what: String, logger: Logger, _ body: (PGConnection) throws -> T) -> T? {
        guard ContinuousClock.now >= retryAt else { return nil }
        do {
            let value = try runner.runBlocking(body)
            succeeded()
            return value
        } catch let error as DatabaseError where error.isConnectionProblem {
            noteUnavailable(what, error: error, logger: logger)
            return nil
        } catch let error as DatabaseError where error.isSchemaProblem {
            // Retrying cannot bring back a table or a privilege: only connection-level errors
            // are worth retrying once the worker runs.
            fatal = "the database no longer matches this worker during \(what) (\(error)): run `medianest-worker migrate up`, and check the role's privileges."
            return nil
        } catch {
            logger.error("database call failed", metadata: ["during": "\(what)", "error": "\(error)"])
            retryAt = .now + .milliseconds(500)
            return nil
        }
    }

    /// Records a call that worked: the backoff starts over, and a lane that had lost the
    /// database counts a reconnect.
    func succeeded() {
        if backoff > .milliseconds(100) || unavailable { metrics.databaseReconnects.increment() }
        unavailable = false
        backoff = .milliseconds(100)
    }

    private var unavailable = false

    /// The last call failed for want of a connection.
    var isUnavailable: Bool { unavailable }

    /// Schedules the next try with exponential backoff (0.1 s doubling to 5 s).
    func noteUnavailable(_ what: String, error: DatabaseError, logger: Logger) {
        unavailable = true
        retryAt = .now + backoff
        logger.warning("database unavailable; will retry", metadata: ["during": "\(what)", "retry_in_ms": "\(Int(backoff.seconds * 1000))", "error": "\(error)"])
        backoff = min(backoff * 2, .seconds(5))
    }
}

extension DatabaseError {
    /// An object the worker needs is missing or forbidden (SQLSTATE class `42`: undefined table,
    /// column or function, insufficient privilege; `3F000` invalid schema name).
    var isSchemaProblem: Bool {
        guard kind == .serverError, let state = sqlState else { return false }
        return state.hasPrefix("42") || state == "3F000"
    }
}
