import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

/// The listener: holds the worker's LISTEN session (its second and last server connection),
/// sleeping in `poll(2)` on a thread of its own, and wakes the claim loop on a notification
/// that concerns this worker's types. Not started with `--no-listen`.
final class Listener: Service, @unchecked Sendable {
    private let runtime: WorkerRuntime
    private let stopFlag = StopFlag()

    init(runtime: WorkerRuntime) {
        self.runtime = runtime
    }

    func run() async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await onOwnThread(named: "medianest-listener") { [self] in loop() }
            } onGracefulShutdown: { [stopFlag] in
                stopFlag.stop()
            }
        } onCancel: { [stopFlag] in
            stopFlag.stop()
        }
    }

    private func loop() {
        let logger = runtime.logger
        let state = runtime.state
        while !state.withLock({ $0.started }) {
            if !stopFlag.sleep(until: .now + .milliseconds(100)) { return }
        }
        let database = PGConnectionRunner(configuration: runtime.configuration.database.with("application_name", WorkerRuntime.listenerApplicationName),
                                          label: "listener", logger: logger)
        defer { database.close() }
        var listening = false
        var failed = false
        var backoff: Duration = .milliseconds(100)
        let served = Set(runtime.types.map(\.rawValue))
        while !stopFlag.isStopped {
            do {
                let notifications = try database.runBlocking { connection -> [PGNotification] in
                    if !listening {
                        try connection.listen(JobStore.channel)
                        listening = true
                        if failed { runtime.metrics.databaseReconnects.increment() }
                        failed = false
                        // Anything enqueued while we were not listening is claimed now, not at the
                        // next poll; from now on the fallback poll may be slow.
                        state.withLock { $0.listenHealthy = true }
                        runtime.requestClaim()
                    }
                    return try connection.waitForNotifications(timeout: .seconds(1))
                }
                backoff = .milliseconds(100)
                let relevant = notifications.contains { note in
                    let types = note.payload.split(separator: ",").map(String.init)
                    return types.isEmpty || types.contains { served.contains($0) || !JobType.all.contains(JobType($0)) }
                }
                if relevant {
                    // A short random delay keeps workers woken by the same NOTIFY from all
                    // querying in the same millisecond; SKIP LOCKED keeps them apart anyway.
                    Thread.sleep(forTimeInterval: Double.random(in: 0...0.02))
                    runtime.requestClaim()
                }
            } catch {
                listening = false
                failed = true
                // Back to the fast poll until LISTEN works again.
                state.withLock { $0.listenHealthy = false }
                state.signal()
                logger.warning("listener connection failed; reconnecting", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(backoff.seconds * 1000))"])
                _ = stopFlag.sleep(until: .now + backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }
}
