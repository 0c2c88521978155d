import Synchronization

/// What `/readyz` needs to know about a running worker, readable from any thread.
///
/// The runtime updates it: ``databaseReachable`` after each database call of the claim loop,
/// ``lastProgress`` at every iteration of the claim loop, ``shuttingDown`` at the first
/// SIGTERM. A reader decides what "progressing" means, for example
/// `health.snapshot.lastProgress.map { .now - $0 < .seconds(60) } ?? false`.
public final class WorkerHealth: Sendable {
    /// One consistent reading.
    public struct Snapshot: Sendable, Hashable {
        /// The start-up checks passed and the last database call of the claim loop worked.
        public var databaseReachable: Bool
        /// When the claim loop last completed an iteration; `nil` before it started.
        public var lastProgress: ContinuousClock.Instant?
        /// A graceful shutdown has begun.
        public var shuttingDown: Bool
    }

    private let state = Mutex(Snapshot(databaseReachable: false, lastProgress: nil, shuttingDown: false))

    /// Creates a health record that says "not ready".
    public init() {}

    /// The current reading.
    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Whether the worker is ready: the database answers, the loop progressed within
    /// `staleAfter`, and it is not shutting down.
    /// - Parameter staleAfter: How old the last loop iteration may be.
    public func isReady(staleAfter: Duration = .seconds(90)) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard state.databaseReachable, !state.shuttingDown, let last = state.lastProgress else { return false }
            return now - last < staleAfter
        }
    }

    func update(_ body: (inout Snapshot) -> Void) { state.withLock { body(&$0) } }
}
