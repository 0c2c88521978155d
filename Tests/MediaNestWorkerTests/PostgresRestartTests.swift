import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

@Suite("PostgreSQL restart", .enabled(if: executablesAvailable && FileManager.default.isExecutableFile(atPath: PrivateCluster.binDirectory + "/initdb"),
                                      "needs the PostgreSQL server binaries and built executables"),
       .timeLimit(.minutes(2)))
struct PostgresRestartTests {
    @Test func restartingPostgresMidRunLosesNoJobAndTheWorkerSurvives() async throws {
        let cluster = try PrivateCluster()
        let admin = try PGConnection.connect(cluster.configuration())
        try admin.execute("CREATE DATABASE medianest")
        let configuration = cluster.configuration(database: "medianest")
        var connection = try PGConnection.connect(configuration)
        try applyProjectMigrations(connection)
        let owner = try DatabaseFixtures.insertUser(on: connection)
        var jobs: [String] = []
        for index in 0..<24 {
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "r\(index).jpg", on: connection)
            jobs.append(try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", input: #"{"sleep_ms": 150}"#, on: connection))
        }
        let runLog = makeRunLog()
        let worker = try WorkerProcess(connectionString: cluster.connectionString(database: "medianest"), runLog: runLog,
                                       arguments: ["--concurrency", "2", "--lease", "10", "--heartbeat", "0.5", "--poll-interval", "0.5"])
        defer { worker.stop() }
        func completed() throws -> Int {
            try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status = 'completed'")[0].decode("n", as: Int.self)
        }
        #expect(try await waitUntil(timeout: .seconds(20)) { try completed() >= 4 })
        try cluster.restart()
        connection = try PGConnection.connect(configuration)
        #expect(try await waitUntil(timeout: .seconds(40)) { try completed() == jobs.count }, "worker log:\n\(worker.log)")
        #expect(worker.isRunning, "the worker must survive the restart")
        #expect(worker.log.contains("database unavailable") || worker.log.contains("heartbeat failed") || worker.log.contains("listener connection failed"),
                "the restart was noticed")
        let counts = runCounts(runLog)
        #expect(counts.count == jobs.count)
        #expect(counts.values.allSatisfy { $0 == 1 }, "runs per job: \(counts.filter { $0.value != 1 })")
        #expect(try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE attempts <> 1")[0].decode("n", as: Int.self) == 0)
    }

    /// `/readyz` follows the database: 200 while the claim loop reaches it, 503 naming the
    /// database while the server is down (the LISTEN session's socket closes, so the loop knows
    /// at once), 200 again once it is back; `/healthz` says the process lives throughout.
    @Test func readinessFollowsTheDatabaseWhileLivenessStays() async throws {
        let cluster = try PrivateCluster()
        let admin = try PGConnection.connect(cluster.configuration())
        try admin.execute("CREATE DATABASE medianest")
        try applyProjectMigrations(try PGConnection.connect(cluster.configuration(database: "medianest")))
        let worker = try WorkerProcess(connectionString: cluster.connectionString(database: "medianest"), runLog: makeRunLog(),
                                       arguments: ["--metrics-address", "127.0.0.1:0", "--poll-interval", "0.5"])
        defer { worker.stop() }
        let base = try await metricsBaseURL(of: worker)
        var last = (status: 0, body: "")
        try await waitForReadiness(base, status: 200, last: &last)
        #expect(last.status == 200, "\(last.body)\nlog:\n\(worker.log)")

        try cluster.stop()
        try await waitForReadiness(base, status: 503, last: &last)
        #expect(last.status == 503 && last.body.contains("database"), "\(last.body)\nlog:\n\(worker.log)")
        #expect(try await httpGet(base + "/healthz").status == 200)

        try cluster.start()
        try await waitForReadiness(base, status: 200, last: &last)
        #expect(last.status == 200, "\(last.body)\nlog:\n\(worker.log)")
        #expect(worker.isRunning)
    }

    /// Polls `/readyz` until it answers `status` or 30 s pass; `last` holds the last answer.
    private func waitForReadiness(_ base: String, status: Int, last: inout (status: Int, body: String)) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            last = try await httpGet(base + "/readyz")
            if last.status == status { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
