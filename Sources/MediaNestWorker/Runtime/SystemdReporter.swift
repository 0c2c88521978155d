import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestSystemd
import Synchronization

/// Speaks `sd_notify` for the runtime (a no-op without `$NOTIFY_SOCKET`).
///
/// - `READY=1` when the claim loop starts, that is after the start-up checks found the database
///   answering with the schema version this build expects;
/// - `WATCHDOG=1` only from the claim loop's iterations (``loopProgressed(statusLine:draining:)``),
///   never from a timer, so a wedged loop stops pinging and systemd restarts it;
/// - `STATUS=` with the queue figures every few seconds;
/// - `STOPPING=1` at the first SIGTERM, then `EXTEND_TIMEOUT_USEC=` while in-flight jobs drain,
///   a little longer than what is left of the grace period.
final class SystemdReporter: Sendable {
    private let notifier: SystemdNotifier
    private let logger: Logger
    static let statusInterval: Duration = .seconds(5)
    private struct State {
        var lastPing: ContinuousClock.Instant?
        var lastStatus: ContinuousClock.Instant?
        var lastExtend: ContinuousClock.Instant?
        var stopping = false
    }
    private let state = Mutex(State())

    init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    private let warned = Mutex(false)

    /// Sends without ever blocking (the notifier uses `MSG_DONTWAIT`); the first failure is a
    /// warning, later ones are debug lines, so a full socket does not flood the log.
    private func send(_ notifications: [SystemdNotification]) {
        guard notifier.isEnabled, !notifications.isEmpty else { return }
        do {
            _ = try notifier.notify(notifications)
        } catch {
            let first = warned.withLock { warned in
                defer { warned = true }
                return !warned
            }
            logger.log(level: first ? .warning : .debug, "cannot notify systemd", metadata: ["error": "\(error)"])
        }
    }

    private func send(_ notifications: SystemdNotification...) { send(notifications) }

    func ready() { send(.ready, .status("ready: claiming jobs")) }

    /// `STOPPING=1`, once.
    func stopping() {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        if first { send(.stopping, .status("stopping: in-flight jobs are finishing")) }
    }

    /// When the claim loop must next wake up to ping the watchdog or refresh the status;
    /// `nil` without systemd.
    var nextDue: ContinuousClock.Instant? {
        guard notifier.isEnabled else { return nil }
        return state.withLock { state in
            var due = (state.lastStatus ?? .now) + SystemdReporter.statusInterval
            if let ping = notifier.watchdogPingInterval { due = min(due, (state.lastPing ?? .now) + ping) }
            return due
        }
    }

    /// Called by the claim loop at every iteration.
    /// - Parameters:
    ///   - statusLine: The STATUS= text, made only when it is due.
    ///   - draining: When the drain started and the grace period, while shutting down.
    func loopProgressed(statusLine: () -> String, draining: (ContinuousClock.Instant, Duration)?) {
        guard notifier.isEnabled else { return }
        let now = ContinuousClock.now
        var out: [SystemdNotification] = []
        state.withLock { state in
            if let ping = notifier.watchdogPingInterval, state.lastPing.map({ now - $0 >= ping }) ?? true {
                out.append(.watchdog)
                state.lastPing = now
            }
            if state.lastStatus.map({ now - $0 >= SystemdReporter.statusInterval }) ?? true {
                out.append(.status(statusLine()))
                state.lastStatus = now
            }
            if let (since, grace) = draining, state.lastExtend.map({ now - $0 >= .seconds(1) }) ?? true {
                // The drain ends at most grace + a few seconds (stopped handlers get 3 s to return,
                // then they are released) after it began; ask for that plus a margin.
                let left = max(.zero, since + grace - now) + .seconds(10)
                out.append(.extendTimeout(left))
                state.lastExtend = now
            }
        }
        send(out)
    }
}
