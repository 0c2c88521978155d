import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
import Testing

/// Exact duplicates (migration 0014, ``ExactDuplicates``): the items of one owner with one SHA-256
/// agree on one original, the earliest by `created_at` then `id`, whatever order they are
/// processed in and when two workers record them at the same moment.
@Suite("exact duplicates", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct ExactDuplicateTests {
    static let content = String(repeating: "ab", count: 32)

    /// A media item created `age` ago, with its metadata job claimed by `store`.
    func metadataRun(store: JobStore, owner: String, age: Duration, name: String, on connection: PGConnection) throws -> (item: String, job: ClaimedJob) {
        let (item, jobs) = try itemWithRunningJobs([.metadata], store: store, owner: owner, name: name, on: connection)
        try connection.execute("UPDATE media_items SET created_at = now() - make_interval(secs => $2::float8) WHERE id = $1::uuid",
                               [item, age.seconds])
        return (item, try #require(jobs[.metadata]))
    }

    /// What the metadata job reports for a file of ``content``.
    func outcome(_ sha256: String = ExactDuplicateTests.content) -> JobOutcome {
        var update = MediaItemUpdate()
        update.checksumSHA256 = sha256
        return JobOutcome(output: ["sha256": .string(sha256)], itemUpdate: update)
    }

    /// `metadata.duplicate_of` of each item (nil when it has none).
    func flags(_ items: [String], on connection: PGConnection) throws -> [String?] {
        try items.map { item in
            try connection.query("SELECT metadata->>'duplicate_of' AS d FROM media_items WHERE id = $1::uuid", [item])[0].decode("d", as: String?.self)
        }
    }

    /// The dangerous interleaving: the first transaction has recorded its checksum and judged its
    /// group, and has not committed (it waits for a table lock the test holds, in
    /// `settle_media_items`' notification insert), when the second records the same content.
    /// Under READ COMMITTED the second cannot see the first's checksum, so without the content
    /// lock each judged itself alone and neither was flagged. With it, the second waits for the
    /// first, then flags the younger item. Both orders: the older item's run first, or the
    /// younger's.
    @Test(arguments: [true, false])
    func twoCopiesRecordedAtOnceAgreeOnTheEarliest(olderFirst: Bool) async throws {
        try await withMigratedDatabase("dupsrace") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let older = try metadataRun(store: store, owner: owner, age: .seconds(3600), name: "IMG_0001.jpg", on: connection)
            let younger = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "IMG_0001 (1).jpg", on: connection)
            let (first, second) = olderFirst ? (older, younger) : (younger, older)

            try connection.execute("BEGIN")
            try connection.execute("LOCK TABLE notifications IN EXCLUSIVE MODE")
            let one = try database.connect(), two = try database.connect()
            let firstCall = BackgroundCall { try store.complete(first.job, outcome: outcome(), on: one) }
            try await waitUntilWaitingForLock(one.backendPID, call: firstCall, observer: connection)
            let secondCall = BackgroundCall { try store.complete(second.job, outcome: outcome(), on: two) }
            try await waitUntilWaitingForLock(two.backendPID, call: secondCall, observer: connection)
            try connection.execute("COMMIT")
            #expect(try await firstCall.value())
            #expect(try await secondCall.value())

            #expect(try flags([older.item, younger.item], on: connection) == [nil, older.item])
        }
    }

    /// An item that arrives later but is older (an import of old photos after the phone's upload
    /// of a copy): it becomes the original, and the members that pointed at the previous original
    /// point at it. Through the batch path (two younger copies) and the failure path (a file
    /// whose checksum is salvaged although its job fails).
    @Test func anOlderItemArrivingLateBecomesTheOriginal() async throws {
        try await withMigratedDatabase("dupslate") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let middle = try metadataRun(store: store, owner: owner, age: .seconds(600), name: "b.jpg", on: connection)
            let newest = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "c.jpg", on: connection)
            let other = try metadataRun(store: store, owner: owner, age: .seconds(30), name: "other.jpg", on: connection)
            let done = try store.completeBatch([(newest.job, outcome()), (middle.job, outcome()),
                                                (other.job, outcome(String(repeating: "cd", count: 32)))], on: connection)
            #expect(done.count == 3)
            #expect(try flags([middle.item, newest.item, other.item], on: connection) == [nil, middle.item, nil])

            let oldest = try metadataRun(store: store, owner: owner, age: .seconds(86_400), name: "a.jpg", on: connection)
            var salvaged = MediaItemUpdate()
            salvaged.checksumSHA256 = Self.content
            _ = try store.fail(oldest.job, error: JobError(.corruptMedia, "cannot be parsed"), itemUpdate: salvaged, on: connection)
            #expect(try flags([oldest.item, middle.item, newest.item, other.item], on: connection) == [nil, oldest.item, oldest.item, nil])
        }
    }

    /// The thumbnail job's perceptual hash reaches `media_items.perceptual_hash` bit for bit (a
    /// hash with its top bit set is a negative bigint), and `hamming_distance` compares it.
    @Test func thePerceptualHashIsStoredBitForBit() async throws {
        try await withMigratedDatabase("dupsphash") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (item, jobs) = try itemWithRunningJobs([.thumbnail], store: store, owner: owner, on: connection)
            let hash: UInt64 = 0x8F00_0000_0000_00F1
            var update = MediaItemUpdate()
            update.perceptualHash = Int64(bitPattern: hash)
            #expect(try store.complete(try #require(jobs[.thumbnail]), outcome: JobOutcome(output: [:], itemUpdate: update), on: connection))
            let row = try connection.query("""
                SELECT perceptual_hash, hamming_distance(perceptual_hash, 0) AS ones FROM media_items WHERE id = $1::uuid
                """, [item])[0]
            #expect(UInt64(bitPattern: try row.decode("perceptual_hash", as: Int64.self)) == hash)
            #expect(try row.decode("ones", as: Int.self) == hash.nonzeroBitCount)
        }
    }

    /// Equal `created_at`: the smaller id is the original. Another owner's copy is not a duplicate.
    @Test func equalTimesAreDecidedByIdAndOwnersAreSeparate() async throws {
        try await withMigratedDatabase("dupsties") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let stranger = try DatabaseFixtures.insertUser(on: connection)
            let first = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "x.jpg", on: connection)
            let second = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "y.jpg", on: connection)
            let theirs = try metadataRun(store: store, owner: stranger, age: .seconds(3600), name: "z.jpg", on: connection)
            try connection.execute("UPDATE media_items SET created_at = (SELECT created_at FROM media_items WHERE id = $1::uuid) WHERE id = $2::uuid",
                                   [first.item, second.item])
            for run in [second, theirs, first] { #expect(try store.complete(run.job, outcome: outcome(), on: connection)) }
            let (low, high) = first.item < second.item ? (first.item, second.item) : (second.item, first.item)
            #expect(try flags([low, high, theirs.item], on: connection) == [nil, low, nil])
            #expect(try ExactDuplicates.groups(ownerID: owner, on: connection) == [[low, high]])
            #expect(try ExactDuplicates.groups(ownerID: stranger, on: connection).isEmpty)
        }
    }
}
