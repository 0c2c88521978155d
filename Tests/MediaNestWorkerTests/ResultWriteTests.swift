import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Synchronization
import Testing

/// A one-shot gate a handler waits on until the test opens it.
final class Gate: Sendable {
    private let isOpen = Mutex(false)
    func open() { isOpen.withLock { $0 = true } }
    func wait(_ cancellation: JobCancellation) throws(JobError) {
        while !isOpen.withLock({ $0 }) {
            try cancellation.check()
            usleep(5_000)
        }
    }
}

/// A metadata handler that merges a key into the item (so the completion updates the item row)
/// and, for the items it was told, waits on a gate first.
struct GatedHandler: JobHandler {
    let jobType: JobType = .metadata
    let gates: [String: Gate]

    func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        try gates[context.mediaItem.id]?.wait(context.cancellation)
        var update = MediaItemUpdate()
        update.metadataMerge = ["gated": .bool(true)]
        return JobOutcome(output: ["ok": true], itemUpdate: update)
    }
}

/// Runs a runtime in this process until the body returns, then stops it at once.
func withRuntime<T>(_ configuration: WorkerConfiguration, handler: any JobHandler, log: CapturedLog,
                    _ body: () async throws -> T) async throws -> T {
    let runtime = try WorkerRuntime(configuration: configuration, registry: HandlerRegistry([handler]), logger: log.logger())
    let task = startRun(runtime)
    do {
        let value = try await body()
        runtime.requestShutdown(immediately: true)
        _ = await task.value
        return value
    } catch {
        runtime.requestShutdown(immediately: true)
        _ = await task.value
        throw error
    }
}

@Suite("result writes", .serialized, .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(2)))
struct ResultWriteTests {
    private func configuration(_ database: TestDatabase) -> WorkerConfiguration {
        var configuration = WorkerConfiguration(database: database.configuration)
        configuration.types = [.metadata]
        configuration.concurrency = 4
        configuration.pollInterval = .milliseconds(200)
        configuration.resultLockTimeout = .milliseconds(200)
        return configuration
    }

    private func job(of item: String, on connection: PGConnection) throws -> PGRow {
        try connection.query("SELECT id::text AS id, status::text AS status, attempts, lost_count FROM processing_jobs WHERE media_item_id = $1::uuid", [item])[0]
    }

    @Test func resultWriteBlockedByARowLockIsRetriedAndStoredWithoutChargingTheJob() async throws {
        try await withMigratedDatabase("writelock") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let jobID = try #require(QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection).first?.id)
            // Another session holds the item row, so the completion's item update cannot get it.
            let locker = try database.connect()
            try locker.execute("BEGIN")
            try locker.execute("SELECT 1 FROM media_items WHERE id = $1::uuid FOR UPDATE", [item])

            let log = CapturedLog()
            var configuration = configuration(database)
            configuration.resultWriteRetryWindow = .seconds(60)
            try await withRuntime(configuration, handler: GatedHandler(gates: [:]), log: log) {
                // Two retries logged: the writer's statement really ran into lock_timeout twice.
                let retried = try await waitUntil(timeout: .seconds(30)) { log.matching("result write hit a conflict", jobID: jobID).count >= 2 }
                #expect(retried, "log:\n\(log.text)")
                #expect(log.matching("result write hit a conflict", jobID: jobID).allSatisfy { $0.metadata["sqlstate"] == "55P03" })
                let blocked = try job(of: item, on: connection)
                #expect(try blocked.decode("status", as: String.self) == "running")
                #expect(try blocked.decode("attempts", as: Int.self) == 1)

                try locker.execute("COMMIT")
                #expect(try await waitUntil(timeout: .seconds(30)) { try job(of: item, on: connection).decode("status", as: String.self) == "completed" },
                        "log:\n\(log.text)")
            }
            let done = try job(of: item, on: connection)
            #expect(try done.decode("attempts", as: Int.self) == 1, "a conflict on the write is not the job's fault")
            let itemRow = try connection.query("SELECT status::text AS s, metadata ->> 'gated' AS gated FROM media_items WHERE id = $1::uuid", [item])[0]
            #expect(try itemRow.decode("s", as: String.self) == "ready")
            #expect(try itemRow.decode("gated", as: String?.self) == "true")
            #expect(log.all.filter { $0.level >= .error }.isEmpty, "only the final outcome is logged, and it succeeded:\n\(log.text)")
            let completed = log.matching("job completed", jobID: jobID)
            #expect(completed.count == 1)
            #expect(completed.first.map { Int($0.metadata["write_retries"] ?? "0")! >= 2 } == true)
        }
    }

    @Test func aResultThatCannotBeStoredIsGivenUpAloneAndTheWritesBehindItGoOn() async throws {
        try await withMigratedDatabase("writestuck") { database, connection, owner in
            let stuck = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "stuck.jpg", on: connection)
            let later = try (0..<2).map { try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "later\($0).jpg", on: connection) }
            let stuckJob = try #require(QueueAdmin.enqueue(mediaItemID: stuck, types: [.metadata], priority: 0, on: connection).first?.id)
            for item in later { _ = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection) }
            let locker = try database.connect()
            try locker.execute("BEGIN")
            try locker.execute("SELECT 1 FROM media_items WHERE id = $1::uuid FOR UPDATE", [stuck])

            let gate = Gate()
            let log = CapturedLog()
            var configuration = configuration(database)
            configuration.resultWriteRetryWindow = .seconds(2)
            configuration.lease = .seconds(2)
            configuration.heartbeatInterval = .milliseconds(400)
            configuration.rescueInterval = .seconds(1)
            let handler = GatedHandler(gates: Dictionary(uniqueKeysWithValues: later.map { ($0, gate) }))
            try await withRuntime(configuration, handler: handler, log: log) {
                #expect(try await waitUntil(timeout: .seconds(30)) { !log.matching("result write hit a conflict", jobID: stuckJob).isEmpty },
                        "log:\n\(log.text)")
                // The later jobs finish together, behind the stuck write: they are written (the
                // batch that includes the stuck run is split) while the lock is still held.
                gate.open()
                let laterDone = try await waitUntil(timeout: .seconds(30)) {
                    try later.allSatisfy { try job(of: $0, on: connection).decode("status", as: String.self) == "completed" }
                }
                #expect(laterDone, "log:\n\(log.text)")
                #expect(try job(of: stuck, on: connection).decode("status", as: String.self) == "running")

                // Given up on its own, logged with its job id, and not charged.
                #expect(try await waitUntil(timeout: .seconds(30)) { !log.matching("job result could not be stored", jobID: stuckJob).isEmpty },
                        "log:\n\(log.text)")
                let givenUp = try job(of: stuck, on: connection)
                #expect(try givenUp.decode("attempts", as: Int.self) == 1)
                #expect(try givenUp.decode("status", as: String.self) != "failed")

                // Never lost: once the lock is gone, the lease expires, the job is rescued and runs again.
                try locker.execute("ROLLBACK")
                #expect(try await waitUntil(timeout: .seconds(30)) { try job(of: stuck, on: connection).decode("status", as: String.self) == "completed" },
                        "log:\n\(log.text)")
            }
            let rescued = try job(of: stuck, on: connection)
            #expect(try rescued.decode("attempts", as: Int.self) == 1, "neither the conflict nor the lost run was charged")
            #expect(try rescued.decode("lost_count", as: Int.self) >= 1)
            let unsettled = try connection.query("SELECT count(*) AS n FROM media_items WHERE status <> 'ready'")[0].decode("n", as: Int.self)
            #expect(unsettled == 0)
        }
    }
}
