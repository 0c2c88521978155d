import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

/// The joint claim (``JobStore/claimUnits(slots:limit:together:on:)``): an item's pending
/// thumbnail and preview jobs claimed as one unit, each with its own lease, and the orders in
/// which another transaction can meet it, forced with a second connection.
@Suite("joint claim of an item's still jobs", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct JointClaimTests {
    static let stills: Set<JobType> = [.thumbnail, .preview]

    /// An item with pending jobs of `types`, enqueued as the upload pipeline does.
    func item(_ types: [JobType], owner: String, on connection: PGConnection) throws -> (item: String, jobs: [JobType: String]) {
        let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
        let jobs = try QueueAdmin.enqueue(mediaItemID: item, types: types, priority: 0, on: connection)
        return (item, Dictionary(uniqueKeysWithValues: jobs.map { ($0.type, $0.id) }))
    }

    func row(_ job: String, on connection: PGConnection) throws -> (status: String, worker: String?, lease: String?) {
        let row = try connection.query("SELECT status::text AS s, worker_id, lease_id::text AS lease FROM processing_jobs WHERE id = $1::uuid", [job])[0]
        return (try row.decode("s", as: String.self), try row.decode("worker_id", as: String?.self), try row.decode("lease", as: String?.self))
    }

    @Test func anItemsThumbnailAndPreviewAreOneUnitWithALeaseEachAndOneWriteCompletesBoth() async throws {
        try await withMigratedDatabase("jointunit") { _, connection, owner in
            let (item, jobs) = try item([.metadata, .thumbnail, .preview], owner: owner, on: connection)
            let store = JobStore(workerID: "w:1:0")
            // One thumbnail slot and one unit: the preview comes along without a slot of its own.
            let units = try store.claimUnits(slots: [.thumbnail: 1], limit: 1, together: Self.stills, on: connection)
            try #require(units.count == 1)
            let unit = units[0]
            #expect(unit.works.map(\.job.type) == [.thumbnail, .preview])
            #expect(unit.works.map(\.job.id) == [jobs[.thumbnail], jobs[.preview]])
            #expect(unit.works.allSatisfy { $0.mediaItem?.id == item })
            let leases = unit.works.map(\.job.leaseID)
            #expect(Set(leases).count == 2, "a token per job, not per unit")
            for work in unit.works {
                #expect(try row(work.job.id, on: connection) == ("running", "w:1:0", work.job.leaseID))
            }
            #expect(try row(try #require(jobs[.metadata]), on: connection).status == "pending", "metadata is not a still job")

            // Each lease is its own: a heartbeat with one token extends that job only.
            let stops = try store.heartbeat([HeartbeatEntry(jobID: unit.works[0].job.id, leaseID: unit.works[0].job.leaseID, progress: nil),
                                              HeartbeatEntry(jobID: unit.works[1].job.id, leaseID: unit.works[0].job.leaseID, progress: nil)],
                                             on: connection)
            #expect(stops == [unit.works[1].job.id: .leaseLost])

            // One batch write completes both, fenced each on its own token.
            let outcome = JobOutcome(output: ["ok": true])
            let owned = try store.completeBatch(unit.works.map { ($0.job, outcome) }, on: connection)
            #expect(owned == Set(unit.works.map(\.job.id)))
            #expect(try row(unit.works[1].job.id, on: connection).status == "completed")
        }
    }

    @Test func withoutJointTypesOrAJointTypeServedEveryJobIsAUnitOfItsOwn() async throws {
        try await withMigratedDatabase("jointoff") { _, connection, owner in
            let (_, jobs) = try item([.thumbnail, .preview], owner: owner, on: connection)
            let store = JobStore(workerID: "w:1:0")
            // A worker that serves thumbnails only takes no preview along.
            let alone = try store.claimUnits(slots: [.thumbnail: 4], limit: 4, together: [], on: connection)
            #expect(alone.map { $0.works.map(\.job.id) } == [[try #require(jobs[.thumbnail])]])
            #expect(try row(try #require(jobs[.preview]), on: connection).status == "pending")
        }
    }

    @Test func twoFreeSlotsClaimTwoItemsPairsNotOneItemsPairTwice() async throws {
        try await withMigratedDatabase("jointslots") { _, connection, owner in
            let first = try item([.thumbnail, .preview], owner: owner, on: connection)
            let second = try item([.thumbnail, .preview], owner: owner, on: connection)
            let store = JobStore(workerID: "w:1:0")
            let units = try store.claimUnits(slots: [.thumbnail: 2, .preview: 2], limit: 2, together: Self.stills, on: connection)
            #expect(units.count == 2)
            #expect(Set(units.map(\.lead.job.mediaItemID)) == [first.item, second.item])
            #expect(units.allSatisfy { Set($0.works.map(\.job.type)) == Self.stills })
        }
    }

    /// (a) A sibling row that another transaction holds while the claim runs is left out, and
    /// the claim does not wait for it; once free, it is claimed on its own.
    @Test func aSiblingHeldByAnotherTransactionIsLeftOutWithoutWaiting() async throws {
        try await withMigratedDatabase("jointheld") { database, connection, owner in
            let (_, jobs) = try item([.thumbnail, .preview], owner: owner, on: connection)
            let thumbnail = try #require(jobs[.thumbnail]), preview = try #require(jobs[.preview])
            let holder = try database.connect()
            try holder.execute("BEGIN")
            try holder.execute("SELECT 1 FROM processing_jobs WHERE id = $1::uuid FOR UPDATE", [preview])
            // Waiting for the holder would end in 55P03 here instead of a claim.
            try connection.execute("SET lock_timeout = '500ms'")
            let store = JobStore(workerID: "w:1:0")
            let units = try store.claimUnits(slots: [.thumbnail: 1, .preview: 1], limit: 2, together: Self.stills, on: connection)
            #expect(units.map { $0.works.map(\.job.id) } == [[thumbnail]])
            try holder.execute("ROLLBACK")
            let later = try store.claimUnits(slots: [.thumbnail: 1, .preview: 1], limit: 2, together: Self.stills, on: connection)
            #expect(later.map { $0.works.map(\.job.id) } == [[preview]], "claimed alone once free; it renders alone")
        }
    }

    /// (a) with the holder being another worker's claim of the sibling, not yet committed: the
    /// claim takes its own job alone, and the sibling stays that worker's after it commits.
    @Test func anotherWorkersClaimOfTheSiblingInProgressKeepsIt() async throws {
        try await withMigratedDatabase("jointracing") { database, connection, owner in
            let (_, jobs) = try item([.thumbnail, .preview], owner: owner, on: connection)
            let thumbnail = try #require(jobs[.thumbnail]), preview = try #require(jobs[.preview])
            let other = try database.connect()
            let otherStore = JobStore(workerID: "w:2:0")
            try other.execute("BEGIN")
            let theirs = try otherStore.claimUnits(slots: [.preview: 1], limit: 1, together: [], on: other)
            #expect(theirs.map { $0.works.map(\.job.id) } == [[preview]])
            try connection.execute("SET lock_timeout = '500ms'")
            let store = JobStore(workerID: "w:1:0")
            let ours = try store.claimUnits(slots: [.thumbnail: 1, .preview: 1], limit: 2, together: Self.stills, on: connection)
            #expect(ours.map { $0.works.map(\.job.id) } == [[thumbnail]])
            try other.execute("COMMIT")
            #expect(try row(preview, on: connection) == ("running", "w:2:0", theirs[0].lead.job.leaseID))
            #expect(try row(thumbnail, on: connection) == ("running", "w:1:0", ours[0].lead.job.leaseID))
        }
    }

    /// (b) A sibling another worker claimed a moment earlier is not taken twice; and a unit being
    /// claimed in an open transaction leaves the other worker nothing of the item, at once.
    @Test func aSiblingClaimedAMomentEarlierIsNotTakenTwice() async throws {
        try await withMigratedDatabase("jointearlier") { database, connection, owner in
            let (_, jobs) = try item([.thumbnail, .preview], owner: owner, on: connection)
            let thumbnail = try #require(jobs[.thumbnail]), preview = try #require(jobs[.preview])
            let other = try database.connect()
            // A worker that serves previews only.
            let earlier = try JobStore(workerID: "w:2:0").claimUnits(slots: [.preview: 1], limit: 1, together: [], on: other)
            #expect(earlier.map { $0.works.map(\.job.id) } == [[preview]])
            let store = JobStore(workerID: "w:1:0")
            let ours = try store.claimUnits(slots: [.thumbnail: 1, .preview: 1], limit: 2, together: Self.stills, on: connection)
            #expect(ours.map { $0.works.map(\.job.id) } == [[thumbnail]])
            #expect(try row(preview, on: connection) == ("running", "w:2:0", earlier[0].lead.job.leaseID))

            // Both jobs of a second item, claimed as a unit in a transaction not yet committed:
            // the other worker skips both without waiting, and after the commit finds them taken.
            let (_, pair) = try item([.thumbnail, .preview], owner: owner, on: connection)
            try connection.execute("BEGIN")
            let unit = try store.claimUnits(slots: [.thumbnail: 1], limit: 1, together: Self.stills, on: connection)
            #expect(Set(unit.flatMap(\.works).map(\.job.id)) == Set(pair.values))
            try other.execute("SET lock_timeout = '500ms'")
            let otherStore = JobStore(workerID: "w:2:0")
            #expect(try otherStore.claimUnits(slots: [.thumbnail: 2, .preview: 2], limit: 4, together: Self.stills, on: other).isEmpty)
            try connection.execute("COMMIT")
            #expect(try otherStore.claimUnits(slots: [.thumbnail: 2, .preview: 2], limit: 4, together: Self.stills, on: other).isEmpty)
        }
    }

    /// A job retried with a backoff, or rescued to run alone, does not come along: it runs alone.
    @Test func aSiblingThatIsNotClaimableOnItsOwnDoesNotComeAlong() async throws {
        try await withMigratedDatabase("jointnotready") { _, connection, owner in
            let backoff = try item([.thumbnail, .preview], owner: owner, on: connection)
            let rescued = try item([.thumbnail, .preview], owner: owner, on: connection)
            try connection.execute("UPDATE processing_jobs SET run_at = now() + interval '1 hour' WHERE id = $1::uuid", [backoff.jobs[.preview]])
            try connection.execute("UPDATE processing_jobs SET run_alone = true WHERE id = $1::uuid", [rescued.jobs[.preview]])
            let store = JobStore(workerID: "w:1:0")
            let units = try store.claimUnits(slots: [.thumbnail: 2], limit: 2, together: Self.stills, on: connection)
            #expect(Set(units.map { $0.works.map(\.job.id) }) == [[try #require(backoff.jobs[.thumbnail])], [try #require(rescued.jobs[.thumbnail])]])
            #expect(try store.claimRunAlone(types: [.preview], on: connection)?.job.id == rescued.jobs[.preview])
        }
    }

    /// An operator cancels the preview while the claim that takes the pair is not yet
    /// committed: the cancel waits for the claim, then cancels the running job. The heartbeat
    /// reports the cancel for that job only, and the pair's batch write completes the thumbnail
    /// and leaves the cancelled preview as it is; the item is settled once.
    @Test func aCancelOfOneSiblingWhileThePairIsClaimedStopsThatOneOnly() async throws {
        try await withMigratedDatabase("jointcancel") { database, connection, owner in
            let (item, jobs) = try item([.thumbnail, .preview], owner: owner, on: connection)
            let preview = try #require(jobs[.preview])
            let store = JobStore(workerID: "w:1:0")
            try connection.execute("BEGIN")
            let units = try store.claimUnits(slots: [.thumbnail: 1], limit: 1, together: Self.stills, on: connection)
            let unit = try #require(units.first)
            try #require(unit.works.count == 2)

            let operatorSession = try database.connect()
            let cancel = BackgroundCall { try QueueAdmin.cancel(jobID: preview, on: operatorSession) }
            try await waitUntilWaitingForLock(operatorSession.backendPID, call: cancel, observer: try database.connect())
            try connection.execute("COMMIT")
            #expect(try await cancel.value() == .cancelledRunning(workerID: "w:1:0"))

            let stops = try store.heartbeat(unit.works.map { HeartbeatEntry(jobID: $0.job.id, leaseID: $0.job.leaseID, progress: nil) }, on: connection)
            #expect(stops == [preview: .cancelled])
            let owned = try store.completeBatch(unit.works.map { ($0.job, JobOutcome(output: ["ok": true])) }, on: connection)
            #expect(owned == [unit.lead.job.id])
            #expect(try row(preview, on: connection).status == "cancelled")
            let state = try settledState(of: item, on: connection)
            #expect(state.status == "ready")
            #expect(state.notifications == ["success"])
        }
    }
}
