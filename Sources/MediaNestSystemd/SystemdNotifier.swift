import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One assignment of the sd_notify protocol (see `sd_notify(3)`).
public enum SystemdNotification: Sendable, Hashable {
    /// `READY=1`: start-up is finished; a `Type=notify` unit becomes active.
    case ready
    /// `RELOADING=1`.
    case reloading
    /// `STOPPING=1`: the service began shutting down.
    case stopping
    /// `STATUS=…`: one line shown by `systemctl status`. Line breaks and other control
    /// characters are replaced by spaces, since a newline would start a new assignment.
    case status(String)
    /// `WATCHDOG=1`: keeps the unit's `WatchdogSec=` timer from firing.
    case watchdog
    /// `WATCHDOG=trigger`: asks systemd to act as if the watchdog had fired.
    case watchdogTrigger
    /// `EXTEND_TIMEOUT_USEC=…`: the current start, runtime or stop timeout is extended so that
    /// it ends no sooner than this long from now.
    case extendTimeout(Duration)
    /// `MAINPID=…`.
    case mainPID(Int32)
    /// `ERRNO=…`.
    case errno(Int32)

    /// The `KEY=value` text of this assignment.
    public var assignment: String {
        switch self {
        case .ready: "READY=1"
        case .reloading: "RELOADING=1"
        case .stopping: "STOPPING=1"
        case .status(let text): "STATUS=" + String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        case .watchdog: "WATCHDOG=1"
        case .watchdogTrigger: "WATCHDOG=trigger"
        case .extendTimeout(let duration): "EXTEND_TIMEOUT_USEC=\(SystemdNotification.microseconds(duration))"
        case .mainPID(let pid): "MAINPID=\(pid)"
        case .errno(let code): "ERRNO=\(code)"
        }
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }
}

/// Why a notification could not be sent. Callers usually log it and carry on: systemd then
/// treats the service as it would one that stayed silent.
public struct SystemdNotifyError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Talks to systemd's service manager through `$NOTIFY_SOCKET`, written by hand (no libsystemd).
///
/// Each ``notify(_:)`` call is one datagram on an `AF_UNIX`/`SOCK_DGRAM` socket, the assignments
/// separated by newlines, exactly as `sd_notify(3)` sends them. The socket may be a file system
/// path (`/run/systemd/notify`) or an abstract name (`@name`). Without `NOTIFY_SOCKET` (run by
/// hand, in tests, under a supervisor other than systemd) every call is a no-op that returns
/// `false`.
///
/// Where the worker calls it (the runtime owns these calls; `run` has an interim version):
/// - ``SystemdNotification/ready`` once the database answers and the schema version is the one
///   this build expects, before the first claim;
/// - ``SystemdNotification/status(_:)`` after each claim or heartbeat round with the queue
///   figures (`running 3/8, pending 120, oldest 4.2s`), at most every few seconds;
/// - ``SystemdNotification/watchdog`` from the scheduler loop when it completed an iteration
///   (claimed or polled, wrote results) within ``watchdogInterval``, never from a timer of its
///   own, so that a wedged loop is restarted;
/// - ``SystemdNotification/stopping`` when the first SIGTERM starts the drain;
/// - ``SystemdNotification/extendTimeout(_:)`` while in-flight jobs drain, a little longer than
///   the remaining grace period, so `TimeoutStopSec=` does not kill a drain that is on time.
public struct SystemdNotifier: Sendable {
    /// Where the service manager listens.
    public enum Address: Sendable, Hashable {
        /// A socket file.
        case path(String)
        /// A Linux abstract socket name (the part after `@`).
        case abstract(String)
    }

    /// The socket, or `nil` when the process does not run under systemd's notify protocol.
    public let address: Address?
    /// The unit's `WatchdogSec=`, when the watchdog is on for this process.
    public let watchdogInterval: Duration?

    /// Whether notifications go anywhere.
    public var isEnabled: Bool { address != nil }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    /// - Parameters:
    ///   - environment: The process environment.
    ///   - pid: This process's id, compared with `WATCHDOG_PID`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()) {
        self.address = SystemdNotifier.parseAddress(environment["NOTIFY_SOCKET"])
        self.watchdogInterval = SystemdNotifier.parseWatchdog(usec: environment["WATCHDOG_USEC"], pid: environment["WATCHDOG_PID"], ownPID: pid)
    }

    /// A notifier for an explicit socket (tests, or a supervisor that passes it differently).
    public init(address: Address?, watchdogInterval: Duration? = nil) {
        self.address = address
        self.watchdogInterval = watchdogInterval
    }

    /// How often to send ``SystemdNotification/watchdog``: half the interval, as `sd_watchdog_enabled(3)`
    /// recommends, so one late iteration is not fatal. `nil` when the watchdog is off.
    public var watchdogPingInterval: Duration? { watchdogInterval.map { $0 / 2 } }

    /// Parses `NOTIFY_SOCKET`: an absolute path or `@abstract-name`. Anything else (unset, empty,
    /// relative, `vsock:`) is `nil`, so the notifier is off rather than failing on every call.
    public static func parseAddress(_ value: String?) -> Address? {
        guard let value, !value.isEmpty else { return nil }
        if value.hasPrefix("/") { return .path(value) }
        if value.hasPrefix("@"), value.utf8.count > 1 { return .abstract(String(value.dropFirst())) }
        return nil
    }

    /// Parses `WATCHDOG_USEC` (and `WATCHDOG_PID`, which must name this process when set, since the
    /// variables are inherited by children that are not the service's main process).
    public static func parseWatchdog(usec: String?, pid: String?, ownPID: Int32) -> Duration? {
        guard let usec, let value = UInt64(usec), value > 0 else { return nil }
        if let pid, !pid.isEmpty {
            guard let watched = Int32(pid), watched == ownPID else { return nil }
        }
        return .microseconds(Int64(clamping: value))
    }

    /// Sends the assignments as one datagram.
    /// - Parameter notifications: What to tell systemd, in order.
    /// - Returns: `false` when notifications are off (no `NOTIFY_SOCKET`), `true` once sent.
    /// - Throws: ``SystemdNotifyError`` when the socket cannot be reached.
    @discardableResult
    public func notify(_ notifications: SystemdNotification...) throws(SystemdNotifyError) -> Bool {
        try notify(notifications)
    }

    /// Sends the assignments as one datagram; see ``notify(_:)-(SystemdNotification...)``.
    @discardableResult
    public func notify(_ notifications: [SystemdNotification]) throws(SystemdNotifyError) -> Bool {
        guard let address else { return false }
        guard !notifications.isEmpty else { return true }
        try SystemdNotifier.send(notifications.map(\.assignment).joined(separator: "\n"), to: address)
        return true
    }

    static func send(_ message: String, to address: Address) throws(SystemdNotifyError) {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemdNotifyError("cannot create a notify socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }

        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let pathCapacity = MemoryLayout.size(ofValue: storage.sun_path)
        let pathBytes: [UInt8]
        let length: Int
        switch address {
        case .path(let path):
            // The kernel wants the path NUL-terminated within sun_path.
            pathBytes = Array(path.utf8) + [0]
            length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count
        case .abstract(let name):
            // An abstract name starts with a NUL byte and is exactly as long as the length says.
            pathBytes = [0] + Array(name.utf8)
            length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count
        }
        guard pathBytes.count <= pathCapacity else {
            throw SystemdNotifyError("NOTIFY_SOCKET is longer than a Unix socket address can be (\(pathCapacity) bytes)")
        }
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bytes.withUnsafeBytes { buffer in
                    // MSG_DONTWAIT: a manager that does not read (its queue is full) loses the message
                    // instead of stalling the caller, which may be the loop the watchdog watches.
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), address, socklen_t(length))
                }
            }
        }
        guard sent == bytes.count else {
            let reason = sent < 0 ? String(cString: strerror(errno)) : "short write"
            throw SystemdNotifyError("cannot notify systemd at \(address): \(reason)")
        }
    }
}
