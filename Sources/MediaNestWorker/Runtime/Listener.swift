import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// The LISTEN half of the claim loop's connection.
///
/// The claim loop claims on the worker's LISTEN session and sleeps on it: between claims it
/// waits in `poll(2)` on the session's socket and on ``RuntimeState``'s wake-up descriptor, so a
/// NOTIFY for one of this worker's types, a finished handler or a shutdown each end the sleep.
/// Folding the listener into the claim loop keeps a worker at two server connections without
/// putting claims and result writes on one backend, which executes them one after the other
/// and halves the queue's throughput (README, "Sizing database connections").
///
/// LISTEN is (re)issued whenever the connection's backend is a new one (the first use, after a
/// reconnect), and a claim follows at once: whatever was enqueued while nobody listened is
/// claimed then, not at the next poll.
struct Listener {
    private let served: Set<String>
    /// The backend LISTEN was issued on; another one means the connection was re-opened.
    private var listeningBackend: Int32 = 0

    init(types: [JobType]) {
        served = Set(types.map(\.rawValue))
    }

    /// Sleeps on `lane`'s connection until `deadline`, a relevant NOTIFY, or a wake-up signalled
    /// after `seenWakeCount`. While the lane waits out a reconnect backoff it sleeps on the
    /// shared state's condition instead.
    mutating func wait(on lane: DatabaseLane, state: RuntimeState, logger: Logger, until deadline: ContinuousClock.Instant, seenWakeCount: UInt64) {
        guard ContinuousClock.now >= lane.retryAt else {
            state.wait(until: min(deadline, lane.retryAt), seenWakeCount: seenWakeCount)
            return
        }
        do {
            let listening = listeningBackend
            let served = self.served
            let (backend, relevant) = try lane.runner.runBlocking { connection -> (Int32, Bool) in
                if connection.backendPID != listening {
                    try connection.listen(JobStore.channel)
                    // Claim now what was enqueued while nobody listened; from now on the
                    // fallback poll may be slow.
                    state.post(.listen(healthy: true))
                    state.post(.woken)
                    return (connection.backendPID, false)
                }
                guard let wakeDescriptor = state.armSocketWait(seenWakeCount: seenWakeCount) else { return (listening, false) }
                defer { state.disarmSocketWait() }
                let notifications = try connection.waitForNotifications(timeout: max(deadline - .now, .zero), wakeDescriptor: wakeDescriptor)
                return (listening, notifications.contains { Listener.concerns($0, served: served) })
            }
            listeningBackend = backend
            lane.succeeded()
            if relevant {
                // A short random delay keeps workers woken by the same NOTIFY from all querying
                // in the same millisecond; SKIP LOCKED keeps them apart anyway.
                Thread.sleep(forTimeInterval: Double.random(in: 0...0.02))
                state.post(.woken)
            }
        } catch let error as DatabaseError where error.isConnectionProblem {
            listeningBackend = 0
            // Back to the fast poll until LISTEN works again.
            state.post(.listen(healthy: false))
            lane.noteUnavailable("listen", error: error, logger: logger)
        } catch {
            listeningBackend = 0
            state.post(.listen(healthy: false))
            logger.warning("LISTEN failed; polling until it works", metadata: ["error": "\(error)"])
            lane.retryAt = .now + .seconds(1)
        }
    }

    /// Whether a notification may mean work for this worker: its payload names one of our
    /// types, or is empty, or is not a type at all (`released`, `rescued` concern everyone).
    private static func concerns(_ notification: PGNotification, served: Set<String>) -> Bool {
        let words = notification.payload.split(separator: ",").map(String.init)
        return words.isEmpty || words.contains { served.contains($0) || !JobType.all.contains(JobType($0)) }
    }
}
