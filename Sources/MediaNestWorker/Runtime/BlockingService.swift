import CThreadName
import Foundation
import MediaNestQueue
import ServiceLifecycle
import Synchronization

/// Runs a service's blocking loop on an OS thread of its own, for the length of the service's
/// `run()`: the services' loops make blocking libpq calls and sleep, which must never happen on
/// Swift's cooperative pool.
///
/// `stop` is called once the group asks the service to shut down gracefully; `cancel` when the
/// task is cancelled (by default the same as `stop`). Either must make `body` return soon.
/// - Returns: What `body` returned.
func runOnOwnThread<T: Sendable>(named name: String, stop: @escaping @Sendable () -> Void,
                                 cancel: (@Sendable () -> Void)? = nil, _ body: @escaping @Sendable () -> T) async -> T {
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            await onOwnThread(named: name, body)
        } onGracefulShutdown: {
            stop()
        }
    } onCancel: {
        (cancel ?? stop)()
    }
}

/// Runs `body` on a new OS thread and waits for it without blocking the cooperative pool.
func onOwnThread<T: Sendable>(named name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        startThread(named: name) { continuation.resume(returning: body()) }
    }
}

/// Starts an OS thread named `name` (what `top -H`, `perf` and gdb show) running `body`.
///
/// The name is set by the new thread itself, first thing, with `prctl(PR_SET_NAME)`. Foundation
/// on Linux does not do it reliably: a name set before `start()` stays a Foundation property,
/// and one set on `Thread.current` reaches the kernel only once the parent has recorded the
/// thread's pthread handle, which races with the thread's start (under ThreadSanitizer it lost).
/// Without a name a thread keeps the one it inherited from its creator (the cooperative pool's
/// `com.apple.root.default-qos`, cut to 15 bytes).
/// - Parameter stackSize: The thread's stack, in bytes; `nil` for the platform's default.
func startThread(named name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = medianest_set_current_thread_name(name)
        body()
    }
    if let stackSize { thread.stackSize = stackSize }
    thread.start()
}

/// A stop flag with a condition, for a service thread that sleeps between rounds.
final class StopFlag: Sendable {
    /// Only to sleep on and wake; the flag itself is in `stopped`.
    private let condition = NSCondition()
    private let stopped = Mutex(false)

    func stop() {
        condition.lock()
        stopped.withLock { $0 = true }
        condition.broadcast()
        condition.unlock()
    }

    var isStopped: Bool { stopped.withLock { $0 } }

    /// Sleeps until `deadline`; returns `false` when stopped (before or while sleeping).
    func sleep(until deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !isStopped {
            let remaining = deadline - .now
            if remaining <= .zero { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return false
    }
}
