import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

/// The one reader of queue state, against the real schema: what `status`, `status --watch` and
/// the queue gauges show.
@Suite("queue state reader", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct QueueStateReaderTests {
    /// Sets a job's row as a run would have left it.
    func set(_ job: String, _ assignments: String, on connection: PGConnection) throws {
        try connection.execute("UPDATE processing_jobs SET \(assignments) WHERE id = $1::uuid", [job])
    }

    func runAt(_ job: String, on connection: PGConnection) throws -> Date {
        try connection.query("SELECT run_at FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("run_at")
    }

    /// One queue with every state: per type, something runnable, delayed, running, completed,
    /// failed recently and long ago, cancelled.
    struct Queue {
        var oldMetadata = "", newMetadata = "", delayedThumbnail = "", runningPreview = "", recentFailure = ""
    }

    func makeQueue(owner: String, on connection: PGConnection) throws -> Queue {
        var queue = Queue()
        let photo = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "IMG_0001.jpg", on: connection)
        let clip = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "video/mp4", name: "clip.mp4", on: connection)
        let broken = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "video/mp4", name: "broken.mov", on: connection)
        queue.oldMetadata = try DatabaseFixtures.insertJob(mediaItemID: photo, type: "metadata", on: connection)
        try set(queue.oldMetadata, "run_at = now() - interval '10 minutes'", on: connection)
        queue.newMetadata = try DatabaseFixtures.insertJob(mediaItemID: clip, type: "metadata", on: connection)
        try set(queue.newMetadata, "run_at = now() - interval '1 minute'", on: connection)
        queue.delayedThumbnail = try DatabaseFixtures.insertJob(mediaItemID: photo, type: "thumbnail", on: connection)
        try set(queue.delayedThumbnail, "run_at = now() + interval '1 hour', attempts = 1", on: connection)
        queue.runningPreview = try DatabaseFixtures.insertJob(mediaItemID: photo, type: "preview", on: connection)
        try set(queue.runningPreview, """
            status = 'running', worker_id = 'host-a:1:x', lease_id = gen_random_uuid(), attempts = 2, started_at = now() - interval '30 seconds',
            lease_expires_at = now() + interval '1 minute', progress_info = '{"stage": "encoding", "fraction": 0.5}'
            """, on: connection)
        let completed = try DatabaseFixtures.insertJob(mediaItemID: clip, type: "thumbnail", on: connection)
        try set(completed, "status = 'completed', completed_at = now()", on: connection)
        queue.recentFailure = try DatabaseFixtures.insertJob(mediaItemID: broken, type: "transcode", on: connection)
        try set(queue.recentFailure, """
            status = 'failed', completed_at = now() - interval '5 minutes', error_message = 'no moov atom',
            output_data = '{"error": {"code": "corrupt_media", "message": "The file is not a complete video: no moov atom."}}'
            """, on: connection)
        let oldFailure = try DatabaseFixtures.insertJob(mediaItemID: clip, type: "transcode", on: connection)
        try set(oldFailure, "status = 'failed', completed_at = now() - interval '2 hours', error_message = 'old'", on: connection)
        let cancelled = try DatabaseFixtures.insertJob(mediaItemID: broken, type: "preview", on: connection)
        try set(cancelled, "status = 'cancelled', completed_at = now()", on: connection)
        return queue
    }

    @Test func theSnapshotCountsEachTypeByStateAndFindsTheOldestRunnableJob() async throws {
        try await withMigratedDatabase("snapshot") { _, connection, owner in
            let queue = try makeQueue(owner: owner, on: connection)
            let snapshot = try QueueStateReader.snapshot(on: connection)

            #expect(snapshot.types.map(\.type) == [.metadata, .preview, .thumbnail, .transcode])
            let byType = Dictionary(uniqueKeysWithValues: snapshot.types.map { ($0.type, $0) })
            #expect(byType[.metadata]?.counts == ["pending": 2])
            #expect(byType[.thumbnail]?.counts == ["pending": 1, "completed": 1])
            #expect(byType[.preview]?.counts == ["running": 1, "cancelled": 1])
            #expect(byType[.transcode]?.counts == ["failed": 2])

            // Runnable: pending and due. The delayed thumbnail waits for its backoff.
            let metadata = try #require(byType[.metadata]?.runnable)
            #expect(metadata.count == 2)
            #expect(metadata.oldestRunAt == (try runAt(queue.oldMetadata, on: connection)), "the older of the two")
            #expect(byType[.thumbnail]?.runnable == nil && byType[.thumbnail]?.delayed == 1)
            #expect(byType[.metadata]?.delayed == 0)
            let age = try #require(snapshot.oldestRunnableAge)
            #expect(age == metadata.age(at: snapshot.takenAt))
            #expect(age >= 600, "run_at was ten minutes before the snapshot")

            // One failure in the last hour; the two-hour-old one only counts as failed.
            #expect(snapshot.failuresLastHour == 1 && byType[.transcode]?.failedLastHour == 1)
            let failure = try #require(snapshot.failures.first)
            #expect(snapshot.failures.count == 1)
            #expect(failure.id == queue.recentFailure && failure.item == "broken.mov" && failure.code == "corrupt_media")
            #expect(failure.message == "The file is not a complete video: no moov atom.")

            let running = try #require(snapshot.running.first)
            #expect(snapshot.running.count == 1)
            #expect(running.id == queue.runningPreview && running.item == "IMG_0001.jpg" && running.workerID == "host-a:1:x")
            #expect(running.attempt == 2 && running.progress["stage"] == "encoding")
            #expect(running.startedAt.map { snapshot.takenAt.timeIntervalSince($0) >= 30 } == true)

            #expect(!snapshot.isIdle)
        }
    }

    @Test func typesWithPendingJobsAndNoLiveWorkerAreNamed() async throws {
        try await withMigratedDatabase("waiting") { _, connection, owner in
            _ = try makeQueue(owner: owner, on: connection)
            #expect(try QueueStateReader.snapshot(on: connection).typesWaitingForWorker == [.metadata, .thumbnail],
                    "delayed jobs wait for a worker too")
            try JobStore(workerID: "host-b:2:y").registerWorker(types: [.metadata], concurrency: 2, ttl: .seconds(90), on: connection)
            let snapshot = try QueueStateReader.snapshot(on: connection)
            #expect(snapshot.typesWaitingForWorker == [.thumbnail])
            #expect(snapshot.workers.map(\.id) == ["host-b:2:y"] && snapshot.workers.first?.concurrency == 2)
        }
    }

    /// The queue gauges read ``QueueStateReader/runnable(types:on:)``; `status` shows the same
    /// query's figures inside its snapshot. The two agree, type by type, to the microsecond.
    @Test func theGaugeFiguresAreTheSnapshotsRunnableFigures() async throws {
        try await withMigratedDatabase("gauges") { _, connection, owner in
            _ = try makeQueue(owner: owner, on: connection)
            let photo = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let preview = try DatabaseFixtures.insertJob(mediaItemID: photo, type: "transcode", on: connection)
            try set(preview, "run_at = now() - interval '3 minutes'", on: connection)

            let served: [JobType] = [.metadata, .thumbnail, .transcode]
            let sample = try QueueStateReader.runnable(types: served, on: connection)
            let snapshot = try QueueStateReader.snapshot(on: connection)
            let shown = snapshot.types.compactMap(\.runnable).filter { served.contains($0.type) }
            #expect(sample.runnable == shown, "sampler: \(sample.runnable)\nstatus: \(shown)")
            #expect(sample.runnable.map(\.type) == [.metadata, .transcode], "no due thumbnail, and preview is not served")
            #expect(sample.runnable.first { $0.type == .transcode }?.count == 1)

            // Nothing runnable: no rows, and still the time the reading was taken.
            try connection.execute("UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE status = 'pending'")
            let empty = try QueueStateReader.runnable(types: served, on: connection)
            #expect(empty.runnable.isEmpty && empty.takenAt >= sample.takenAt)
            #expect(try QueueStateReader.snapshot(on: connection).oldestRunnableAge == nil)
        }
    }

    @Test func anEmptyQueueIsIdleWithNothingToShow() async throws {
        try await withMigratedDatabase("emptyqueue") { _, connection, _ in
            let snapshot = try QueueStateReader.snapshot(on: connection)
            #expect(snapshot.types.isEmpty && snapshot.running.isEmpty && snapshot.failures.isEmpty && snapshot.workers.isEmpty)
            #expect(snapshot.isIdle && snapshot.oldestRunnableAge == nil && snapshot.typesWaitingForWorker.isEmpty)
        }
    }
}
