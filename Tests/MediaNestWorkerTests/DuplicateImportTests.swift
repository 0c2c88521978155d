import Foundation
import MediaNestDB
import MediaNestMedia
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// A blocking call on a thread of its own (not the cooperative pool: it blocks in libpq while
/// the test that releases it needs a thread).
private final class ThreadCall<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            result = Result { try body() }
            done.signal()
        }.start()
    }

    /// Waits for the call (on a thread of its own, so the cooperative pool is not held).
    func value() async throws -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread { [self] in
                done.wait()
                continuation.resume()
            }.start()
        }
        return try result!.get()
    }
}

/// Concurrent imports of one owner cannot add the same content twice (migration 0014's
/// `media_items_one_import_per_content`, and `import`'s `ON CONFLICT DO NOTHING` on it).
@Suite("duplicate imports", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"), .timeLimit(.minutes(3)))
struct DuplicateImportTests {
    /// The dangerous order, forced: both imports have read the owner's library (the content is
    /// not there) and wait to insert, held by a `SHARE` lock on `media_items` that lets reads
    /// through; then both insert. Without the unique rule both rows went in. With it, one row,
    /// one file on disk (the loser's placed file is removed), and the loser's report counts the
    /// file as already in the library.
    @Test func twoImportsOfTheSameContentAtOnceAddItOnce() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "phone/IMG_0001.jpg")
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "camera/DSC_0001.jpg")
        try await withMigratedDatabase("dupimport") { database, connection, _ in
            try connection.execute("BEGIN")
            try connection.execute("LOCK TABLE media_items IN SHARE MODE")
            let one = try database.connect(), two = try database.connect()
            let storage = scratch.storage, source = scratch.source
            let importer = LibraryImporter(storageRoot: storage, ownerEmail: "alice@example.org", mode: .copy)
            let first = ThreadCall { try importer.run(paths: [source + "/phone"], on: one) }
            let second = ThreadCall { try importer.run(paths: [source + "/camera"], on: two) }
            let bothWaiting = try await waitUntil(timeout: .seconds(60)) {
                try connection.query("""
                    SELECT count(DISTINCT pid)::int AS n FROM pg_locks
                     WHERE NOT granted AND relation = 'media_items'::regclass AND pid = ANY($1::text[]::int[])
                    """, [[String(one.backendPID), String(two.backendPID)]])[0].decode("n", as: Int.self) == 2
            }
            try connection.execute("COMMIT")
            let reports = [try await first.value(), try await second.value()]
            #expect(bothWaiting, "both imports must have been waiting to insert at once")

            #expect(reports.map(\.imported).sorted() == [0, 1])
            #expect(reports.map(\.alreadyInLibrary).sorted() == [0, 1])
            #expect(reports.map(\.jobs).reduce(0, +) == 3, "metadata, thumbnail and preview of one item")
            let rows = try connection.query("SELECT storage_path FROM media_items").map { try $0.decode("storage_path", as: String.self) }
            #expect(rows.count == 1)
            let placed = try FileManager.default.subpathsOfDirectory(atPath: storage + "/imports")
                .filter { $0.hasSuffix(".jpg") && !$0.hasPrefix(".staging") }
            #expect(placed.map { "imports/" + $0 } == rows, "only the file the row points at is left")
        }
    }
}
