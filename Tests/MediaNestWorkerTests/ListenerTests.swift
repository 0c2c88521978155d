import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

/// The claim loop's LISTEN session (`Runtime/Listener.swift`): a NOTIFY wakes the worker, and a
/// session the server took away is replaced, LISTENed on again and followed by a claim.
///
/// Both fallback polls are set to ten minutes, so within the tests' waits a job can only be
/// claimed because a notification woke the worker or because a fresh LISTEN session claimed.
@Suite("the claim loop's LISTEN session", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct ListenerTests {
    private struct Session: Equatable {
        var pid: Int32
        var idleAfterClaim: Bool
        /// What pg_stat_activity showed, for failure messages.
        var seen: String
    }

    /// The worker's LISTEN session, and whether it sits idle after a claim (it claims right
    /// after LISTEN, so then it is asleep in `poll(2)` with LISTEN in force).
    private func listenSession(on connection: PGConnection) throws -> Session? {
        try connection.query("""
            SELECT pid, state = 'idle' AND query LIKE 'WITH wanted AS%' AS idle_after_claim,
                   coalesce(state, '') || ': ' || left(query, 60) AS seen FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'medianest-worker listener'
            """).first.map { Session(pid: try $0.decode("pid", as: Int32.self), idleAfterClaim: try $0.decode("idle_after_claim", as: Bool.self),
                                     seen: try $0.decode("seen", as: String.self)) }
    }

    @Test func aNotificationWakesTheWorkerAndALostSessionIsReplaced() async throws {
        try await withMigratedDatabase("listener") { database, connection, owner in
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--poll-interval", "600", "--listen-poll-interval", "600", "--log-level", "info",
                                                       // Nothing else runs on the session after its claim: no queue
                                                       // sample (no metrics), a rescue pass only every 600 s. A test
                                                       // starved of its thread for a while still finds the claim last.
                                                       "--metrics-address", "off", "--lease", "1200"])
            defer { worker.stop() }
            var first: Session?
            #expect(try await waitUntil(timeout: .seconds(30)) {
                first = try listenSession(on: connection)
                return first?.idleAfterClaim == true
            }, "session: \(first?.seen ?? "none")\nlog:\n\(worker.log)")

            // Enqueued while the worker sleeps: only the insert's NOTIFY can wake it.
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let woken = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(woken, on: connection) == "completed" }, "log:\n\(worker.log)")

            // The server ends the session (a restart, an operator, a pooler): the worker opens a
            // new one, LISTENs on it and claims, and keeps running.
            let lost = try #require(first).pid
            _ = try connection.query("SELECT pg_terminate_backend($1::int)", [lost])
            #expect(try await waitUntil(timeout: .seconds(30)) {
                guard let now = try listenSession(on: connection) else { return false }
                return now.pid != lost && now.idleAfterClaim
            }, "log:\n\(worker.log)")
            let later = try DatabaseFixtures.insertJob(mediaItemID: try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection),
                                                       type: "metadata", on: connection)
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(later, on: connection) == "completed" }, "log:\n\(worker.log)")
            #expect(worker.isRunning)
        }
    }
}
