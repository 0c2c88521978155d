import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// ``DuplicateFinder`` and `medianest-worker duplicates`.
@Suite("duplicates")
struct DuplicatesCommandTests {
    /// All pairs, joined transitively: what the multi-index search must find, found the slow way.
    static func bruteForceGroups(_ hashes: [UInt64], distance: Int) -> [[Int]] {
        var parent = Array(hashes.indices)
        func root(_ i: Int) -> Int { parent[i] == i ? i : root(parent[i]) }
        for i in hashes.indices {
            for j in (i + 1)..<hashes.count where (hashes[i] ^ hashes[j]).nonzeroBitCount <= distance {
                let a = root(i), b = root(j)
                if a != b { parent[max(a, b)] = min(a, b) }
            }
        }
        return Dictionary(grouping: hashes.indices, by: root).values.filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    }

    /// Random hashes with planted copies at every distance around the limit: the chunked search
    /// finds exactly the groups all pairs find, at distances whose chunk radius is 0 to 4.
    @Test(arguments: [0, 3, 4, 7, DuplicateFinder.defaultDistance, 13, 16])
    func multiIndexSearchFindsWhatAllPairsFind(distance: Int) {
        var random = SplitMix64(seed: UInt64(distance) &+ 17)
        var hashes: [UInt64] = []
        for _ in 0..<600 {
            let base = random.next()
            hashes.append(base)
            if random.next() % 3 == 0 { hashes.append(random.flip(base, bits: Int(random.next() % UInt64(distance + 3)))) }
        }
        let found = DuplicateFinder.similarGroups(hashes: hashes, distance: distance)
        #expect(found == Self.bruteForceGroups(hashes, distance: distance))
        #expect(!found.isEmpty)
    }

    /// Exact groups from checksums (the original first), similar groups from perceptual hashes
    /// (a flagged exact copy is not listed again), per owner; `--json` prints one object a line.
    @Test(.enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"))
    func theCommandListsExactAndSimilarGroupsPerOwner() async throws {
        try await withMigratedDatabase("dupcli") { database, connection, owner in
            let stranger = try DatabaseFixtures.insertUser(on: connection)
            func item(_ owner: String, age: Int, sha: String?, hash: UInt64?, duplicateOf: String? = nil) throws -> String {
                let id = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
                try connection.execute("""
                    UPDATE media_items SET created_at = now() - make_interval(secs => $2::int), checksum_sha256 = $3, perceptual_hash = $4::bigint,
                           metadata = CASE WHEN $5::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('duplicate_of', $5::text) END
                     WHERE id = $1::uuid
                    """, [id, age, sha, hash.map { String(Int64(bitPattern: $0)) }, duplicateOf])
                return id
            }
            let base: UInt64 = 0xF0E1_D2C3_B4A5_9687
            let original = try item(owner, age: 900, sha: "aa", hash: base)
            let copy = try item(owner, age: 100, sha: "aa", hash: base, duplicateOf: original)
            let resized = try item(owner, age: 800, sha: "bb", hash: base ^ 0b1011)          // 3 bits
            let recompressed = try item(owner, age: 700, sha: "cc", hash: base ^ (0x1F << 40)) // 5 bits
            _ = try item(owner, age: 600, sha: "dd", hash: ~base)                              // unrelated
            let theirs = try item(stranger, age: 500, sha: "aa", hash: base)                   // another library

            let url = database.connectionString
            let all = try runCLI(["duplicates", "--json", "--database-url", url])
            #expect(all.status == 0, "\(all.error)")
            let lines = try all.output.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
            let expected: [JSONValue] = [
                ["kind": "exact", "items": .array([original, copy].map(JSONValue.string))],
                ["kind": "similar", "items": .array([original, resized, recompressed].map(JSONValue.string))],
            ]
            #expect(lines == expected, "\(all.output)")
            #expect(!all.output.contains(theirs))

            let narrow = try runCLI(["duplicates", "--json", "--distance", "3", "--owner", owner, "--database-url", url])
            #expect(narrow.status == 0, "\(narrow.error)")
            #expect(narrow.output.split(separator: "\n").count == 2)
            #expect(narrow.output.contains(resized) && !narrow.output.contains(recompressed), "\(narrow.output)")

            let text = try runCLI(["duplicates", "--owner", stranger, "--database-url", url])
            #expect(text.output.contains("0 exact groups, 0 similar groups"), "\(text.output)")
            let refused = try runCLI(["duplicates", "--distance", "99", "--database-url", url])
            #expect(refused.status != 0)
        }
    }
}
