import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// Inserts `count` image items with one job each of `type` and `input`; returns the job ids.
private func insertJobs(_ count: Int, type: String = "metadata", input: String = "{}", owner: String, on connection: PGConnection) throws -> [String] {
    try connection.query("""
        WITH items AS (
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
            SELECT $1::uuid, 'f' || n || '.jpg', 'f' || n || '.jpg', 'image/jpeg', 'u/f' || n || '.jpg'
              FROM generate_series(1, $2::int) n
            RETURNING id
        )
        INSERT INTO processing_jobs (media_item_id, job_type, input_data)
        SELECT id, $3, $4::jsonb FROM items RETURNING id::text AS id
        """, [owner, count, type, input]).map { try $0.decode("id", as: String.self) }
}

/// Fast timings so that leases expire and heartbeats happen within a test's patience.
private let fastTimings = ["--lease", "2", "--heartbeat", "0.4", "--poll-interval", "0.5", "--log-level", "info"]

@Suite("worker processes", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct WorkerProcessTests {
    @Test func severalWorkersRunEveryJobExactlyOnce() async throws {
        try await withMigratedDatabase("exactlyonce") { database, connection, owner in
            let jobs = try insertJobs(90, input: #"{"sleep_ms": 20}"#, owner: owner, on: connection)
                + insertJobs(30, type: "thumbnail", input: #"{"sleep_ms": 20}"#, owner: owner, on: connection)
            let runLog = makeRunLog()
            let workers = try (0..<3).map { index in
                try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                  arguments: ["--drain", "--instance", "w\(index)", "--concurrency", "4"] + fastTimings)
            }
            for worker in workers {
                let status = try await worker.waitForExit(timeout: .seconds(60))
                #expect(status == 0, "worker log:\n\(worker.log)")
            }
            let counts = runCounts(runLog)
            #expect(counts.count == jobs.count)
            #expect(counts.values.allSatisfy { $0 == 1 }, "runs per job: \(counts.filter { $0.value != 1 })")
            let rows = try connection.query("SELECT count(*) FILTER (WHERE status = 'completed' AND attempts = 1) AS done, count(DISTINCT worker_id) AS workers FROM processing_jobs")[0]
            #expect(try rows.decode("done", as: Int.self) == jobs.count)
            #expect(try rows.decode("workers", as: Int.self) >= 2, "the work was shared")
            #expect(try connection.query("SELECT count(*) AS n FROM processing_workers")[0].decode("n", as: Int.self) == 0, "workers unregister on exit")
        }
    }

    /// Issue 7 §1: jobs of one item finishing on several workers at once must settle the item.
    /// Each worker serves one job type, so the jobs of an item are necessarily completed by
    /// different processes in different transactions, through the real batched write path.
    @Test func itemsWithJobsOnSeveralWorkersAllSettleWithOneNotificationEach() async throws {
        try await withMigratedDatabase("settle") { database, connection, owner in
            var items: [String] = []
            for index in 0..<120 {
                let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: index % 2 == 0 ? "video/mp4" : "image/jpeg",
                                                                name: "s\(index).\(index % 2 == 0 ? "mp4" : "jpg")", on: connection)
                _ = try QueueAdmin.enqueue(mediaItemID: item, types: nil, priority: 0, on: connection)
                items.append(item)
            }
            // Small random durations so that jobs of one item finish close together; one item
            // in ten has a thumbnail that fails for good (its item must end `error`, notified once).
            try connection.execute("UPDATE processing_jobs SET input_data = jsonb_build_object('sleep_ms', (random() * 15)::int)")
            let failing = Array(items.enumerated().filter { $0.offset % 10 == 3 }.map(\.element))
            try connection.execute("""
                UPDATE processing_jobs SET input_data = input_data || '{"fail": {"code": "corrupt_media", "message": "broken"}}'
                 WHERE job_type = 'thumbnail' AND media_item_id = ANY($1::text[]::uuid[])
                """, [failing])
            let jobCount = try connection.query("SELECT count(*) AS n FROM processing_jobs")[0].decode("n", as: Int.self)
            #expect(jobCount == 60 * 4 + 60 * 3)

            let runLog = makeRunLog()
            let workers = try ["metadata", "thumbnail", "preview", "transcode", "metadata,thumbnail,preview,transcode"].enumerated().map { index, types in
                try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                  arguments: ["--drain", "--instance", "s\(index)", "--types", types, "--concurrency", "8",
                                              "--type-limits", "metadata=8,thumbnail=8,preview=8,transcode=8"] + fastTimings)
            }
            for worker in workers {
                let status = try await worker.waitForExit(timeout: .seconds(90))
                #expect(status == 0, "worker log:\n\(worker.log)")
            }
            let open = try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status IN ('pending', 'running')")[0].decode("n", as: Int.self)
            #expect(open == 0)
            let stuck = try connection.query("SELECT id::text AS id FROM media_items WHERE status = 'processing'").map { try $0.decode("id", as: String.self) }
            #expect(stuck.isEmpty, "\(stuck.count) of \(items.count) items left processing with no job pending or running: \(stuck.prefix(5))")
            let wrongStatus = try connection.query("""
                SELECT count(*) AS n FROM media_items
                 WHERE status::text <> CASE WHEN id = ANY($1::text[]::uuid[]) THEN 'error' ELSE 'ready' END
                """, [failing])[0].decode("n", as: Int.self)
            #expect(wrongStatus == 0)
            let badNotifications = try connection.query("""
                SELECT m.id::text AS id, count(n.id) AS notified FROM media_items m
                  LEFT JOIN notifications n ON n.data ->> 'media_item_id' = m.id::text
                 GROUP BY m.id HAVING count(n.id) <> 1
                """).map { "\(try $0.decode("id", as: String.self)): \(try $0.decode("notified", as: Int.self))" }
            #expect(badNotifications.isEmpty, "items without exactly one ready/error notification: \(badNotifications.prefix(5))")
        }
    }

    @Test func killedWorkersJobIsFinishedByAnotherWorkerAfterTheLease() async throws {
        try await withMigratedDatabase("kill") { database, connection, owner in
            // Long enough to be seen running even when parallel tests keep the polling thread busy.
            let job = try insertJobs(1, input: #"{"sleep_ms": 5000}"#, owner: owner, on: connection)[0]
            let runLog = makeRunLog()
            let victim = try WorkerProcess(connectionString: database.connectionString, runLog: runLog, arguments: ["--instance", "victim"] + fastTimings)
            defer { victim.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(job, on: connection) == "running" })
            victim.signal(SIGKILL)
            _ = try await victim.waitForExit(timeout: .seconds(5))

            let rescuer = try WorkerProcess(connectionString: database.connectionString, runLog: runLog, arguments: ["--instance", "rescuer"] + fastTimings)
            defer { rescuer.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(job, on: connection) == "completed" }, "rescuer log:\n\(rescuer.log)")
            let row = try connection.query("SELECT worker_id, attempts, lost_count FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try row.decode("worker_id", as: String.self).hasSuffix(":rescuer"))
            #expect(try row.decode("lost_count", as: Int.self) == 1)
            #expect(try row.decode("attempts", as: Int.self) == 1, "the crashed run is not charged")
            #expect(runCounts(runLog) == [job: 1], "the killed run never finished; the rescuer's run finished once")
        }
    }

    @Test func jobThatCrashesItsWorkerFailsAsPoisonAndItsNeighboursComplete() async throws {
        try await withMigratedDatabase("poison") { database, connection, owner in
            let poison = try insertJobs(1, input: #"{"sleep_ms": 300, "crash": true}"#, owner: owner, on: connection)[0]
            let innocents = try insertJobs(3, type: "thumbnail", input: #"{"sleep_ms": 900}"#, owner: owner, on: connection)
            let runLog = makeRunLog()
            // Plays systemd's Restart=always: a new worker whenever the last one died.
            var restarts = 0
            var current = try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                            arguments: ["--concurrency", "4", "--max-lost", "2"] + fastTimings)
            let settled = try await waitUntil(timeout: .seconds(60)) {
                if !current.isRunning {
                    restarts += 1
                    current = try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                                arguments: ["--concurrency", "4", "--max-lost", "2"] + fastTimings)
                }
                let open = try connection.query("SELECT count(*) AS n FROM processing_jobs WHERE status IN ('pending', 'running')")[0].decode("n", as: Int.self)
                return open == 0
            }
            current.stop()
            #expect(settled, "jobs did not settle; restarts \(restarts); last log:\n\(current.log)")
            #expect(restarts == 3, "one crash beside neighbours, then two alone")
            let failed = try connection.query("SELECT status::text AS s, error_message, output_data FROM processing_jobs WHERE id = $1::uuid", [poison])[0]
            #expect(try failed.decode("s", as: String.self) == "failed")
            #expect(try failed.decode("error_message", as: String.self).contains("worker lost 3 times"))
            #expect(try failed.decode("output_data", as: JSONValue.self)["error"]?["code"] == "worker_lost")
            for innocent in innocents {
                let row = try connection.query("SELECT status::text AS s, attempts FROM processing_jobs WHERE id = $1::uuid", [innocent])[0]
                #expect(try row.decode("s", as: String.self) == "completed")
                #expect(try row.decode("attempts", as: Int.self) == 1, "not charged for the neighbour's crash")
            }
        }
    }

    @Test func transientFailuresRetryThroughRunAtAndPermanentOnesFailAtOnce() async throws {
        try await withMigratedDatabase("retries") { database, connection, owner in
            let flaky = try insertJobs(1, input: #"{"fail": {"code": "io_error", "retryable": true, "until_attempt": 2}}"#, owner: owner, on: connection)[0]
            let broken = try insertJobs(1, input: #"{"fail": {"code": "corrupt_media", "message": "f.jpg is truncated"}}"#, owner: owner, on: connection)[0]
            let hopeless = try insertJobs(1, input: #"{"fail": {"code": "io_error", "retryable": true}}"#, owner: owner, on: connection)[0]
            try connection.execute("UPDATE processing_jobs SET max_attempts = 3 WHERE id = $1::uuid", [hopeless])
            let runLog = makeRunLog()
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: runLog,
                                           arguments: ["--retry-base", "0.3"] + fastTimings)
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(15)) { try jobStatus(broken, on: connection) == "failed" })
            #expect(try connection.query("SELECT attempts FROM processing_jobs WHERE id = $1::uuid", [broken])[0].decode("attempts", as: Int.self) == 1)
            // After the first failure the flaky job waits in pending with run_at in the future.
            #expect(try await waitUntil(timeout: .seconds(15)) {
                try connection.query("SELECT status = 'pending' AND attempts = 1 AND run_at > now() AS waiting FROM processing_jobs WHERE id = $1::uuid", [flaky])[0].decode("waiting", as: Bool.self)
                    || jobStatus(flaky, on: connection) == "completed"
            })
            #expect(try await waitUntil(timeout: .seconds(15)) {
                try jobStatus(flaky, on: connection) == "completed" && jobStatus(hopeless, on: connection) == "failed"
            }, "worker log:\n\(worker.log)")
            let flakyRow = try connection.query("SELECT attempts, output_data FROM processing_jobs WHERE id = $1::uuid", [flaky])[0]
            #expect(try flakyRow.decode("attempts", as: Int.self) == 3)
            let hopelessRow = try connection.query("SELECT attempts, error_message, output_data FROM processing_jobs WHERE id = $1::uuid", [hopeless])[0]
            #expect(try hopelessRow.decode("attempts", as: Int.self) == 3, "max_attempts respected")
            #expect(try hopelessRow.decode("error_message", as: String.self).contains("Gave up after 3 attempts"))
            #expect(try hopelessRow.decode("output_data", as: JSONValue.self)["error"]?["retryable"] == true)
        }
    }

    @Test func cancellingARunningJobStopsItWithinAHeartbeat() async throws {
        try await withMigratedDatabase("cancel") { database, connection, owner in
            let job = try insertJobs(1, input: #"{"sleep_ms": 30000, "progress": true}"#, owner: owner, on: connection)[0]
            let runLog = makeRunLog()
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: runLog, arguments: fastTimings)
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT progress_info ->> 'stage' AS stage FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("stage", as: String?.self) == "sleeping"
            }, "progress reaches progress_info through the heartbeat")
            let cancel = try runCLI(["cancel", job, "--database-url", database.connectionString])
            #expect(cancel.status == 0, "\(cancel.error)")
            #expect(cancel.output.contains("stops it within one heartbeat"))
            #expect(try await waitUntil(timeout: .seconds(15)) { worker.log.contains("job cancelled by an operator; stopped") }, "log:\n\(worker.log)")
            #expect(try jobStatus(job, on: connection) == "cancelled")
            #expect(runCounts(runLog).isEmpty, "the handler stopped instead of finishing")
            #expect(worker.isRunning)

            let again = try runCLI(["cancel", job, "--database-url", database.connectionString])
            #expect(again.status != 0)
            #expect(again.error.contains("already cancelled"))
            let retried = try runCLI(["retry", job, "--database-url", database.connectionString])
            #expect(retried.status == 0, "\(retried.error)")
            #expect(try jobStatus(job, on: connection) != "cancelled")
        }
    }

    @Test func sigtermReleasesALongJobWithoutChargingItAndExitsZero() async throws {
        try await withMigratedDatabase("sigterm") { database, connection, owner in
            let job = try insertJobs(1, input: #"{"sleep_ms": 60000}"#, owner: owner, on: connection)[0]
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--grace-period", "1"] + fastTimings)
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(job, on: connection) == "running" })
            worker.signal(SIGTERM)
            let status = try await worker.waitForExit(timeout: .seconds(10))
            #expect(status == 0, "log:\n\(worker.log)")
            let row = try connection.query("SELECT status::text AS s, attempts, worker_id FROM processing_jobs WHERE id = $1::uuid", [job])[0]
            #expect(try row.decode("s", as: String.self) == "pending")
            #expect(try row.decode("attempts", as: Int.self) == 0)
            #expect(try row.decode("worker_id", as: String?.self) == nil)
        }
    }

    @Test func secondSignalStopsAtOnceAndStillReleases() async throws {
        try await withMigratedDatabase("sigtwice") { database, connection, owner in
            let job = try insertJobs(1, input: #"{"sleep_ms": 60000}"#, owner: owner, on: connection)[0]
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--grace-period", "120"] + fastTimings)
            defer { worker.stop() }
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(job, on: connection) == "running" })
            worker.signal(SIGINT)
            try await Task.sleep(for: .milliseconds(300))
            #expect(worker.isRunning, "the grace period holds the first signal")
            worker.signal(SIGINT)
            #expect(try await worker.waitForExit(timeout: .seconds(5)) == 0, "log:\n\(worker.log)")
            #expect(try jobStatus(job, on: connection) == "pending")
        }
    }

    @Test func enqueueOnAnIdleSystemWakesTheWorkerThroughNotify() async throws {
        try await withMigratedDatabase("notify") { database, connection, owner in
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--poll-interval", "30", "--log-level", "info"])
            defer { worker.stop() }
            // Registered (heartbeat ran) and past its first claim: now idle until NOTIFY or 30 s.
            #expect(try await waitUntil(timeout: .seconds(30)) {
                try connection.query("SELECT count(*) AS n FROM processing_workers")[0].decode("n", as: Int.self) == 1
            })
            try await Task.sleep(for: .milliseconds(500))
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let jobs = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection)
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(jobs[0].id, on: connection) == "completed" })
            let latency = try connection.query("SELECT extract(epoch FROM started_at - created_at)::float8 AS s FROM processing_jobs WHERE id = $1::uuid", [jobs[0].id])[0].decode("s", as: Double.self)
            #expect(latency < 2, "started \(latency) s after enqueue; the 30 s poll cannot have done that")
        }
    }

    @Test func specialisedWorkerLeavesOtherTypesPendingAndStatusSaysSo() async throws {
        try await withMigratedDatabase("special") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let jobs = try QueueAdmin.enqueue(mediaItemID: item, types: nil, priority: 0, on: connection)
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--types", "metadata"] + fastTimings)
            defer { worker.stop() }
            let metadata = try #require(jobs.first { $0.type == .metadata })
            #expect(try await waitUntil(timeout: .seconds(30)) { try jobStatus(metadata.id, on: connection) == "completed" })
            try await Task.sleep(for: .milliseconds(800))
            for job in jobs where job.type != .metadata {
                #expect(try jobStatus(job.id, on: connection) == "pending")
            }
            let status = try runCLI(["status", "--database-url", database.connectionString])
            #expect(status.status == 0, "\(status.error)")
            #expect(status.output.contains("Waiting for a worker (pending, but no live worker serves the type): preview, thumbnail"), "\(status.output)")
            #expect(status.output.contains(":0  types metadata"), "\(status.output)")
            #expect(try connection.query("SELECT status::text AS s FROM media_items WHERE id = $1::uuid", [item])[0].decode("s", as: String.self) == "processing")
        }
    }

    @Test func operatorCommandsRejectUnknownAndMalformedIds() async throws {
        try await withMigratedDatabase("cli") { database, connection, owner in
            let url = ["--database-url", database.connectionString]
            for command in [["enqueue"], ["retry"], ["cancel"]] {
                let unknown = try runCLI(command + [UUID().uuidString] + url)
                #expect(unknown.status != 0)
                #expect(unknown.error.contains("There is no"), "\(command): \(unknown.error)")
                let malformed = try runCLI(command + ["12345"] + url)
                #expect(malformed.status != 0)
                #expect(malformed.error.contains("not a valid UUID"), "\(command): \(malformed.error)")
            }
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "video/mp4", on: connection)
            let enqueued = try runCLI(["enqueue", item, "--priority", "5"] + url)
            #expect(enqueued.status == 0)
            #expect(enqueued.output.contains("transcode"))
            #expect(enqueued.output.contains("4 jobs"))
            let job = try connection.query("SELECT id::text AS id FROM processing_jobs WHERE job_type = 'metadata'")[0].decode("id", as: String.self)
            let pendingRetry = try runCLI(["retry", job] + url)
            #expect(pendingRetry.status != 0)
            #expect(pendingRetry.error.contains("only failed or cancelled"))
            try connection.execute("UPDATE processing_jobs SET status = 'failed', attempts = 5 WHERE id = $1::uuid", [job])
            let retryFailed = try runCLI(["retry", "--failed", "--type", "metadata"] + url)
            #expect(retryFailed.status == 0, "\(retryFailed.error)")
            #expect(retryFailed.output.contains("1 failed job put back"))
            #expect(try connection.query("SELECT attempts FROM processing_jobs WHERE id = $1::uuid", [job])[0].decode("attempts", as: Int.self) == 0)
        }
    }
}

/// Issue 10, "Logs": `--log-format json` writes one JSON object per line, and every line about a
/// job carries its id, media id, type and attempt.
@Suite("worker log format", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct WorkerLogFormatTests {
    @Test func jsonLinesCarryTheJobsContext() async throws {
        try await withMigratedDatabase("logjson") { database, connection, owner in
            let jobs = try insertJobs(3, input: #"{"sleep_ms": 10}"#, owner: owner, on: connection)
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--drain", "--log-format", "json", "--log-level", "info", "--metrics-address", "off"])
            #expect(try await worker.waitForExit(timeout: .seconds(60)) == 0, "\(worker.log)")
            let lines = worker.log.split(separator: "\n").filter { !$0.isEmpty }
            try #require(!lines.isEmpty)
            var completed: Set<String> = []
            for line in lines {
                let object = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
                guard let message = object["msg"] as? String, message.hasPrefix("job ") else { continue }
                // Every line about a job says which job, item, type and attempt it is about.
                let id = try #require(object["job_id"] as? String, "\(line)")
                #expect(object["media_id"] as? String != nil && object["job_type"] as? String == "metadata" && object["attempt"] as? String == "1", "\(line)")
                guard message == "job completed" else { continue }
                completed.insert(id)
            }
            #expect(completed == Set(jobs), "\(worker.log)")
        }
    }
}
