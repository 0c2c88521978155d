import Foundation
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Synchronization
import Testing

/// A blocking database call running on a thread of its own, so that a test can start it, see it
/// wait for a lock, release the lock and then collect its result.
///
/// A plain `Thread` rather than a task: a call blocked in libpq must not hold one of the
/// cooperative pool's few threads while the test that would release it needs one.
final class BackgroundCall<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }
    private let state = Mutex(State())

    /// Starts `body` on a new thread at once.
    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            let result = Result { try body() }
            let waiter = state.withLock { state -> CheckedContinuation<T, any Error>? in
                state.result = result
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(with: result)
        }
        thread.start()
    }

    /// Whether `body` returned or threw.
    var isFinished: Bool { state.withLock { $0.result != nil } }

    /// Waits for `body` and returns what it returned, or throws what it threw.
    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Waits until the backend `pid` waits for a lock (an ungranted row in `pg_locks`), asking on
/// `observer`. Fails the test if `call` ended first or the wait never shows up.
func waitUntilWaitingForLock<T>(_ pid: Int32, call: BackgroundCall<T>, observer: PGConnection,
                                sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await waitUntilBackend(pid, call: call, observer: observer, sourceLocation: sourceLocation,
                               shows: "EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1::int AND NOT granted)")
}

/// Waits until the backend `pid` sleeps in `pg_sleep` (`pg_stat_activity.wait_event` =
/// `PgSleep`), asking on `observer`: the state of a statement that polls for a condition rather
/// than waiting for a lock. Fails the test if `call` ended first or the sleep never shows up.
///
/// Unlike a lock wait, a poll loop's sleep is a state the backend passes through again and again,
/// never one it stays in: about one look in twenty finds it between two sleeps. The test's own
/// looks can be far apart (its task waits for a thread of the cooperative pool behind other tests'
/// blocking calls: up to 66 s before scripts/test.sh bounded how many tests run at once), and a
/// 30-second wait in CI ended after a look or two that all missed (a CI failure of
/// `aDeleteWaitsOutTheGroupLockOfAnEndedTransaction`). So each look samples the backend on the
/// server, every 0.1 ms for up to 200 ms, in one statement.
func waitUntilSleeping<T>(_ pid: Int32, call: BackgroundCall<T>, observer: PGConnection,
                          sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try observer.execute("""
        CREATE OR REPLACE FUNCTION pg_temp.sleeps_within(target int, seconds float8) RETURNS boolean
        LANGUAGE plpgsql AS $$
        DECLARE
            deadline timestamptz := clock_timestamp() + seconds * interval '1 second';
        BEGIN
            LOOP
                PERFORM pg_stat_clear_snapshot();
                IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = target AND wait_event = 'PgSleep') THEN
                    RETURN true;
                END IF;
                IF clock_timestamp() > deadline THEN
                    RETURN false;
                END IF;
                PERFORM pg_sleep(0.0001);
            END LOOP;
        END;
        $$
        """)
    try await waitUntilBackend(pid, call: call, observer: observer, sourceLocation: sourceLocation,
                               shows: "pg_temp.sleeps_within($1::int, 0.2)")
}

/// Polls `condition` (a boolean SQL expression of the backend's pid, `$1`) for up to 30 s. A
/// failure names what the backend was doing instead.
private func waitUntilBackend<T>(_ pid: Int32, call: BackgroundCall<T>, observer: PGConnection,
                                 sourceLocation: SourceLocation, shows condition: String) async throws {
    let shown = try await waitUntil(timeout: .seconds(30)) {
        if call.isFinished { return true }
        return try observer.query("SELECT \(condition) AS shown", [Int(pid)])[0].decode("shown", as: Bool.self)
    }
    if call.isFinished {
        // Surface the call's own error if it failed instead of waiting.
        _ = try await call.value()
        Issue.record("backend \(pid) finished instead of waiting", sourceLocation: sourceLocation)
        throw CancellationError()
    }
    if !shown {
        let doing = try observer.query("""
            SELECT concat_ws(' ', state, wait_event_type, wait_event, 'running:', left(query, 120)) AS doing
              FROM pg_stat_activity WHERE pid = $1::int
            """, [Int(pid)]).first.map { try $0.decode("doing", as: String.self) } ?? "gone"
        Issue.record("backend \(pid) never showed \(condition); it was: \(doing)", sourceLocation: sourceLocation)
        throw CancellationError()
    }
}

/// An item in `processing` with one running job of each of `types`, all claimed by `store`.
func itemWithRunningJobs(_ types: [JobType], store: JobStore, owner: String, name: String = "holiday.jpg",
                         on connection: PGConnection) throws -> (item: String, jobs: [JobType: ClaimedJob]) {
    let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: name, on: connection)
    _ = try QueueAdmin.enqueue(mediaItemID: item, types: types, priority: 0, on: connection)
    let claimed = try store.claim(slots: Dictionary(uniqueKeysWithValues: types.map { ($0, 1) }), limit: types.count, on: connection)
    try #require(claimed.count == types.count && claimed.allSatisfy { $0.job.mediaItemID == item })
    return (item, Dictionary(uniqueKeysWithValues: claimed.map { ($0.job.type, $0.job) }))
}

/// The item's status and the owner's notifications about it (their types).
func settledState(of item: String, on connection: PGConnection) throws -> (status: String, notifications: [String]) {
    let status = try connection.query("SELECT status::text AS s FROM media_items WHERE id = $1::uuid", [item])[0].decode("s", as: String.self)
    let notifications = try connection.query("""
        SELECT type FROM notifications WHERE data->>'media_item_id' = $1 ORDER BY created_at
        """, [item]).map { try $0.decode("type", as: String.self) }
    return (status, notifications)
}
