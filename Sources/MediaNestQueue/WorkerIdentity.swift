import Foundation

/// Names a worker process in `processing_jobs.worker_id` and `processing_workers.id`.
///
/// The form `host:pid:instance` is stable for the life of the process and tells an operator
/// where to look; `instance` separates several workers started on one host with the same pid
/// namespace (containers) or several runtimes in one process (tests).
public struct WorkerIdentity: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var pid: Int32
    public var instance: String

    /// Creates an identity.
    /// - Parameters:
    ///   - host: Defaults to the host name.
    ///   - pid: Defaults to this process.
    ///   - instance: A short name; defaults to `0`.
    public init(host: String = ProcessInfo.processInfo.hostName, pid: Int32 = getpid(), instance: String = "0") {
        self.host = host
        self.pid = pid
        self.instance = instance
    }

    /// `host:pid:instance`, cut to the column's 255 characters.
    public var id: String { String("\(host):\(pid):\(instance)".prefix(255)) }
    public var description: String { id }
}
