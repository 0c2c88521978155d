import Foundation
import MediaNestSystemd
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket bound the way systemd binds `NOTIFY_SOCKET`, owned by one test.
final class NotifySocket {
    let fd: Int32
    /// The `NOTIFY_SOCKET` value that reaches it.
    let environmentValue: String
    private let pathToRemove: String?

    /// Binds a socket file in a fresh temporary directory.
    init(path directory: String) throws {
        let path = directory + "/notify"
        fd = try NotifySocket.bind([UInt8](path.utf8) + [0])
        environmentValue = path
        pathToRemove = path
    }

    /// Binds an abstract socket `@name`.
    init(abstract name: String) throws {
        fd = try NotifySocket.bind([0] + [UInt8](name.utf8))
        environmentValue = "@" + name
        pathToRemove = nil
    }

    deinit {
        close(fd)
        if let pathToRemove { unlink(pathToRemove) }
    }

    private static func bind(_ sunPath: [UInt8]) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: sunPath) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + sunPath.count)
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) } }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code) ?? .EIO)
        }
        return fd
    }

    /// The next datagram, or `nil` when none arrives within `timeoutMilliseconds`.
    func receive(timeoutMilliseconds: Int32 = 2000) -> String? {
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollfd, 1, timeoutMilliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }
}

@Suite("systemd notify protocol")
struct SystemdNotifierTests {
    @Test func sendsEachCallAsOneDatagramToASocketPath() throws {
        let directory = NSTemporaryDirectory() + "mn-notify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = try NotifySocket(path: directory)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.environmentValue])
        #expect(notifier.address == .path(socket.environmentValue))

        #expect(try notifier.notify(.ready, .status("ready; schema 11")))
        #expect(socket.receive() == "READY=1\nSTATUS=ready; schema 11")
        try notifier.notify(.watchdog)
        #expect(socket.receive() == "WATCHDOG=1")
        try notifier.notify(.stopping, .extendTimeout(.seconds(40)), .status("draining 2 jobs"))
        #expect(socket.receive() == "STOPPING=1\nEXTEND_TIMEOUT_USEC=40000000\nSTATUS=draining 2 jobs")
        try notifier.notify(.mainPID(4242), .extendTimeout(.milliseconds(1500)))
        #expect(socket.receive() == "MAINPID=4242\nEXTEND_TIMEOUT_USEC=1500000")
        #expect(socket.receive(timeoutMilliseconds: 100) == nil, "nothing else was sent")
    }

    @Test func sendsToAnAbstractSocket() throws {
        let name = "medianest-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        let socket = try NotifySocket(abstract: name)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name])
        #expect(notifier.address == .abstract(name))
        try notifier.notify(.ready)
        #expect(socket.receive() == "READY=1")
        try notifier.notify(.watchdogTrigger)
        #expect(socket.receive() == "WATCHDOG=trigger")
    }

    @Test func statusCannotSmuggleASecondAssignment() throws {
        let name = "medianest-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        let socket = try NotifySocket(abstract: name)
        let notifier = SystemdNotifier(address: .abstract(name))
        try notifier.notify(.status("file evil.mp4\nREADY=1\u{1B}[2J"))
        #expect(socket.receive() == "STATUS=file evil.mp4 READY=1 [2J")
    }

    @Test func isANoOpWithoutNotifySocket() throws {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(try notifier.notify(.ready) == false)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]).address == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]).address == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "@"]).address == nil)
    }

    @Test func failsClearlyWhenTheSocketIsGone() throws {
        let notifier = SystemdNotifier(address: .path(NSTemporaryDirectory() + "mn-no-such-socket-\(UUID().uuidString)"))
        let error = #expect(throws: SystemdNotifyError.self) { try notifier.notify(.ready) }
        #expect(error?.description.contains("No such file") == true)
        let tooLong = SystemdNotifier(address: .path("/" + String(repeating: "x", count: 200)))
        #expect(throws: SystemdNotifyError.self) { try tooLong.notify(.ready) }
    }

    @Test func watchdogIntervalHonoursWatchdogPID() {
        let mine: Int32 = 1234
        let plain = SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000"], pid: mine)
        #expect(plain.watchdogInterval == .seconds(30))
        #expect(plain.watchdogPingInterval == .seconds(15))
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1234"], pid: mine).watchdogInterval == .seconds(30))
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "999"], pid: mine).watchdogInterval == nil,
                "the variables were inherited from a parent; the watchdog is not ours")
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"], pid: mine).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"], pid: mine).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: [:], pid: mine).watchdogPingInterval == nil)
    }
}
