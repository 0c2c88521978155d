import Foundation
import Logging
import MediaNestDB
import MediaNestMigrations
import MediaNestSystemd
import Synchronization

/// Interim sd_notify for `run`, so that the units can be `Type=notify` before the runtime sends
/// the notifications itself (issue 10). The runtime should replace all of this: READY=1 after
/// its own database and schema check, STATUS= with queue figures, WATCHDOG=1 from the loop's
/// progress, STOPPING=1 at the first SIGTERM and EXTEND_TIMEOUT_USEC= while draining.
///
/// Here a thread of its own (never the cooperative pool: libpq blocks) connects until the
/// database answers with at least the schema version this build's migrations reach, sends
/// `READY=1`, closes that connection, then pings the watchdog at half `WatchdogSec=`. Those
/// pings only prove the process is alive, not that the loop progresses.
final class InterimSystemdNotify: Sendable {
    private let notifier: SystemdNotifier
    private let stopped = Mutex(false)
    /// Signalled by ``stopping()`` to cut the thread's sleeps short.
    private let wake = DispatchSemaphore(value: 0)
    /// Signalled by the thread when it has finished.
    private let finished = DispatchSemaphore(value: 0)

    private init(notifier: SystemdNotifier) {
        self.notifier = notifier
    }

    /// Starts the readiness thread when `NOTIFY_SOCKET` is set; `nil` (and nothing runs) otherwise.
    static func start(database: DatabaseConfiguration) -> InterimSystemdNotify? {
        let notifier = SystemdNotifier()
        guard notifier.isEnabled else { return nil }
        let interim = InterimSystemdNotify(notifier: notifier)
        let thread = Thread {
            interim.announceReadiness(database: database)
            interim.finished.signal()
        }
        thread.name = "medianest-sd-notify"
        thread.start()
        return interim
    }

    /// Sends `STOPPING=1`, ends the watchdog pings, and waits (a few seconds at most) for the
    /// thread to finish: the process must not exit while it is inside libpq or the notifier,
    /// which crashed a worker that exited 78 at start-up (an unmigrated database) with SIGSEGV
    /// instead, and systemd then restart-loops it.
    func stopping() {
        stopped.withLock { $0 = true }
        _ = try? notifier.notify(.stopping)
        wake.signal()
        _ = finished.wait(timeout: .now() + 10)
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    private func announceReadiness(database: DatabaseConfiguration) {
        let logger = Logger(label: "medianest.systemd")
        let expected = (try? MigrationCatalog.load(from: MigrationsDirectory.locate()))?.migrations.map(\.version).max()
        while !isStopped {
            do {
                let connection = try PGConnection.connect(database.with("application_name", "medianest-worker readiness"))
                let migrated = try connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS m")[0].decode("m", as: Bool.self)
                let version = migrated ? try connection.query("SELECT max(version) AS v FROM schema_migrations")[0].decode("v", as: Int64?.self) ?? 0 : 0
                if let expected, version < expected {
                    _ = try? notifier.notify(.status("waiting for migrations: the database is at schema version \(version), this build needs \(expected)"))
                } else {
                    try notifier.notify(.ready, .status("ready: database answers, schema version \(version)"))
                    break
                }
            } catch {
                _ = try? notifier.notify(.status("waiting for the database: \(error)"))
            }
            _ = wake.wait(timeout: .now() + 2)
        }
        guard let ping = notifier.watchdogPingInterval else { return }
        let seconds = Double(ping.components.seconds) + Double(ping.components.attoseconds) / 1e18
        while !isStopped {
            do { try notifier.notify(.watchdog) } catch { logger.warning("cannot ping the systemd watchdog", metadata: ["error": "\(error)"]) }
            _ = wake.wait(timeout: .now() + seconds)
        }
    }
}
