import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A loopback listener that records whether anyone connected: a hostile file that points at
/// `127.0.0.1:<port>` must never make the worker open a connection.
public final class LoopbackListener: @unchecked Sendable {
    public let fd: Int32
    public let port: UInt16

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 8) == 0 else {
            close(fd)
            throw FixtureError("bind/listen on 127.0.0.1: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
    }

    /// Whether a connection is waiting (the kernel completes the handshake without accept).
    public var wasContacted: Bool {
        let client = accept(fd, nil, nil)
        if client >= 0 { close(client); return true }
        return false
    }

    deinit { close(fd) }
}

/// Watches a directory for any open or read of the files in it (inotify): a hostile file that
/// points beside the storage root must never make the worker touch what is there.
public final class OpenWatch {
    public let fd: Int32

    public init(directory: String) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK))
        guard fd >= 0 else { throw FixtureError("inotify_init1: \(String(cString: strerror(errno)))") }
        guard inotify_add_watch(fd, directory, UInt32(IN_OPEN | IN_ACCESS)) >= 0 else {
            close(fd)
            throw FixtureError("inotify_add_watch \(directory): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether anything was opened or read since the watch began.
    public var sawOpen: Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        return read(fd, &buffer, buffer.count) > 0
    }

    deinit { close(fd) }
}
