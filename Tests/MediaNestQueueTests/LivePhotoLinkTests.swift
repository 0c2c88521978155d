import Foundation
import MediaNestCore
import MediaNestDB
@testable import MediaNestQueue
import MediaNestTestSupport
import Testing

/// Issue 17 item 3: the still and the video of a Live Photo are linked when the metadata job of
/// the second one completes, in either order, and when both complete at the same moment on two
/// workers (forced interleavings, as in `LockOrderTests`).
@Suite("Live Photo linking", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct LivePhotoLinkTests {
    /// Which half's metadata job completes first.
    enum Arrival: String, CaseIterable, Sendable { case stillFirst, motionFirst }
    /// How the second completion is written.
    enum Completion: String, CaseIterable, Sendable { case single, batch }

    static let contentID = "A4C1D0F2-6B7E-4D3C-9A8B-112233445566"

    /// What the metadata job returns for one half.
    static func outcome(_ role: LivePhotoLink.Role, contentID: String = contentID) -> JobOutcome {
        var update = MediaItemUpdate()
        update.metadataMerge = ["kind": .string(role == .still ? "image" : "video"), "live_photo": ["content_id": .string(contentID)]]
        update.livePhoto = LivePhotoLink(contentID: contentID, role: role)
        return JobOutcome(output: [:], itemUpdate: update)
    }

    static func livePhoto(of item: String, on connection: PGConnection) throws -> [String: JSONValue] {
        let metadata = try connection.query("SELECT metadata FROM media_items WHERE id = $1::uuid", [item])[0].decode("metadata", as: JSONValue.self)
        return metadata.objectValue?["live_photo"]?.objectValue ?? [:]
    }

    /// The two halves, each with a running metadata job claimed by `store`.
    static func halves(store: JobStore, owner: String, on connection: PGConnection)
        throws -> (still: String, video: String, stillJob: ClaimedJob, videoJob: ClaimedJob) {
        let (still, stillJobs) = try itemWithRunningJobs([.metadata], store: store, owner: owner, name: "IMG_0001.HEIC", on: connection)
        let (video, videoJobs) = try itemWithRunningJobs([.metadata], store: store, owner: owner, name: "IMG_0001.MOV", on: connection)
        return (still, video, try #require(stillJobs[.metadata]), try #require(videoJobs[.metadata]))
    }

    static func expectLinked(still: String, video: String, on connection: PGConnection, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let stillLink = try livePhoto(of: still, on: connection)
        let videoLink = try livePhoto(of: video, on: connection)
        #expect(stillLink == ["content_id": .string(contentID), "video_id": .string(video)], sourceLocation: sourceLocation)
        #expect(videoLink == ["content_id": .string(contentID), "still_id": .string(still), "role": "motion"], sourceLocation: sourceLocation)
    }

    @Test(arguments: Arrival.allCases)
    func halvesCompletingOneAfterTheOtherAreLinked(_ arrival: Arrival) async throws {
        try await withMigratedDatabase("live-seq") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (still, video, stillJob, videoJob) = try Self.halves(store: store, owner: owner, on: connection)
            // Another owner's half with the same identifier, and this owner's photo with another one.
            let stranger = try DatabaseFixtures.insertUser(on: connection)
            let (foreign, foreignJobs) = try itemWithRunningJobs([.metadata], store: store, owner: stranger, name: "theirs.MOV", on: connection)
            #expect(try store.complete(try #require(foreignJobs[.metadata]), outcome: Self.outcome(.motion), on: connection))
            let (other, otherJobs) = try itemWithRunningJobs([.metadata], store: store, owner: owner, name: "other.MOV", on: connection)
            #expect(try store.complete(try #require(otherJobs[.metadata]), outcome: Self.outcome(.motion, contentID: "another"), on: connection))

            let first = arrival == .stillFirst ? (stillJob, Self.outcome(.still)) : (videoJob, Self.outcome(.motion))
            let second = arrival == .stillFirst ? (videoJob, Self.outcome(.motion)) : (stillJob, Self.outcome(.still))
            #expect(try store.complete(first.0, outcome: first.1, on: connection))
            #expect(try Self.livePhoto(of: arrival == .stillFirst ? still : video, on: connection) == ["content_id": .string(Self.contentID)],
                    "alone, a half is not linked")
            #expect(try store.complete(second.0, outcome: second.1, on: connection))

            try Self.expectLinked(still: still, video: video, on: connection)
            #expect(try Self.livePhoto(of: foreign, on: connection) == ["content_id": .string(Self.contentID)], "other owners' items are never linked")
            #expect(try Self.livePhoto(of: other, on: connection) == ["content_id": "another"])
            #expect(try settledState(of: still, on: connection).status == "ready")
            #expect(try settledState(of: video, on: connection).status == "ready")
        }
    }

    /// Both halves complete at the same moment: the first completion has taken the pair's lock
    /// and waits for its item (held by a third connection, standing in for any slow step), the
    /// second is seen waiting for the pair's lock, not searching for its partner in a snapshot
    /// where the first has not committed. Then both commit and the pair is linked. Without the
    /// pair's lock the second would not wait, would find nothing, and neither half would link.
    @Test(arguments: Arrival.allCases, Completion.allCases)
    func halvesCompletingAtTheSameMomentAreLinked(_ arrival: Arrival, _ completion: Completion) async throws {
        try await withMigratedDatabase("live-race") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (still, video, stillJob, videoJob) = try Self.halves(store: store, owner: owner, on: connection)
            let first = arrival == .stillFirst ? (still, stillJob, Self.outcome(.still)) : (video, videoJob, Self.outcome(.motion))
            let second = arrival == .stillFirst ? (videoJob, Self.outcome(.motion)) : (stillJob, Self.outcome(.still))

            try connection.execute("BEGIN")
            try connection.execute("SELECT 1 FROM media_items WHERE id = $1::uuid FOR UPDATE", [first.0])
            let worker1 = try database.connect(), worker2 = try database.connect()
            let call1 = BackgroundCall { try store.complete(first.1, outcome: first.2, on: worker1) }
            try await waitUntilWaitingForLock(worker1.backendPID, call: call1, observer: connection)
            let call2 = BackgroundCall { () throws -> Bool in
                switch completion {
                case .single: try store.complete(second.0, outcome: second.1, on: worker2)
                case .batch: try store.completeBatch([(second.0, second.1)], on: worker2) == [second.0.id]
                }
            }
            try await waitUntilWaitingForLock(worker2.backendPID, call: call2, observer: connection)
            try connection.execute("COMMIT")
            #expect(try await call1.value())
            #expect(try await call2.value())

            try Self.expectLinked(still: still, video: video, on: connection)
        }
    }

    /// The search for the other half reads the partial index of migration 0015, not every item
    /// of the owner (5,000 here, none of them a Live Photo).
    @Test func theSearchForTheOtherHalfUsesItsIndex() async throws {
        try await withMigratedDatabase("live-index") { database, connection, owner in
            try connection.execute("""
                INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, metadata)
                SELECT $1::uuid, 'f' || n, 'f' || n, 'image/jpeg', 'f' || n, jsonb_build_object('kind', 'image')
                  FROM generate_series(1, 5000) n
                """, [owner])
            let still = try DatabaseFixtures.insertMediaItem(ownerID: owner, name: "IMG_0001.JPG", on: connection)
            try connection.execute("UPDATE media_items SET metadata = $2 WHERE id = $1::uuid",
                                   [still, JSONValue.object(["kind": "image", "live_photo": ["content_id": .string(Self.contentID)]])])
            try connection.execute("ANALYZE media_items")
            let plan = try connection.query("EXPLAIN " + JobStore.partnerSearchSQL, [[still], [Self.contentID], ["video"]])
                .map { try $0.decode("QUERY PLAN", as: String.self) }.joined(separator: "\n")
            #expect(plan.contains("idx_media_items_live_photo"), "\(plan)")
        }
    }

    /// A metadata job run again on a linked half (a re-run writes `live_photo` afresh) keeps the link.
    @Test func rerunKeepsTheLink() async throws {
        try await withMigratedDatabase("live-rerun") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (still, video, stillJob, videoJob) = try Self.halves(store: store, owner: owner, on: connection)
            #expect(try store.complete(stillJob, outcome: Self.outcome(.still), on: connection))
            #expect(try store.complete(videoJob, outcome: Self.outcome(.motion), on: connection))
            _ = try QueueAdmin.enqueue(mediaItemID: still, types: [.metadata], priority: 0, on: connection)
            let again = try #require(try store.claim(slots: [.metadata: 1], limit: 1, on: connection).first?.job)
            #expect(again.mediaItemID == still)
            #expect(try store.complete(again, outcome: Self.outcome(.still), on: connection))
            try Self.expectLinked(still: still, video: video, on: connection)
        }
    }
}
