import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

@Suite("job store SQL", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct JobStoreTests {
    @Test func enqueueIsIdempotentAndNotifiesOncePerStatement() async throws {
        try await withMigratedDatabase("enqueue") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "video/mp4", name: "clip.mp4", on: connection)
            let listener = try database.connect()
            try listener.listen(JobStore.channel)

            let first = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata, .thumbnail, .preview], priority: 0, on: connection)
            #expect(first.map(\.type) == [.metadata, .thumbnail, .preview])
            let notifications = try listener.waitForNotifications(timeout: .seconds(2))
            // Drain anything else that might still arrive: there must be nothing.
            let late = try listener.waitForNotifications(timeout: .milliseconds(300))
            #expect(notifications.count + late.count == 1, "one NOTIFY per enqueuing statement, not one per row")
            #expect(notifications.first?.payload == "metadata,preview,thumbnail")

            let second = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata, .thumbnail, .preview], priority: 0, on: connection)
            #expect(second.map(\.id) == first.map(\.id))
            #expect(try listener.waitForNotifications(timeout: .milliseconds(300)).isEmpty, "nothing new was inserted")
            let rows = try connection.query("SELECT job_type, count(*) AS n FROM processing_jobs GROUP BY 1")
            #expect(rows.count == 3)
            #expect(try rows.allSatisfy { try $0.decode("n", as: Int.self) == 1 })
            #expect(try connection.query("SELECT status::text AS s FROM media_items")[0].decode("s", as: String.self) == "processing")

            // NULL types: the MIME type decides (video → four jobs, the three existing ones returned again).
            let byMime = try connection.query("SELECT e::text AS id FROM enqueue_media_processing($1::uuid) AS e", [item]).map { try $0.decode("id", as: String.self) }
            #expect(byMime.count == 4)
            #expect(Array(byMime.prefix(3)) == first.map(\.id))

            let audio = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "audio/flac", name: "song.flac", on: connection)
            #expect(try QueueAdmin.enqueue(mediaItemID: audio, types: nil, priority: 0, on: connection).map(\.type) == [.metadata, .thumbnail])

            let unknown = #expect(throws: QueueAdminError.self) {
                try QueueAdmin.enqueue(mediaItemID: UUID().uuidString, types: nil, priority: 0, on: connection)
            }
            #expect(unknown?.message.contains("no media item") == true)
            #expect(throws: QueueAdminError.self) { try QueueAdmin.enqueue(mediaItemID: "not-a-uuid", types: nil, priority: 0, on: connection) }
            let sqlError = #expect(throws: DatabaseError.self) {
                try connection.query("SELECT enqueue_media_processing($1::uuid)", [UUID().uuidString])
            }
            #expect(sqlError?.message.contains("no media item with id") == true)
        }
    }

    @Test func claimTakesHighestPriorityFirstAndOnlyFreeSlotsOfServedTypes() async throws {
        try await withMigratedDatabase("claim") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let low = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", priority: 0, on: connection)
            let item2 = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let high = try DatabaseFixtures.insertJob(mediaItemID: item2, type: "metadata", priority: 10, on: connection)
            let item3 = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let later = try DatabaseFixtures.insertJob(mediaItemID: item3, type: "metadata", priority: 99, on: connection)
            try connection.execute("UPDATE processing_jobs SET run_at = now() + interval '1 hour' WHERE id = $1::uuid", [later])
            _ = try DatabaseFixtures.insertJob(mediaItemID: item, type: "transcode", on: connection)

            let store = JobStore(workerID: "host:1:a", lease: .seconds(30))
            let first = try store.claim(slots: [.metadata: 1, .thumbnail: 1], limit: 4, on: connection)
            #expect(first.map(\.job.id) == [high], "priority 10 before 0; run_at in the future is not runnable; one metadata slot")
            #expect(first.first?.job.attempt == 1)
            #expect(first.first?.mediaItem?.id == item2)
            #expect(first.first?.mediaItem?.mimeType == "image/jpeg")
            let second = try store.claim(slots: [.metadata: 5], limit: 5, on: connection)
            #expect(second.map(\.job.id) == [low], "the transcode job is not served")
            let row = try connection.query("SELECT status::text AS s, worker_id, attempts, lease_expires_at > now() + interval '20 seconds' AS leased FROM processing_jobs WHERE id = $1::uuid", [low])[0]
            #expect(try row.decode("s", as: String.self) == "running")
            #expect(try row.decode("worker_id", as: String.self) == "host:1:a")
            #expect(try row.decode("leased", as: Bool.self))
            #expect(try store.claim(slots: [.metadata: 5], limit: 5, on: connection).isEmpty)
            #expect(try store.claim(slots: [.transcode: 1], limit: 0, on: connection).isEmpty, "no global slot")
        }
    }

    @Test func staleWorkerCompletionIsFencedAndTheNewOwnersResultStands() async throws {
        try await withMigratedDatabase("fence") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let workerA = JobStore(workerID: "a:1:0", lease: .seconds(30))
            let workerB = JobStore(workerID: "b:2:0", lease: .seconds(30))
            let claimedByA = try #require(try workerA.claim(slots: [.metadata: 1], limit: 1, on: connection).first)

            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", [job])
            #expect(try workerB.rescueExpired(on: connection).requeued == [job])
            let claimedByB = try #require(try workerB.claimRunAlone(types: [.metadata], on: connection))
            #expect(claimedByB.job.id == job)
            #expect(claimedByB.runAlone)

            // A's heartbeat learns it lost the job; A's late writes change nothing.
            let stops = try workerA.heartbeat([HeartbeatEntry(jobID: job, leaseID: claimedByA.job.leaseID, progress: nil)], on: connection)
            #expect(stops[job] == .leaseLost)
            #expect(try workerA.complete(claimedByA.job, outcome: JobOutcome(output: ["by": "A"]), on: connection) == false)
            #expect(try workerA.fail(claimedByA.job, error: JobError(.ioError, "late"), on: connection) == .dropped)
            #expect(try workerA.release([claimedByA.job], on: connection).isEmpty)

            #expect(try workerB.complete(claimedByB.job, outcome: JobOutcome(output: ["by": "B"]), on: connection))
            let row = try connection.query("SELECT status::text AS s, output_data, worker_id, attempts, lost_count FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try row.decode("s", as: String.self) == "completed")
            #expect(try row.decode("output_data", as: JSONValue.self)["by"] == "B")
            #expect(try row.decode("worker_id", as: String.self) == "b:2:0")
            #expect(try row.decode("attempts", as: Int.self) == 1, "the lost run is not charged")
            #expect(try row.decode("lost_count", as: Int.self) == 1)
            #expect(try workerA.complete(claimedByA.job, outcome: JobOutcome(output: ["by": "A"]), on: connection) == false)
        }
    }

    @Test func workersOwnRescueSparesJobsItIsRunningButNotOnesItLostTrackOf() async throws {
        try await withMigratedDatabase("selfrescue") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let workerA = JobStore(workerID: "a:1:0", lease: .seconds(30))
            let claimed = try #require(try workerA.claim(slots: [.metadata: 1], limit: 1, on: connection).first)
            // A's heartbeat was late (a starved thread): the lease is past, but A is alive and running it.
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", [job])
            #expect(try workerA.rescueExpired(excluding: [job], on: connection).requeued.isEmpty)
            let stops = try workerA.heartbeat([HeartbeatEntry(jobID: job, leaseID: claimed.job.leaseID, progress: nil)], on: connection)
            #expect(stops[job] == nil, "the late heartbeat still owns the job")
            #expect(try workerA.complete(claimed.job, outcome: JobOutcome(output: ["by": "A"]), on: connection))

            // A claim A does not know it holds (the reply was lost) is rescued by A's own pass too.
            let second = try DatabaseFixtures.insertJob(mediaItemID: item, type: "thumbnail", on: connection)
            _ = try #require(try workerA.claim(slots: [.thumbnail: 1], limit: 1, on: connection).first)
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", [second])
            #expect(try workerA.rescueExpired(excluding: [], on: connection).requeued == [second])
        }
    }

    @Test func jobThatIsLostWhileRunningAloneBecomesPoisonAndNeighboursAreNotCharged() async throws {
        try await withMigratedDatabase("poison") { _, connection, owner in
            var jobs: [String] = []
            for _ in 0..<3 {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
                jobs.append(try DatabaseFixtures.insertJob(mediaItemID: item, type: "thumbnail", on: connection))
            }
            let store = JobStore(workerID: "w:1:0", lease: .seconds(30), maxLostAlone: 2)
            func expireAndRescue() throws -> RescueReport {
                try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'")
                return try store.rescueExpired(on: connection)
            }
            #expect(try store.claim(slots: [.thumbnail: 3], limit: 3, on: connection).count == 3)
            #expect(Set(try expireAndRescue().requeued) == Set(jobs), "a crash with neighbours condemns nobody")
            #expect(try store.claim(slots: [.thumbnail: 3], limit: 3, on: connection).isEmpty, "rescued jobs only run alone")
            let counts = try connection.query("SELECT count(*) FILTER (WHERE run_alone AND attempts = 0 AND status = 'pending') AS n FROM processing_jobs")[0]
            #expect(try counts.decode("n", as: Int.self) == 3)

            // Jobs 1 and 2 complete alone; job 0 is lost alone twice.
            let poison = jobs[0]
            try connection.execute("UPDATE processing_jobs SET priority = 5 WHERE id = $1::uuid", [poison])
            for round in 1...2 {
                let alone = try #require(try store.claimRunAlone(types: [.thumbnail], on: connection))
                #expect(alone.job.id == poison)
                let report = try expireAndRescue()
                #expect(report.poisoned == (round == 2 ? [poison] : []))
            }
            for _ in 1...2 {
                let alone = try #require(try store.claimRunAlone(types: [.thumbnail], on: connection))
                #expect(try store.complete(alone.job, outcome: JobOutcome(output: [:]), on: connection))
            }
            let poisoned = try connection.query("SELECT status::text AS s, error_message, output_data FROM processing_jobs WHERE id = $1::uuid", [poison])[0]
            #expect(try poisoned.decode("s", as: String.self) == "failed")
            #expect(try poisoned.decode("error_message", as: String.self).contains("worker lost 3 times"))
            #expect(try poisoned.decode("output_data", as: JSONValue.self)["error"]?["code"] == "worker_lost")
            let innocent = try connection.query("SELECT status::text AS s, attempts FROM processing_jobs WHERE id <> $1::uuid", [poison])
            #expect(try innocent.allSatisfy { try $0.decode("s", as: String.self) == "completed" && $0.decode("attempts", as: Int.self) == 1 })
            let itemStatus = try connection.query("SELECT m.status::text AS s, m.processing_info FROM media_items m JOIN processing_jobs j ON j.media_item_id = m.id WHERE j.id = $1::uuid", [poison])[0]
            #expect(try itemStatus.decode("s", as: String.self) == "error")
            #expect(try itemStatus.decode("processing_info", as: JSONValue.self)["errors"]?["thumbnail"]?["code"] == "worker_lost")
        }
    }

    @Test func transientFailureBacksOffAndPermanentFailureFailsTheItem() async throws {
        try await withMigratedDatabase("retry") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "broken.jpg", on: connection)
            let metadata = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", maxAttempts: 2, on: connection)
            let thumbnail = try DatabaseFixtures.insertJob(mediaItemID: item, type: "thumbnail", on: connection)
            let store = JobStore(workerID: "w:1:0", retryPolicy: RetryPolicy(baseDelay: .seconds(60), jitter: 0.2))

            let first = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first)
            let disposition = try store.fail(first.job, error: JobError(.ioError, "The disk went away."), on: connection)
            guard case .retrying = disposition else { Issue.record("expected a retry, got \(disposition)"); return }
            let waiting = try connection.query("""
                SELECT status::text AS s, extract(epoch FROM run_at - now())::float8 AS delay, output_data, error_message
                  FROM processing_jobs WHERE id = $1::uuid
                """, [metadata])[0]
            #expect(try waiting.decode("s", as: String.self) == "pending")
            let delay = try waiting.decode("delay", as: Double.self)
            #expect(delay > 40 && delay < 80, "base 60 s ± 20 %, got \(delay)")
            #expect(try waiting.decode("output_data", as: JSONValue.self)["error"] == JobError(.ioError, "The disk went away.").json(attempt: 1))
            #expect(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).isEmpty, "not before run_at")

            try connection.execute("UPDATE processing_jobs SET run_at = now() WHERE id = $1::uuid", [metadata])
            let second = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first)
            #expect(second.job.attempt == 2)
            #expect(try store.fail(second.job, error: JobError(.ioError, "Still gone."), on: connection) == .failed, "max_attempts 2")
            let exhausted = try connection.query("SELECT status::text AS s, error_message FROM processing_jobs WHERE id = $1::uuid", [metadata])[0]
            #expect(try exhausted.decode("s", as: String.self) == "failed")
            #expect(try exhausted.decode("error_message", as: String.self).contains("Gave up after 2 attempts"))

            let thumb = try #require(try store.claim(slots: [.thumbnail: 1], limit: 1, on: connection).first)
            #expect(thumb.job.id == thumbnail)
            #expect(try store.fail(thumb.job, error: JobError(.corruptMedia, "broken.jpg is truncated at byte 512."), on: connection) == .failed)

            let itemRow = try connection.query("SELECT status::text AS s, processing_info FROM media_items WHERE id = $1::uuid", [item])[0]
            #expect(try itemRow.decode("s", as: String.self) == "error")
            let errors = try itemRow.decode("processing_info", as: JSONValue.self)["errors"]
            #expect(errors?["thumbnail"]?["code"] == "corrupt_media")
            #expect(errors?["metadata"]?["code"] == "io_error")
            let notifications = try connection.query("SELECT type, category, title, message, data FROM notifications WHERE user_id = $1::uuid", [owner])
            try #require(notifications.count == 1, "one notification when the item turns to error")
            #expect(try notifications[0].decode("type", as: String.self) == "error")
            #expect(try notifications[0].decode("category", as: String.self) == "media")
            #expect(try notifications[0].decode("title", as: String.self).contains("broken.jpg"))
            #expect(try notifications[0].decode("data", as: JSONValue.self)["media_item_id"] == .string(item))
            let audit = try connection.query("SELECT action, severity::text AS severity, new_values FROM audit_logs WHERE resource_id = $1::uuid", [item])
            try #require(audit.count == 1)
            #expect(try audit[0].decode("action", as: String.self) == "media.failed")
            #expect(try audit[0].decode("severity", as: String.self) == "medium")
        }
    }

    @Test func batchCompletionWritesOwnedRunsTogetherAndSkipsFencedOnes() async throws {
        try await withMigratedDatabase("batch") { _, connection, owner in
            let first = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "one.jpg", on: connection)
            let second = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "two.jpg", on: connection)
            let jobs = [
                try DatabaseFixtures.insertJob(mediaItemID: first, type: "metadata", on: connection),
                try DatabaseFixtures.insertJob(mediaItemID: first, type: "thumbnail", on: connection),
                try DatabaseFixtures.insertJob(mediaItemID: second, type: "metadata", on: connection),
            ]
            let store = JobStore(workerID: "w:1:0")
            let claimed = try store.claim(slots: [.metadata: 2, .thumbnail: 1], limit: 3, on: connection)
            #expect(Set(claimed.map(\.job.id)) == Set(jobs))
            // An operator cancels one of them while it runs: its result must not be written.
            let cancelled = try #require(claimed.first { $0.job.mediaItemID == second })
            try connection.execute("UPDATE processing_jobs SET status = 'cancelled' WHERE id = $1::uuid", [cancelled.job.id])

            let runs = claimed.map { work -> (job: ClaimedJob, outcome: JobOutcome) in
                var update = MediaItemUpdate()
                if work.job.type == .metadata { update.metadataMerge = ["kind": "image"] }
                return (work.job, JobOutcome(output: ["type": .string(work.job.type.rawValue)], itemUpdate: update))
            }
            let owned = try store.completeBatch(runs, on: connection)
            #expect(owned == Set(jobs).subtracting([cancelled.job.id]))

            let statuses = try Dictionary(uniqueKeysWithValues: connection.query(
                "SELECT id::text AS id, status::text AS s, output_data FROM processing_jobs").map {
                    (try $0.decode("id", as: String.self), try $0.decode("s", as: String.self)) })
            #expect(statuses[jobs[0]] == "completed" && statuses[jobs[1]] == "completed")
            #expect(statuses[cancelled.job.id] == "cancelled", "the fenced run changed nothing")
            let firstItem = try connection.query("SELECT status::text AS s, metadata FROM media_items WHERE id = $1::uuid", [first])[0]
            #expect(try firstItem.decode("s", as: String.self) == "ready", "both of its jobs completed in the batch")
            #expect(try firstItem.decode("metadata", as: JSONValue.self)["kind"] == "image")
            let secondItem = try connection.query("SELECT metadata FROM media_items WHERE id = $1::uuid", [second])[0]
            #expect(try secondItem.decode("metadata", as: JSONValue.self)["kind"] == nil, "no item update for a fenced run")
            #expect(try store.completeBatch([], on: connection).isEmpty)
        }
    }

    @Test func itemBecomesReadyWithItsUpdatesWhenEveryJobCompleted() async throws {
        try await withMigratedDatabase("ready") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "cat.png", on: connection)
            _ = try QueueAdmin.enqueue(mediaItemID: item, types: nil, priority: 0, on: connection)
            let store = JobStore(workerID: "w:1:0")
            let claimed = try store.claim(slots: [.metadata: 1, .thumbnail: 1, .preview: 1], limit: 3, on: connection)
            #expect(claimed.count == 3)
            for (index, work) in claimed.enumerated() {
                var update = MediaItemUpdate()
                if work.job.type == .metadata {
                    update.metadataMerge = ["width": 640, "height": 480]
                    update.checksumSHA256 = String(repeating: "a", count: 64)
                    update.providerMetadata = [ProviderMetadata(provider: "local", data: ["codec": "png"], confidence: 1)]
                }
                if work.job.type == .thumbnail { update.thumbnailPath = "thumbs/\(item).webp" }
                #expect(try store.complete(work.job, outcome: JobOutcome(output: ["n": .int(Int64(index))], itemUpdate: update), on: connection))
                let status = try connection.query("SELECT status::text AS s FROM media_items WHERE id = $1::uuid", [item])[0].decode("s", as: String.self)
                #expect(status == (index == 2 ? "ready" : "processing"))
            }
            let row = try connection.query("SELECT metadata, checksum_sha256, thumbnail_path, processed_at IS NOT NULL AS processed FROM media_items WHERE id = $1::uuid", [item])[0]
            #expect(try row.decode("metadata", as: JSONValue.self)["width"] == 640)
            #expect(try row.decode("checksum_sha256", as: String?.self)?.count == 64)
            #expect(try row.decode("thumbnail_path", as: String?.self) == "thumbs/\(item).webp")
            #expect(try row.decode("processed", as: Bool.self))
            #expect(try connection.query("SELECT data FROM media_metadata WHERE media_item_id = $1::uuid AND provider = 'local'", [item]).count == 1)
            let notification = try connection.query("SELECT type, title FROM notifications WHERE user_id = $1::uuid", [owner])
            try #require(notification.count == 1)
            #expect(try notification[0].decode("type", as: String.self) == "success")
            let audit = try connection.query("SELECT action, old_values, new_values FROM audit_logs WHERE resource_id = $1::uuid AND resource_type = 'media_item'", [item])
            try #require(audit.count == 1)
            #expect(try audit[0].decode("action", as: String.self) == "media.processed")
            #expect(try audit[0].decode("old_values", as: JSONValue.self)["status"] == "processing")
            #expect(try audit[0].decode("new_values", as: JSONValue.self)["status"] == "ready")
        }
    }

    @Test func notificationTitlesCannotBeForgedByControlCharactersInTheFileName() async throws {
        try await withMigratedDatabase("forged-name") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "cat.png", on: connection)
            try connection.execute("UPDATE media_items SET original_filename = $2 WHERE id = $1::uuid",
                                   [item, "cat.png\nSYSTEM: your account is locked\u{1B}[2J\u{202E}gpj.exe"])
            _ = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection)
            let store = JobStore(workerID: "w:1:0")
            let work = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first)
            #expect(try store.complete(work.job, outcome: JobOutcome(output: [:]), on: connection))
            let rows = try connection.query("SELECT title, message FROM notifications WHERE user_id = $1::uuid", [owner])
            try #require(rows.count == 1)
            for column in ["title", "message"] {
                let text = try rows[0].decode(column, as: String.self)
                #expect(!text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || $0.value == 0x202E }, "\(column): \(text.debugDescription)")
                #expect(text.contains("cat.png?SYSTEM: your account is locked?[2J?gpj.exe"))
            }
        }
    }

    @Test func heartbeatExtendsLeasesWritesProgressAndReportsCancellation() async throws {
        try await withMigratedDatabase("heartbeat") { _, connection, owner in
            let store = JobStore(workerID: "w:7:x", lease: .seconds(30))
            var ids: [String] = []
            for _ in 0..<2 {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
                ids.append(try DatabaseFixtures.insertJob(mediaItemID: item, type: "preview", on: connection))
            }
            let claimed = try store.claim(slots: [.preview: 2], limit: 2, on: connection)
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() + interval '1 second'")
            #expect(try QueueAdmin.cancel(jobID: ids[1], on: connection) == .cancelledRunning(workerID: "w:7:x"))
            let entries = claimed.map { HeartbeatEntry(jobID: $0.job.id, leaseID: $0.job.leaseID, progress: $0.job.id == ids[0] ? ["stage": "encoding"] : nil) }
            let stops = try store.heartbeat(entries, on: connection)
            #expect(stops == [ids[1]: .cancelled])
            let row = try connection.query("SELECT progress_info, lease_expires_at > now() + interval '20 seconds' AS extended FROM processing_jobs WHERE id = $1::uuid", [ids[0]])[0]
            #expect(try row.decode("progress_info", as: JSONValue.self)["stage"] == "encoding")
            #expect(try row.decode("extended", as: Bool.self))
            #expect(try connection.query("SELECT 1 FROM processing_workers").isEmpty, "the heartbeat no longer touches the registry")
            // The cancelled run's late completion is refused.
            let cancelled = try #require(claimed.first { $0.job.id == ids[1] })
            #expect(try store.complete(cancelled.job, outcome: JobOutcome(output: [:]), on: connection) == false)
            #expect(try connection.query("SELECT status::text AS s FROM processing_jobs WHERE id = $1::uuid", [ids[1]])[0].decode("s", as: String.self) == "cancelled")
        }
    }

    @Test func releaseOnShutdownDoesNotChargeAnAttempt() async throws {
        try await withMigratedDatabase("release") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let store = JobStore(workerID: "w:1:0")
            let claimed = try store.claim(slots: [.metadata: 1], limit: 1, on: connection)
            #expect(try store.release(claimed.map(\.job), on: connection) == [job])
            let row = try connection.query("SELECT status::text AS s, attempts, worker_id FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try row.decode("s", as: String.self) == "pending")
            #expect(try row.decode("attempts", as: Int.self) == 0)
            #expect(try row.decode("worker_id", as: String?.self) == nil)
        }
    }

    @Test func oldRunsWritesAreRefusedAfterTheSameWorkerReclaimedTheJob() async throws {
        try await withMigratedDatabase("lease") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let worker = JobStore(workerID: "w:1:0", lease: .seconds(30))
            let oldRun = try #require(try worker.claim(slots: [.metadata: 1], limit: 1, on: connection).first).job
            // The worker lost track of its run (a stall past the lease); its own rescue pass takes
            // the job back, not charging the attempt, and it claims the job again.
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", [job])
            #expect(try worker.rescueExpired(on: connection).requeued == [job])
            let newRun = try #require(try worker.claimRunAlone(types: [.metadata], on: connection)).job
            // Same worker id, same attempt number: only the lease token tells the runs apart.
            #expect(newRun.attempt == oldRun.attempt)
            #expect(newRun.leaseID != oldRun.leaseID)

            var update = MediaItemUpdate()
            update.metadataMerge = ["by": "old run"]
            #expect(try worker.heartbeat([HeartbeatEntry(jobID: job, leaseID: oldRun.leaseID, progress: ["stage": "old"])], on: connection) == [job: .leaseLost])
            #expect(try worker.complete(oldRun, outcome: JobOutcome(output: ["by": "old"], itemUpdate: update), on: connection) == false)
            #expect(try worker.completeBatch([(oldRun, JobOutcome(output: ["by": "old"], itemUpdate: update))], on: connection).isEmpty)
            #expect(try worker.fail(oldRun, error: JobError(.ioError, "old"), itemUpdate: update, on: connection) == .dropped)
            #expect(try worker.fail(oldRun, error: JobError(.corruptMedia, "old"), itemUpdate: update, on: connection) == .dropped)
            #expect(try worker.release([oldRun], on: connection).isEmpty)
            let running = try connection.query("SELECT status::text AS s, attempts, lease_id::text AS lease, progress_info FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try running.decode("s", as: String.self) == "running")
            #expect(try running.decode("attempts", as: Int.self) == 1)
            #expect(try running.decode("lease", as: String.self) == newRun.leaseID)
            #expect(try running.decode("progress_info", as: JSONValue.self)["stage"] == nil)
            #expect(try connection.query("SELECT metadata FROM media_items WHERE id = $1::uuid", [item])[0].decode("metadata", as: JSONValue.self)["by"] == nil)

            #expect(try worker.heartbeat([HeartbeatEntry(jobID: job, leaseID: newRun.leaseID, progress: nil)], on: connection).isEmpty)
            #expect(try worker.complete(newRun, outcome: JobOutcome(output: ["by": "new"]), on: connection))
            #expect(try connection.query("SELECT output_data FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("output_data", as: JSONValue.self)["by"] == "new")
        }
    }

    @Test func staleWorkersBatchCompletionChangesNothing() async throws {
        try await withMigratedDatabase("batchfence") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            let workerA = JobStore(workerID: "a:1:0"), workerB = JobStore(workerID: "b:2:0")
            let runA = try #require(try workerA.claim(slots: [.metadata: 1], limit: 1, on: connection).first).job
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::uuid", [job])
            #expect(try workerB.rescueExpired(on: connection).requeued == [job])
            let runB = try #require(try workerB.claimRunAlone(types: [.metadata], on: connection)).job

            var update = MediaItemUpdate()
            update.metadataMerge = ["by": "A"]
            update.checksumMD5 = String(repeating: "0", count: 32)
            #expect(try workerA.completeBatch([(runA, JobOutcome(output: ["by": "A"], itemUpdate: update))], on: connection).isEmpty)
            let row = try connection.query("SELECT status::text AS s, worker_id, lease_id::text AS lease, output_data FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try row.decode("s", as: String.self) == "running")
            #expect(try row.decode("worker_id", as: String.self) == "b:2:0")
            #expect(try row.decode("lease", as: String.self) == runB.leaseID)
            #expect(try row.decode("output_data", as: JSONValue?.self)?["by"] == nil)
            let itemRow = try connection.query("SELECT status::text AS s, metadata, checksum_md5 FROM media_items WHERE id = $1::uuid", [item])[0]
            #expect(try itemRow.decode("s", as: String.self) == "uploading", "not settled")
            #expect(try itemRow.decode("metadata", as: JSONValue.self)["by"] == nil)
            #expect(try itemRow.decode("checksum_md5", as: String?.self) == nil)
            #expect(try connection.query("SELECT 1 FROM notifications").isEmpty)
        }
    }

    @Test func claimSkipsAJobAnotherTransactionHoldsInsteadOfWaiting() async throws {
        try await withMigratedDatabase("skiplocked") { database, connection, owner in
            // Per kind of claim, a top job (priority 10) and the next one: ordinary metadata jobs,
            // and preview jobs rescued after a crash (run alone).
            var top: [String] = [], next: [String] = []
            for type in ["metadata", "preview"] {
                for priority in [10, 0] {
                    let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
                    let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: type, priority: priority, on: connection)
                    if priority == 10 { top.append(job) } else { next.append(job) }
                }
            }
            try connection.execute("UPDATE processing_jobs SET run_alone = true WHERE job_type = 'preview'")
            let holder = try database.connect()
            try holder.execute("BEGIN")
            try holder.execute("SELECT 1 FROM processing_jobs WHERE id = ANY($1::text[]::uuid[]) FOR UPDATE", [top])
            // Without SKIP LOCKED the claim would wait for the holder and fail with 55P03 here.
            try connection.execute("SET lock_timeout = '500ms'")
            let store = JobStore(workerID: "w:1:0")
            #expect(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).map(\.job.id) == [next[0]])
            #expect(try store.claimRunAlone(types: [.preview], on: connection)?.job.id == next[1])
            try holder.execute("ROLLBACK")
            #expect(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).map(\.job.id) == [top[0]])
        }
    }

    @Test func failureKeepsItsItemUpdateWhetherItRetriesOrNot() async throws {
        try await withMigratedDatabase("failupdate") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", maxAttempts: 2, on: connection)
            let store = JobStore(workerID: "w:1:0", retryPolicy: RetryPolicy(baseDelay: .milliseconds(1), jitter: 0))
            func checksums() throws -> (md5: String?, sha256: String?, size: Int64?) {
                let row = try connection.query("SELECT checksum_md5, checksum_sha256, file_size FROM media_items WHERE id = $1::uuid", [item])[0]
                return (try row.decode("checksum_md5"), try row.decode("checksum_sha256"), try row.decode("file_size"))
            }
            var first = MediaItemUpdate()
            first.checksumMD5 = String(repeating: "a", count: 32)
            first.checksumSHA256 = String(repeating: "b", count: 64)
            let run1 = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first).job
            guard case .retrying = try store.fail(run1, error: JobError(.ioError, "flaky"), itemUpdate: first, on: connection) else {
                Issue.record("expected a retry"); return
            }
            #expect(try checksums().md5 == first.checksumMD5 && checksums().sha256 == first.checksumSHA256, "applied on a retry")

            try connection.execute("UPDATE processing_jobs SET run_at = now() WHERE id = $1::uuid", [job])
            let run2 = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first).job
            var fenced = MediaItemUpdate()
            fenced.fileSize = 1
            #expect(try store.fail(run1, error: JobError(.corruptMedia, "late"), itemUpdate: fenced, on: connection) == .dropped)
            #expect(try checksums().size == 1000, "a fenced-off failure applies nothing")

            var second = MediaItemUpdate()
            second.checksumMD5 = String(repeating: "c", count: 32)
            second.fileSize = 4096
            #expect(try store.fail(run2, error: JobError(.mimeMismatch, "not a JPEG"), itemUpdate: second, on: connection) == .failed)
            let after = try checksums()
            #expect(after.md5 == second.checksumMD5 && after.sha256 == first.checksumSHA256 && after.size == 4096, "applied on a final failure")
            #expect(try settledState(of: item, on: connection).status == "error")
        }
    }

    @Test func registerWorkerKeepsTheLiveWorkerViewAndHeartbeatLeavesItAlone() async throws {
        try await withMigratedDatabase("registry") { _, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            _ = try DatabaseFixtures.insertJob(mediaItemID: item, type: "transcode", on: connection)
            let store = JobStore(workerID: "host-a:42:x")
            try store.registerWorker(types: [.metadata, .thumbnail], concurrency: 4, ttl: .seconds(90), on: connection)
            var status = try QueueStateReader.snapshot(on: connection)
            let worker = try #require(status.workers.first)
            #expect(status.workers.count == 1)
            #expect(worker.id == "host-a:42:x" && worker.types == ["metadata", "thumbnail"] && worker.concurrency == 4)
            #expect(status.typesWaitingForWorker == [.transcode])
            let row = try connection.query("SELECT host, pid, expires_at > now() + interval '80 seconds' AS ttl FROM processing_workers")[0]
            #expect(try row.decode("host", as: String.self) == "host-a" && row.decode("pid", as: Int.self) == 42 && row.decode("ttl", as: Bool.self))

            // A refresh replaces what the worker serves; an expired registration is not live.
            try store.registerWorker(types: [.transcode], concurrency: 1, ttl: .seconds(90), on: connection)
            status = try QueueStateReader.snapshot(on: connection)
            #expect(status.workers.map(\.types) == [["transcode"]] && status.typesWaitingForWorker.isEmpty)
            try connection.execute("UPDATE processing_workers SET expires_at = now() - interval '1 second'")
            let seen = try connection.query("SELECT last_seen_at FROM processing_workers")[0].decode("last_seen_at", as: Date.self)
            #expect(try store.heartbeat([], on: connection).isEmpty)
            let running = try #require(try store.claim(slots: [.transcode: 1], limit: 1, on: connection).first)
            #expect(try store.heartbeat([HeartbeatEntry(jobID: running.job.id, leaseID: running.job.leaseID, progress: nil)], on: connection).isEmpty)
            #expect(try QueueStateReader.snapshot(on: connection).workers.isEmpty, "the heartbeat does not register")
            #expect(try connection.query("SELECT last_seen_at FROM processing_workers")[0].decode("last_seen_at", as: Date.self) == seen)
            try store.unregister(on: connection)
            #expect(try connection.query("SELECT 1 FROM processing_workers").isEmpty)
        }
    }

    @Test func heartbeatTellsADeletedItemFromAnOperatorCancel() async throws {
        try await withMigratedDatabase("deleted") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let kept = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let doomed = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let cancelledJob = try DatabaseFixtures.insertJob(mediaItemID: kept, type: "metadata", on: connection)
            let orphanedJob = try DatabaseFixtures.insertJob(mediaItemID: doomed, type: "metadata", on: connection)
            let claimed = try store.claim(slots: [.metadata: 2], limit: 2, on: connection)
            try #require(claimed.count == 2)
            _ = try QueueAdmin.cancel(jobID: cancelledJob, on: connection)
            try connection.execute("DELETE FROM media_items WHERE id = $1::uuid", [doomed])
            let stops = try store.heartbeat(claimed.map { HeartbeatEntry(jobID: $0.job.id, leaseID: $0.job.leaseID, progress: nil) }, on: connection)
            #expect(stops == [cancelledJob: .cancelled, orphanedJob: .mediaItemDeleted])
            #expect(StopReason.mediaItemDeleted.error.code == .mediaItemMissing)
        }
    }

    @Test func onlyOneWorkerRescuesAtATime() async throws {
        try await withMigratedDatabase("rescuelock") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let job = try DatabaseFixtures.insertJob(mediaItemID: item, type: "metadata", on: connection)
            _ = try JobStore(workerID: "dead:1:0").claim(slots: [.metadata: 1], limit: 1, on: connection)
            try connection.execute("UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second'")
            // Another worker is in the middle of its rescue pass: it holds the rescue lock.
            let other = try database.connect()
            try other.execute("BEGIN")
            #expect(try other.query("SELECT pg_try_advisory_xact_lock($1::bigint) AS got", [JobStore.rescueLockKey])[0].decode("got", as: Bool.self))
            let store = JobStore(workerID: "w:2:0")
            #expect(try store.rescueExpired(on: connection) == RescueReport(), "returns at once with nothing done")
            #expect(try connection.query("SELECT status::text AS s FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("s", as: String.self) == "running")
            try other.execute("COMMIT")
            #expect(try store.rescueExpired(on: connection).requeued == [job])
            // The lock is transaction-level: the pass released it when it committed.
            #expect(try other.query("SELECT pg_try_advisory_xact_lock($1::bigint) AS got", [JobStore.rescueLockKey])[0].decode("got", as: Bool.self))
        }
    }

    @Test func backoffGrowsExponentiallyWithJitterAndCap() {
        let policy = RetryPolicy(baseDelay: .seconds(10), maximumDelay: .seconds(3600), jitter: 0.2)
        #expect(policy.nominalDelay(afterAttempt: 1) == .seconds(10))
        #expect(policy.nominalDelay(afterAttempt: 3) == .seconds(40))
        #expect(policy.nominalDelay(afterAttempt: 20) == .seconds(3600))
        #expect(policy.delay(afterAttempt: 1, random: 0) == .seconds(8))
        #expect(policy.delay(afterAttempt: 1, random: 0.999_999).seconds > 11.9)
        #expect(policy.delay(afterAttempt: 30, random: 0.999) <= .seconds(3600))
    }

    /// ``JobStore/lockTimeout`` turns a recording transaction stuck behind an item lock into a
    /// `55P03` and is set for that transaction only: the session's own `lock_timeout` is
    /// untouched afterwards, which is what makes it safe behind PgBouncer in transaction mode.
    @Test func aRecordingTransactionsLockTimeoutEndsWithIt() async throws {
        try await withMigratedDatabase("locktimeout") { database, connection, owner in
            var store = JobStore(workerID: "w:1:0")
            store.lockTimeout = .milliseconds(200)
            let (item, jobs) = try itemWithRunningJobs([.metadata, .thumbnail], store: store, owner: owner, on: connection)
            let holder = try database.connect()
            try holder.execute("BEGIN")
            try holder.execute("SELECT 1 FROM media_items WHERE id = $1::uuid FOR UPDATE", [item])

            var state: String?
            do {
                _ = try store.complete(try #require(jobs[.metadata]), outcome: JobOutcome(output: [:]), on: connection)
            } catch let error as DatabaseError {
                state = error.sqlState
            }
            #expect(state == "55P03")
            do {
                _ = try store.fail(try #require(jobs[.thumbnail]), error: JobError(.ioError, "disk"), on: connection)
                Issue.record("fail waited out the item lock")
            } catch let error as DatabaseError {
                #expect(error.sqlState == "55P03")
            }
            try holder.execute("ROLLBACK")
            #expect(try store.complete(try #require(jobs[.metadata]), outcome: JobOutcome(output: [:]), on: connection))
            // Nothing of it is left on the session once a recording transaction committed (one
            // that rolled back would take even a session setting back with it).
            #expect(try connection.query("SELECT current_setting('lock_timeout') AS t")[0].decode("t", as: String.self) == "0")
        }
    }
}
