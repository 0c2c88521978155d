import Dispatch
public import Logging
import Synchronization

/// Owns one ``PGConnection`` and runs blocking work on it from async code.
///
/// All calls run in order on a private serial `DispatchQueue`, never on Swift's cooperative
/// pool, and are bridged back with a continuation (the pattern of swift-nio's
/// `NIOThreadPool.runIfActive`). The connection is opened on first use and re-opened after it
/// broke, so a PostgreSQL restart costs a failed call, not a dead runner.
public final class PGConnectionRunner: Sendable {
    private let queue: DispatchQueue
    private let configuration: DatabaseConfiguration
    private let logger: Logger
    // Touched only on `queue`.
    private nonisolated(unsafe) var connection: PGConnection?
    private let closed = Atomic<Bool>(false)

    /// Creates a runner; it connects lazily.
    /// - Parameters:
    ///   - configuration: Where to connect.
    ///   - label: Names the queue (visible in debuggers and thread names).
    ///   - logger: For connection events.
    public init(configuration: DatabaseConfiguration, label: String, logger: Logger) {
        self.configuration = configuration
        self.queue = DispatchQueue(label: "medianest.db.\(label)")
        self.logger = logger
    }

    /// Runs `body` with the connection, on the runner's queue.
    ///
    /// If the connection is missing or broken it is (re)opened first; if that fails the
    /// ``DatabaseError`` is thrown and the next call tries again.
    /// - Parameter body: Blocking work with the connection.
    /// - Returns: What `body` returned.
    /// - Throws: What `body` threw, or a ``DatabaseError`` from connecting.
    public func run<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async {
                continuation.resume(with: Result { try body(self.connectedOnQueue()) })
            }
        }
    }

    /// Runs `body` synchronously on the runner's queue (for threads that are not async).
    public func runBlocking<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try queue.sync { try body(self.connectedOnQueue()) }
    }

    private func connectedOnQueue() throws -> PGConnection {
        if closed.load(ordering: .relaxed) {
            throw DatabaseError(kind: .connectionLost, message: "the connection runner was closed")
        }
        if let connection, connection.isConnected { return connection }
        if let connection {
            try connection.reconnect()
            return connection
        }
        let fresh = try PGConnection.connect(configuration, logger: logger)
        connection = fresh
        return fresh
    }

    /// Drops the connection so that the next call opens a fresh one.
    public func resetConnection() {
        queue.async { self.connection = nil }
    }

    /// Closes the connection; later calls fail.
    public func close() {
        closed.store(true, ordering: .relaxed)
        queue.sync { self.connection = nil }
    }
}
