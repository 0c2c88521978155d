import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process run to its end and reaped with `wait4`, so its own peak resident set size is
/// known.
///
/// `getrusage(RUSAGE_CHILDREN)` reports the largest of *all* reaped children of the test process,
/// and Foundation's `Process` reaps its child itself; spawning with `posix_spawn` and reaping the
/// one pid with `wait4` gives the figure of exactly this child, even while other tests run
/// processes of their own.
public struct MeasuredChild: Sendable {
    /// The exit status, or `nil` when a signal ended the process.
    public var exitStatus: Int32?
    /// The signal that ended the process, if one did.
    public var signal: Int32?
    /// Whether the process was killed for running past its deadline.
    public var timedOut: Bool
    /// What it wrote to standard output.
    public var stdout: String
    /// What it wrote to standard error.
    public var stderr: String
    /// Peak resident set size, in KiB (`ru_maxrss`).
    public var maxRSSKiB: Int

    /// Peak resident set size in MiB.
    public var maxRSSMiB: Double { Double(maxRSSKiB) / 1024 }

    /// A failure to start the child.
    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `executable` with `arguments` and waits for it.
    /// - Parameters:
    ///   - executable: Absolute path of the program.
    ///   - arguments: Its arguments (without argv[0]).
    ///   - environment: Its whole environment.
    ///   - directory: Its working directory.
    ///   - deadline: After this long it is killed (SIGKILL) and ``timedOut`` is set; a guard
    ///     against a hang, never a measurement.
    ///   - whileRunning: Called once with the child's pid right after it started (for a test that
    ///     must act on that very process).
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String], directory: String,
                           deadline: Duration = .seconds(300), whileRunning: (pid_t) -> Void = { _ in }) throws -> MeasuredChild {
        let scratch = NSTemporaryDirectory() + "medianest-child-\(UUID().uuidString.prefix(8))"
        let outPath = scratch + ".out", errPath = scratch + ".err"
        defer { unlink(outPath); unlink(errPath) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)

        // `env -C` changes directory and execs the program in the same process, so the pid
        // reaped below is the program's (Glibc's Swift module has no posix_spawn_file_actions_addchdir_np).
        let launcher = "/usr/bin/env"
        let argv = ([launcher, "-C", directory, executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, launcher, &actions, nil, argv, envp)
        guard status == 0 else { throw SpawnError(description: "posix_spawn \(executable): \(String(cString: strerror(status)))") }
        whileRunning(pid)

        var waitStatus: Int32 = 0
        var usage = rusage()
        let end = ContinuousClock.now + deadline
        var timedOut = false
        while true {
            let reaped = wait4(pid, &waitStatus, WNOHANG, &usage)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR { throw SpawnError(description: "wait4: \(String(cString: strerror(errno)))") }
            if !timedOut && ContinuousClock.now >= end {
                timedOut = true
                kill(pid, SIGKILL)
            }
            usleep(20_000)
        }
        let exited = waitStatus & 0x7F == 0
        return MeasuredChild(
            exitStatus: exited ? (waitStatus >> 8) & 0xFF : nil,
            signal: exited ? nil : waitStatus & 0x7F,
            timedOut: timedOut,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            maxRSSKiB: Int(usage.ru_maxrss))
    }
}

/// Runs blocking test work (child processes reaped with `wait4`, fixture generation) on a thread
/// of its own and awaits it, so that it never holds one of Swift concurrency's cooperative
/// threads. There are as many of those as cores (two here): a suite that blocks them in child
/// processes for minutes starves every in-process runtime test beside it, whose services then
/// cannot even start (seen: a `ResultWriteTests` runtime that never claimed within 30 s).
public func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try body() })
        }
    }
}
