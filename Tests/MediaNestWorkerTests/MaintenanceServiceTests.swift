import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

/// `medianest-worker run --maintenance-interval`: the daemon runs maintenance itself, one host
/// at a time, and reports it in its metrics.
@Suite("maintenance run by the worker", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct MaintenanceServiceTests {
    /// A production worker with metrics on a port the kernel picks, maintenance every second,
    /// and an empty storage root (it has no job to do).
    private func startWorker(_ database: TestDatabase, instance: String) throws -> WorkerProcess {
        let storage = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-maint-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        return try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(), arguments: [
            "--storage-root", storage, "--metrics-address", "127.0.0.1:0", "--instance", instance, "--maintenance-interval", "1",
        ], executable: "medianest-worker")
    }

    /// Every sample of `/metrics`, by series (name and labels as printed).
    private func scrape(_ base: String) async throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in try await httpGet(base + "/metrics").body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// Scrapes until `condition` holds (or 60 s pass); the last scrape either way.
    private func scrape(_ bases: [String], until condition: ([[String: Double]]) -> Bool) async throws -> [[String: Double]] {
        let deadline = ContinuousClock.now + .seconds(60)
        var last: [[String: Double]] = []
        while true {
            last = []
            for base in bases { last.append(try await scrape(base)) }
            if condition(last) || ContinuousClock.now >= deadline { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    private func runs(_ outcome: String, _ samples: [String: Double]) -> Double {
        samples[#"medianest_maintenance_runs_total{outcome="\#(outcome)"}"#] ?? 0
    }

    /// Rows past retention: a session expired 10 days ago, an expired notification.
    private func insertExpiredRows(owner: String, on connection: PGConnection) throws {
        _ = try connection.query("""
            INSERT INTO user_sessions (user_id, token_hash, expires_at) VALUES ($1::uuid, 'expired', now() - interval '10 days'),
                                                                               ($1::uuid, 'current', now() + interval '1 day')
            """, [owner])
        _ = try connection.query("""
            INSERT INTO notifications (user_id, title, read, expires_at) VALUES ($1::uuid, 'expired', false, now() - interval '1 hour')
            """, [owner])
    }

    private func expiredRowsLeft(on connection: PGConnection) throws -> Int {
        try connection.query("""
            SELECT (SELECT count(*) FROM user_sessions WHERE token_hash = 'expired') + (SELECT count(*) FROM notifications) AS n
            """)[0].decode("n", as: Int.self)
    }

    @Test func aWorkerWithAMaintenanceIntervalDeletesExpiredRowsAndCountsTheRun() async throws {
        try await withMigratedDatabase("maintsvc") { database, connection, owner in
            try insertExpiredRows(owner: owner, on: connection)
            let worker = try startWorker(database, instance: "maint")
            defer { worker.stop() }
            let base = try await metricsBaseURL(of: worker)
            #expect(try await waitUntil(timeout: .seconds(30)) { try expiredRowsLeft(on: connection) == 0 }, "log:\n\(worker.log)")
            #expect(try connection.query("SELECT count(*) AS n FROM user_sessions WHERE token_hash = 'current'")[0].decode("n", as: Int.self) == 1)
            let samples = try await scrape([base]) { runs("ok", $0[0]) >= 1 }[0]
            #expect(runs("ok", samples) >= 1, "\(samples)")
            #expect(runs("failed", samples) == 0, "log:\n\(worker.log)")
            #expect(samples[#"medianest_maintenance_rows_deleted_total{table="user_sessions"}"#] == 1, "\(samples)")
            #expect(samples[#"medianest_maintenance_rows_deleted_total{table="notifications"}"#] == 1, "\(samples)")
            #expect((samples["medianest_maintenance_last_success_timestamp_seconds"] ?? 0) > Date().timeIntervalSince1970 - 600, "\(samples)")
            #expect(worker.log.contains("maintenance finished"), "one info line per run")
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(worker.log)")
        }
    }

    /// The forced order: the test holds the maintenance lock, so both workers must skip and
    /// delete nothing; once it lets go, one of them at a time works, and every expired row is
    /// deleted by exactly one run.
    @Test func twoWorkersSkipWhileTheLockIsHeldAndOneRunDeletesEachRowOnceItIsFree() async throws {
        try await withMigratedDatabase("maintsvc2") { database, connection, owner in
            try insertExpiredRows(owner: owner, on: connection)
            _ = try connection.query("SELECT pg_advisory_lock($1::bigint)", [Maintenance.advisoryLockKey])
            let first = try startWorker(database, instance: "m1")
            defer { first.stop() }
            let second = try startWorker(database, instance: "m2")
            defer { second.stop() }
            let bases = [try await metricsBaseURL(of: first), try await metricsBaseURL(of: second)]

            let whileHeld = try await scrape(bases) { $0.allSatisfy { runs("skipped", $0) >= 1 } }
            #expect(whileHeld.allSatisfy { runs("skipped", $0) >= 1 }, "\(whileHeld)")
            #expect(whileHeld.allSatisfy { runs("ok", $0) == 0 && runs("failed", $0) == 0 }, "\(whileHeld)")
            #expect(try expiredRowsLeft(on: connection) == 2, "nothing is deleted while another session holds the lock")

            _ = try connection.query("SELECT pg_advisory_unlock($1::bigint)", [Maintenance.advisoryLockKey])
            #expect(try await waitUntil(timeout: .seconds(30)) { try expiredRowsLeft(on: connection) == 0 })
            let after = try await scrape(bases) { $0.reduce(0) { $0 + runs("ok", $1) } >= 1 }
            #expect(after.reduce(0) { $0 + runs("ok", $1) } >= 1, "\(after)")
            #expect(after.allSatisfy { runs("failed", $0) == 0 }, "\(after)")
            let sessionsDeleted = after.reduce(0) { $0 + ($1[#"medianest_maintenance_rows_deleted_total{table="user_sessions"}"#] ?? 0) }
            #expect(sessionsDeleted == 1, "the expired session was deleted by exactly one run: \(after)")

            first.signal(SIGTERM)
            second.signal(SIGTERM)
            #expect(try await first.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(first.log)")
            #expect(try await second.waitForExit(timeout: .seconds(30)) == 0, "log:\n\(second.log)")
        }
    }
}
