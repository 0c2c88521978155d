import Foundation
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
@testable import MediaNestWorker
import Testing

/// The worker's `processing_workers` row has one owner, the heartbeat: it writes the row while
/// it runs and removes it when it stops, which the service group does after the claim loop
/// has finished. The claim loop used to remove it as it finished, and a `--drain` run could
/// finish before the heartbeat's first registration: the row was written after it was removed
/// and outlived the worker (`WorkerProcessTests` saw it once in a fresh clone).
@Suite("heartbeat: the registry row", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(1)))
struct HeartbeatRegistryTests {
    private func rows(_ connection: PGConnection) throws -> Int {
        try connection.query("SELECT count(*) AS n FROM processing_workers")[0].decode("n", as: Int.self)
    }

    /// A heartbeat that started after the claim loop had already finished (the drain order)
    /// still leaves no row once it stops; and one that registered removes its row.
    @Test(arguments: [false, true])
    func aStoppedHeartbeatLeavesNoRegistryRow(fatal: Bool) async throws {
        try await withMigratedDatabase("registry") { database, connection, _ in
            var configuration = WorkerConfiguration(database: database.configuration)
            configuration.types = [.metadata]
            let state = RuntimeState()
            let heartbeat = Heartbeat(database: PGConnectionRunner(configuration: database.configuration, label: "test", logger: TestLogging.logger()),
                                      metrics: WorkerMetrics(types: [.metadata]), state: state, store: JobStore(workerID: "test:1:0"),
                                      types: [.metadata], configuration: configuration, logger: TestLogging.logger())
            // The claim loop has passed its start-up checks and already finished.
            state.withLock {
                $0.started = true
                $0.finished = true
                if fatal { $0.fatal = "the database no longer matches this worker" }
            }
            state.signal()
            let executor = RunExecutor(name: "mn-test-beat")
            defer { executor.shutdown() }
            let service = Task(executorPreference: executor) { await heartbeat.run() }
            let registered = try await waitUntil(timeout: .seconds(20)) { try rows(connection) == 1 }
            #expect(registered, "the heartbeat registers the worker")
            service.cancel()
            await service.value
            // On a fatal stop the database is not trusted with more writes: the row expires.
            let left = try rows(connection)
            #expect(left == (fatal ? 1 : 0))
        }
    }
}
