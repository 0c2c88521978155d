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
}
