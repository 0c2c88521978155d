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

    /// A new metadata run of an item that exists (its file was replaced): enqueued and claimed.
    func rerun(_ item: String, store: JobStore, on connection: PGConnection) throws -> ClaimedJob {
        _ = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection)
        let claimed = try store.claim(slots: [.metadata: 1], limit: 1, on: connection)
        try #require(claimed.count == 1 && claimed[0].job.mediaItemID == item)
        return claimed[0].job
    }

    /// Three copies, the oldest the original, recorded through the batch path.
    func threeCopies(store: JobStore, owner: String, on connection: PGConnection) throws -> (oldest: String, middle: String, newest: String) {
        let oldest = try metadataRun(store: store, owner: owner, age: .seconds(86_400), name: "a.jpg", on: connection)
        let middle = try metadataRun(store: store, owner: owner, age: .seconds(3600), name: "b.jpg", on: connection)
        let newest = try metadataRun(store: store, owner: owner, age: .seconds(600), name: "c.jpg", on: connection)
        #expect(try store.completeBatch([(oldest.job, outcome()), (middle.job, outcome()), (newest.job, outcome())], on: connection).count == 3)
        #expect(try flags([oldest.item, middle.item, newest.item], on: connection) == [nil, oldest.item, oldest.item])
        return (oldest.item, middle.item, newest.item)
    }

    /// The original's file is replaced by another picture (migration 0016): its metadata run
    /// records a new checksum, and the group it left hands over to the next earliest copy. Then a
    /// copy moves to the new content too: the copy left behind alone loses its flag, and the mover
    /// points at the original of the group it joined.
    @Test func aChangedChecksumRegroupsTheGroupItLeftAndTheOneItJoined() async throws {
        try await withMigratedDatabase("dupschange") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (oldest, middle, newest) = try threeCopies(store: store, owner: owner, on: connection)
            let other = String(repeating: "ef", count: 32)

            #expect(try store.complete(try rerun(oldest, store: store, on: connection), outcome: outcome(other), on: connection))
            #expect(try flags([oldest, middle, newest], on: connection) == [nil, nil, middle])

            #expect(try store.complete(try rerun(newest, store: store, on: connection), outcome: outcome(other), on: connection))
            #expect(try flags([oldest, middle, newest], on: connection) == [nil, nil, oldest])
            #expect(try ExactDuplicates.groups(ownerID: owner, on: connection) == [[oldest, newest]])
        }
    }

    /// Deleting an original (the upload app deletes rows; the trigger of migration 0016 follows):
    /// the next earliest copy becomes the original, and a copy left alone loses its flag.
    @Test func deletingTheOriginalHandsOverToTheNextCopy() async throws {
        try await withMigratedDatabase("dupsdelete") { _, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let (oldest, middle, newest) = try threeCopies(store: store, owner: owner, on: connection)
            try connection.execute("DELETE FROM media_items WHERE id = $1::uuid", [oldest])
            #expect(try flags([middle, newest], on: connection) == [nil, middle])
            // A copy deleted: the others are untouched.
            let fourth = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "d.jpg", on: connection)
            #expect(try store.complete(fourth.job, outcome: outcome(), on: connection))
            try connection.execute("DELETE FROM media_items WHERE id = $1::uuid", [newest])
            #expect(try flags([middle, fourth.item], on: connection) == [nil, middle])
            try connection.execute("DELETE FROM media_items WHERE id = $1::uuid", [middle])
            #expect(try flags([fourth.item], on: connection) == [nil])
        }
    }

    /// The original is deleted while a new copy's metadata run records the same content on
    /// another connection, in both orders:
    /// - delete first: the delete's transaction has regrouped and holds the group's lock; the
    ///   recording waits for it, then sees the group without the original;
    /// - recording first: it has flagged the new copy (pointing at the original) and waits in
    ///   `settle_media_items` for a table lock the test holds; the delete waits for the
    ///   original's row, then regroups after the recording committed.
    /// Either way the next earliest copy is the original and the new copy points at it. Without
    /// the delete trigger the second order leaves both copies pointing at the deleted item.
    @Test(arguments: [true, false])
    func aDeleteAndARecordingAtOnceAgree(deleteFirst: Bool) async throws {
        try await withMigratedDatabase("dupsdelrace") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let original = try metadataRun(store: store, owner: owner, age: .seconds(86_400), name: "a.jpg", on: connection)
            let copy = try metadataRun(store: store, owner: owner, age: .seconds(3600), name: "b.jpg", on: connection)
            #expect(try store.completeBatch([(original.job, outcome()), (copy.job, outcome())], on: connection).count == 2)
            let late = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "c.jpg", on: connection)
            let one = try database.connect(), two = try database.connect()

            if deleteFirst {
                try two.execute("BEGIN")
                try two.execute("DELETE FROM media_items WHERE id = $1::uuid", [original.item])
                let recording = BackgroundCall { try store.complete(late.job, outcome: outcome(), on: one) }
                try await waitUntilWaitingForLock(one.backendPID, call: recording, observer: connection)
                try two.execute("COMMIT")
                #expect(try await recording.value())
            } else {
                try connection.execute("BEGIN")
                try connection.execute("LOCK TABLE notifications IN EXCLUSIVE MODE")
                let recording = BackgroundCall { try store.complete(late.job, outcome: outcome(), on: one) }
                try await waitUntilWaitingForLock(one.backendPID, call: recording, observer: connection)
                let deletion = BackgroundCall { try two.execute("DELETE FROM media_items WHERE id = $1::uuid", [original.item]) }
                try await waitUntilWaitingForLock(two.backendPID, call: deletion, observer: connection)
                try connection.execute("COMMIT")
                #expect(try await recording.value())
                #expect(try await deletion.value() == 1)
            }
            #expect(try flags([copy.item, late.item], on: connection) == [nil, copy.item])
        }
    }

    /// A group lock still held by a transaction that has ended. PostgreSQL releases a
    /// transaction's row locks before its advisory locks, so a delete that waited for a
    /// recording's row can wake while the recording, committed and done with the group (its
    /// original still in it), holds the group lock for a moment longer (migration 0017). The test
    /// holds the lock the same way, from a session outside any transaction: the delete's trigger
    /// waits until it is released and then regroups. Without 0017 the delete returns at once and
    /// the copy keeps pointing at the deleted original. A running transaction holding the lock is
    /// left to regroup: the delete does not wait for it.
    @Test func aDeleteWaitsOutTheGroupLockOfAnEndedTransaction() async throws {
        try await withMigratedDatabase("dupsended") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let original = try metadataRun(store: store, owner: owner, age: .seconds(86_400), name: "a.jpg", on: connection)
            let copy = try metadataRun(store: store, owner: owner, age: .seconds(3600), name: "b.jpg", on: connection)
            let third = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "c.jpg", on: connection)
            #expect(try store.completeBatch([(original.job, outcome()), (copy.job, outcome()), (third.job, outcome())], on: connection).count == 3)
            let holder = try database.connect(), deleter = try database.connect()
            let key = try connection.query("SELECT hashtext($1 || '/' || $2) AS k", [owner, Self.content])[0].decode("k", as: Int.self)

            try holder.execute("SELECT pg_advisory_lock(1296983157, $1::int)", [key])
            let deletion = BackgroundCall { try deleter.execute("DELETE FROM media_items WHERE id = $1::uuid", [original.item]) }
            try await waitUntilSleeping(deleter.backendPID, call: deletion, observer: connection)
            #expect(try holder.query("SELECT pg_advisory_unlock(1296983157, $1::int) AS ok", [key])[0].decode("ok", as: Bool.self))
            #expect(try await deletion.value() == 1)
            #expect(try flags([copy.item, third.item], on: connection) == [nil, copy.item])

            try holder.execute("BEGIN")
            try holder.execute("SELECT pg_advisory_xact_lock(1296983157, $1::int)", [key])
            #expect(try deleter.execute("DELETE FROM media_items WHERE id = $1::uuid", [copy.item]) == 1)
            #expect(try flags([third.item], on: connection) == [copy.item])
            try holder.execute("SELECT mark_content_duplicates(ARRAY[$1::uuid], ARRAY[$2])", [owner, Self.content])
            try holder.execute("COMMIT")
            #expect(try flags([third.item], on: connection) == [nil])
        }
    }

    /// The original's file is replaced (its run records another content) while a new copy of the
    /// old content is recorded on another connection and waits, uncommitted, in
    /// `settle_media_items`, having flagged itself as a copy of that original. The replacement
    /// waits for the old content's group lock (migration 0016 takes it for the content an item
    /// leaves), then regroups it: the other copy is the original, the new copy points at it.
    @Test func aChangedChecksumWaitsForARecordingOfTheContentItLeaves() async throws {
        try await withMigratedDatabase("dupschrace") { database, connection, owner in
            let store = JobStore(workerID: "w:1:0")
            let original = try metadataRun(store: store, owner: owner, age: .seconds(86_400), name: "a.jpg", on: connection)
            let copy = try metadataRun(store: store, owner: owner, age: .seconds(3600), name: "b.jpg", on: connection)
            #expect(try store.completeBatch([(original.job, outcome()), (copy.job, outcome())], on: connection).count == 2)
            let late = try metadataRun(store: store, owner: owner, age: .seconds(60), name: "c.jpg", on: connection)
            let replaced = try rerun(original.item, store: store, on: connection)
            let one = try database.connect(), two = try database.connect()

            try connection.execute("BEGIN")
            try connection.execute("LOCK TABLE notifications IN EXCLUSIVE MODE")
            let recording = BackgroundCall { try store.complete(late.job, outcome: outcome(), on: one) }
            try await waitUntilWaitingForLock(one.backendPID, call: recording, observer: connection)
            let replacement = BackgroundCall { try store.complete(replaced, outcome: outcome(String(repeating: "ef", count: 32)), on: two) }
            try await waitUntilWaitingForLock(two.backendPID, call: replacement, observer: connection)
            try connection.execute("COMMIT")
            #expect(try await recording.value())
            #expect(try await replacement.value())
            #expect(try flags([original.item, copy.item, late.item], on: connection) == [nil, nil, copy.item])
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
