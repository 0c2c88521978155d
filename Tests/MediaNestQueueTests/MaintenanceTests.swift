import Foundation
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

@Suite("maintenance: partitions and retention", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct MaintenanceTests {
    /// `audit_logs_YYYYMM` for the UTC month `offset` months from now, as the database computes it.
    func partitionName(monthsFromNow offset: Int, on connection: PGConnection) throws -> String {
        try connection.query("SELECT 'audit_logs_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int), 'YYYYMM') AS n",
                             [offset])[0].decode("n", as: String.self)
    }

    func exists(_ table: String, on connection: PGConnection) throws -> Bool {
        try connection.query("SELECT to_regclass($1) IS NOT NULL AS e", [table])[0].decode("e", as: Bool.self)
    }

    func isPartition(_ table: String, on connection: PGConnection) throws -> Bool {
        try connection.query("SELECT count(*) = 1 AS p FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = 'audit_logs'::regclass",
                             [table])[0].decode("p", as: Bool.self)
    }

    func count(_ sql: String, _ parameters: [(any PGEncodable)?] = [], on connection: PGConnection) throws -> Int {
        try connection.query("SELECT count(*) AS n FROM " + sql, parameters)[0].decode("n", as: Int.self)
    }

    @Test func createsTheNextMonthsPartitionsAndMovesRowsOutOfTheDefault() async throws {
        try await withMigratedDatabase("maintparts") { _, connection, _ in
            // The migration made the current month and the next three. Drop +3 to see it remade.
            let plus3 = try partitionName(monthsFromNow: 3, on: connection)
            try connection.execute("DROP TABLE \(plus3)")
            let plus5 = try partitionName(monthsFromNow: 5, on: connection)
            // A row for month +5 lands in the default partition until its partition exists.
            try connection.execute("""
                INSERT INTO audit_logs (action, created_at)
                VALUES ('test.future', date_trunc('month', now() AT TIME ZONE 'UTC') + interval '5 months 3 days')
                """)
            #expect(try count("audit_logs_default", on: connection) == 1)

            var policy = MaintenancePolicy()
            policy.partitionMonthsAhead = 5
            let dry = try Maintenance(policy: policy).run(on: connection, dryRun: true)
            let plus4 = try partitionName(monthsFromNow: 4, on: connection)
            #expect(dry.partitionsCreated == [plus3, plus4, plus5])
            #expect(try !exists(plus3, on: connection), "a dry run creates nothing")

            let report = try Maintenance(policy: policy).run(on: connection)
            #expect(report.partitionsCreated == [plus3, plus4, plus5])
            for name in [plus3, plus4, plus5] { #expect(try isPartition(name, on: connection), "\(name)") }
            #expect(try count("audit_logs_default", on: connection) == 0, "the row moved into its month's partition")
            #expect(try count(plus5, on: connection) == 1)
            #expect(try Maintenance(policy: policy).run(on: connection).partitionsCreated.isEmpty, "idempotent")
        }
    }

    @Test func dropsPartitionsPastRetentionAndKeepsRecentOnes() async throws {
        try await withMigratedDatabase("maintdrop") { _, connection, _ in
            for month in ["2015-03-01", "2016-01-01"] {
                try connection.query("SELECT create_audit_log_partition($1::date)", [month])
            }
            let recent = try connection.query("SELECT create_audit_log_partition((now() AT TIME ZONE 'UTC' - interval '2 months')::date) AS n")[0].decode("n", as: String.self)
            try connection.execute("""
                INSERT INTO audit_logs (action, created_at) VALUES
                  ('old', '2015-03-15T12:00:00Z'), ('older-detach', '2016-01-10T00:00:00Z'),
                  ('recent', now() - interval '2 months'),
                  ('in-default-old', '2010-06-01T00:00:00Z'), ('in-default-future', now() + interval '10 years')
                """)
            var policy = MaintenancePolicy()
            policy.auditLogRetentionMonths = 84
            let dry = try Maintenance(policy: policy).run(on: connection, dryRun: true)
            #expect(dry.partitionsDropped == ["audit_logs_201503", "audit_logs_201601"])
            #expect(dry.auditDefaultRowsDeleted == 1)
            #expect(try exists("audit_logs_201503", on: connection))

            let report = try Maintenance(policy: policy).run(on: connection)
            #expect(report.partitionsDropped == ["audit_logs_201503", "audit_logs_201601"])
            #expect(report.auditDefaultRowsDeleted == 1)
            #expect(try !exists("audit_logs_201503", on: connection))
            #expect(try !exists("audit_logs_201601", on: connection))
            #expect(try isPartition(recent, on: connection), "within retention")
            #expect(try count("audit_logs WHERE action = 'recent'", on: connection) == 1)
            #expect(try count("audit_logs WHERE action = 'in-default-future'", on: connection) == 1)
            #expect(try count("audit_logs WHERE action LIKE 'in-default-old'", on: connection) == 0)

            // Detach mode keeps the table for archiving, outside audit_logs.
            try connection.query("SELECT create_audit_log_partition('2017-05-01'::date)")
            try connection.execute("INSERT INTO audit_logs (action, created_at) VALUES ('archive-me', '2017-05-02T00:00:00Z')")
            policy.auditPartitionAction = .detach
            let detached = try Maintenance(policy: policy).run(on: connection)
            #expect(detached.partitionsDetached == ["audit_logs_201705"])
            #expect(detached.partitionsDropped.isEmpty)
            #expect(try exists("audit_logs_201705", on: connection))
            #expect(try !isPartition("audit_logs_201705", on: connection))
            #expect(try count("audit_logs_201705", on: connection) == 1)
            #expect(try count("audit_logs WHERE action = 'archive-me'", on: connection) == 0)
            #expect(try Maintenance(policy: policy).run(on: connection).partitionsDetached.isEmpty, "a detached table is not detached again")
        }
    }

    @Test func partitionDDLGivesUpInsteadOfQueueingBehindALongTransaction() async throws {
        try await withMigratedDatabase("maintbusy") { database, connection, _ in
            try connection.query("SELECT create_audit_log_partition('2015-03-01'::date)")
            let reader = try database.connect()
            try reader.execute("BEGIN")
            try reader.query("SELECT count(*) FROM audit_logs")  // ACCESS SHARE until COMMIT

            var policy = MaintenancePolicy()
            policy.ddlLockTimeout = .milliseconds(200)
            let report = try Maintenance(policy: policy).run(on: connection)
            #expect(report.partitionsDeferred == ["audit_logs_201503"])
            #expect(report.partitionsDropped.isEmpty)
            #expect(try isPartition("audit_logs_201503", on: connection), "left for the next run")

            try reader.execute("COMMIT")
            #expect(try Maintenance(policy: policy).run(on: connection).partitionsDropped == ["audit_logs_201503"])
        }
    }

    @Test func deletesRowsPastRetentionInBatchesAndKeepsNewerOnes() async throws {
        try await withMigratedDatabase("maintrows") { _, connection, owner in
            try connection.execute("""
                INSERT INTO cache_entries (key, value, expires_at) VALUES
                  ('gone1', 'x', now() - interval '1 hour'), ('gone2', 'x', now() - interval '1 day'), ('gone3', 'x', now() - interval '1 minute'),
                  ('live', 'x', now() + interval '1 hour'), ('forever', 'x', NULL)
                """)
            try connection.execute("""
                INSERT INTO notifications (user_id, title, read, read_at, expires_at, created_at) VALUES
                  ($1::uuid, 'expired', false, NULL, now() - interval '1 hour', now() - interval '2 days'),
                  ($1::uuid, 'read long ago', true, now() - interval '40 days', NULL, now() - interval '41 days'),
                  ($1::uuid, 'read recently', true, now() - interval '5 days', NULL, now() - interval '41 days'),
                  ($1::uuid, 'unread old', false, NULL, NULL, now() - interval '400 days')
                """, [owner])
            try connection.execute("""
                INSERT INTO user_sessions (user_id, token_hash, expires_at) VALUES
                  ($1::uuid, 'a', now() - interval '10 days'), ($1::uuid, 'b', now() - interval '1 day'), ($1::uuid, 'c', now() + interval '1 day')
                """, [owner])
            let quiet = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let busy = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            func job(_ item: String, _ type: String, _ status: String, finishedDaysAgo: Int?) throws -> String {
                let id = try DatabaseFixtures.insertJob(mediaItemID: item, type: type, on: connection)
                try connection.execute("""
                    UPDATE processing_jobs SET status = $2::job_status, completed_at = now() - make_interval(days => $3::int),
                           worker_id = CASE WHEN $2 = 'running' THEN 'h:1:0' END,
                           lease_expires_at = CASE WHEN $2 = 'running' THEN now() + interval '30 seconds' END,
                           lease_id = CASE WHEN $2 = 'running' THEN gen_random_uuid() END
                     WHERE id = $1::uuid
                    """, [id, status, finishedDaysAgo])
                return id
            }
            let oldCompleted = try job(quiet, "metadata", "completed", finishedDaysAgo: 40)
            let oldCancelled = try job(quiet, "preview", "cancelled", finishedDaysAgo: 31)
            let recentCompleted = try job(quiet, "thumbnail", "completed", finishedDaysAgo: 5)
            let oldFailedBusyItem = try job(busy, "metadata", "failed", finishedDaysAgo: 40)
            let running = try job(busy, "thumbnail", "running", finishedDaysAgo: nil)

            var policy = MaintenancePolicy()
            policy.batchSize = 2
            let dry = try Maintenance(policy: policy).run(on: connection, dryRun: true)
            #expect(dry.cacheEntriesDeleted == 3)
            #expect(dry.notificationsDeleted == 2)
            #expect(dry.userSessionsDeleted == 1)
            #expect(dry.processingJobsDeleted == 2)
            #expect(try count("cache_entries", on: connection) == 5, "a dry run deletes nothing")

            let report = try Maintenance(policy: policy).run(on: connection)
            #expect(report.cacheEntriesDeleted == 3)
            #expect(report.notificationsDeleted == 2)
            #expect(report.userSessionsDeleted == 1)
            #expect(report.processingJobsDeleted == 2)
            // cache 3 rows = 2 + 1; notifications 2 = 2 + 0; sessions 1; jobs 2 = 2 + 0; audit default 0.
            #expect(report.batches == 2 + 2 + 1 + 2 + 1, "batches of two rows, each its own statement")

            let keys = try connection.query("SELECT key FROM cache_entries ORDER BY key").map { try $0.decode("key", as: String.self) }
            #expect(keys == ["forever", "live"])
            let titles = try connection.query("SELECT title FROM notifications WHERE title <> '' AND user_id = $1::uuid ORDER BY title", [owner])
                .map { try $0.decode("title", as: String.self) }
            #expect(titles == ["read recently", "unread old"])
            let tokens = try connection.query("SELECT token_hash FROM user_sessions ORDER BY 1").map { try $0.decode("token_hash", as: String.self) }
            #expect(tokens == ["b", "c"])
            let jobs = Set(try connection.query("SELECT id::text AS id FROM processing_jobs").map { try $0.decode("id", as: String.self) })
            #expect(jobs == [recentCompleted, oldFailedBusyItem, running], "an item still in progress keeps its finished jobs")
            #expect(!jobs.contains(oldCompleted) && !jobs.contains(oldCancelled))
        }
    }

    @Test func lockedRowsAreSkippedNotWaitedFor() async throws {
        try await withMigratedDatabase("maintlocked") { database, connection, _ in
            try connection.execute("INSERT INTO cache_entries (key, value, expires_at) VALUES ('held', 'x', now() - interval '1 hour'), ('free', 'x', now() - interval '1 hour')")
            let other = try database.connect()
            try other.execute("BEGIN")
            try other.query("SELECT key FROM cache_entries WHERE key = 'held' FOR UPDATE")

            let report = try Maintenance().run(on: connection)
            #expect(report.cacheEntriesDeleted == 1)
            #expect(try connection.query("SELECT key FROM cache_entries").map { try $0.decode("key", as: String.self) } == ["held"])

            try other.execute("COMMIT")
            #expect(try Maintenance().run(on: connection).cacheEntriesDeleted == 1)
            #expect(try count("cache_entries", on: connection) == 0)
        }
    }

    @Test func aSecondRunSkipsWhileTheLockIsHeldAndWorksOnceItIsFree() async throws {
        try await withMigratedDatabase("maintlock") { database, connection, _ in
            try connection.execute("INSERT INTO cache_entries (key, value, expires_at) VALUES ('old', 'x', now() - interval '1 hour')")
            let holder = try database.connect()
            try holder.query("SELECT pg_advisory_lock($1::bigint)", [Maintenance.advisoryLockKey])

            let skipped = try Maintenance().run(on: connection)
            #expect(skipped.skipped)
            #expect(skipped.lockHolderPID == holder.backendPID)
            #expect(skipped.cacheEntriesDeleted == 0)
            #expect(try count("cache_entries", on: connection) == 1, "the skipped run changed nothing")

            try holder.query("SELECT pg_advisory_unlock($1::bigint)", [Maintenance.advisoryLockKey])
            let done = try Maintenance().run(on: connection)
            #expect(!done.skipped)
            #expect(done.cacheEntriesDeleted == 1)
            // The run released its lock: the other session can take it at once.
            #expect(try holder.query("SELECT pg_try_advisory_lock($1::bigint) AS got", [Maintenance.advisoryLockKey])[0].decode("got", as: Bool.self))
        }
    }

    @Test func theLockHolderNamedIsInThisDatabaseNotAnotherOneOfTheCluster() async throws {
        try await withMigratedDatabase("maintmine") { _, connection, _ in
            try await TestDatabase.with("maintother") { other in
                // The same key held in another database of the same cluster: not our lock.
                let elsewhere = try other.connect()
                try elsewhere.query("SELECT pg_advisory_lock($1::bigint)", [Maintenance.advisoryLockKey])
                #expect(try Maintenance().lockHolder(on: connection) == nil)
                #expect(!(try Maintenance().run(on: connection).skipped), "advisory locks are per database")
            }
        }
    }

    @Test func badPolicyIsRefusedWithTheSettingNamed() async throws {
        var policy = MaintenancePolicy()
        policy.batchSize = 0
        #expect(throws: QueueAdminError.self) { try policy.validate() }
        policy = MaintenancePolicy()
        policy.finishedJobRetentionDays = 0
        let error = #expect(throws: QueueAdminError.self) { try policy.validate() }
        #expect(error?.message.contains("job retention") == true)
    }
}
