import Dispatch
public import MediaNestDB
import MediaNestQueue
import Synchronization

/// A group of items that are the same picture: the engine of `medianest-worker duplicates`.
public struct DuplicateGroup: Sendable, Hashable {
    /// How the items were found alike.
    public enum Kind: String, Sendable {
        /// Same bytes: one owner's items with one SHA-256 (``ExactDuplicates``).
        case exact
        /// Perceptual hashes at most the distance apart: a resized, recompressed or slightly
        /// cropped copy (docs/DUPLICATES.md).
        case similar
    }

    public var kind: Kind
    /// Item ids, the earliest first (`created_at`, then id).
    public var items: [String]

    public init(kind: Kind, items: [String]) {
        self.kind = kind
        self.items = items
    }
}

/// Finds exact and near duplicates in a library.
///
/// Exact groups come from SQL (`GROUP BY owner_id, checksum_sha256`). Near duplicates are found
/// in memory from the items' `perceptual_hash` by **multi-index hashing** (Norouzi et al.): the
/// 64 bits are cut into four 16-bit chunks, and two hashes at most `d` bits apart are within `r`
/// bits on at least one chunk whose radii add up to `d - 3` (pigeonhole: were every chunk at
/// least `r + 1` apart, the whole would be at least `d + 1`). So for each chunk, each item only
/// meets the items whose chunk is within that radius of its own, read from a table indexed by the
/// chunk's 65,536 values. That is a few hundred candidates per item at the default distance
/// instead of every other item: 100,000 items take a few tens of milliseconds, where all pairs
/// (5 × 10⁹) would take tens of seconds. Items closer than the distance are joined into groups
/// (single linkage, per owner). Exact copies are reported once, as `exact`: an item flagged
/// `metadata.duplicate_of` is left out of the similar groups.
public enum DuplicateFinder {
    /// The default distance in bits; how it was chosen: docs/DUPLICATES.md.
    public static let defaultDistance = 10
    /// The largest distance accepted. Beyond it unrelated pictures group, and the search
    /// slows down (the chunk radius grows).
    public static let maxDistance = 20

    /// Every group, exact groups first (by their original's age), then similar groups.
    /// - Parameters:
    ///   - ownerID: One owner's library, or nil for every owner (groups never span owners).
    ///   - distance: At most this many bits apart is similar (0 ... ``maxDistance``).
    public static func groups(ownerID: String?, distance: Int = defaultDistance, on connection: PGConnection) throws(DatabaseError) -> [DuplicateGroup] {
        let exact = try ExactDuplicates.groups(ownerID: ownerID, on: connection).map { DuplicateGroup(kind: .exact, items: $0) }
        var similar: [DuplicateGroup] = []
        for library in try SimilarCandidates.load(ownerID: ownerID, on: connection) {
            for members in library.ordered(similarGroups(hashes: library.hashes, distance: distance)) {
                similar.append(DuplicateGroup(kind: .similar, items: members.map { library.idText($0) }))
            }
        }
        return exact + similar
    }

    /// Groups of hashes at most `distance` bits apart (joined transitively).
    /// - Parameters:
    ///   - hashes: The hashes, in the order the groups' members are to be listed.
    ///   - distance: 0 ... ``maxDistance``.
    /// - Returns: Each group of two or more as indices into `hashes`, ascending; groups ordered by
    ///   their first member.
    public static func similarGroups(hashes: [UInt64], distance: Int) -> [[Int]] {
        let count = hashes.count
        guard count > 1 else { return [] }
        let distance = max(0, distance)
        let radii = chunkRadii(distance: distance)
        // The chunks are searched at once (one table each), the pairs joined afterwards.
        let pairsByChunk = Mutex<[[(Int32, Int32)]]>(Array(repeating: [], count: radii.count))
        hashes.withUnsafeBufferPointer { buffer in
            nonisolated(unsafe) let hashes = buffer
            DispatchQueue.concurrentPerform(iterations: radii.count) { chunk in
                let pairs = closePairs(hashes, chunk: chunk, masks: chunkMasks(radius: radii[chunk]), distance: distance)
                pairsByChunk.withLock { $0[chunk] = pairs }
            }
        }
        var parent = [Int32](0..<Int32(count))
        func root(_ i: Int32) -> Int32 {
            var i = i
            while parent[Int(i)] != i { parent[Int(i)] = parent[Int(parent[Int(i)])]; i = parent[Int(i)] }
            return i
        }
        var joined = false
        for pairs in pairsByChunk.withLock({ $0 }) {
            for (a, b) in pairs {
                let rootA = root(a), rootB = root(b)
                if rootA != rootB { parent[Int(max(rootA, rootB))] = min(rootA, rootB); joined = true }
            }
        }
        guard joined else { return [] }
        // The smaller index is always the root, so a group's root is its first member: walking
        // the items in order opens each group at its first member and appends the rest in order.
        var size = [Int32](repeating: 0, count: count)
        for index in 0..<count { size[Int(root(Int32(index)))] += 1 }
        var groupOfRoot = [Int32](repeating: -1, count: count)
        var groups: [[Int]] = []
        for index in 0..<count {
            let rootIndex = Int(root(Int32(index)))
            guard size[rootIndex] > 1 else { continue }
            if groupOfRoot[rootIndex] < 0 {
                groupOfRoot[rootIndex] = Int32(groups.count)
                groups.append([])
                groups[groups.count - 1].reserveCapacity(Int(size[rootIndex]))
            }
            groups[Int(groupOfRoot[rootIndex])].append(index)
        }
        return groups
    }

    /// The radius searched in each 16-bit chunk (one entry per chunk searched) for `distance`.
    ///
    /// Two hashes at most `d` bits apart differ in at most `r_i` bits of at least one chunk `i`
    /// whenever the `r_i + 1` add up to more than `d`. So `min(4, d + 1)` chunks are searched,
    /// with radii adding up to `d + 1 - chunks`, as even as they go: at 10, (2, 2, 2, 1), where
    /// ⌊d / 4⌋ in every chunk searched (2, 2, 2, 2); a radius-1 chunk costs 17 bucket probes
    /// per bucket, a radius-2 chunk 137. At 0 a single chunk with radius 0 is enough.
    static func chunkRadii(distance: Int) -> [Int] {
        let chunks = min(4, distance + 1)
        let spare = distance + 1 - chunks
        return (0..<chunks).map { spare / chunks + ($0 < spare % chunks ? 1 : 0) }
    }

    /// The pairs (lower index first) at most `distance` apart whose 16-bit chunk number `chunk`
    /// differs by one of `masks`.
    ///
    /// The items are sorted by the chunk's value (a counting sort), with their hashes beside them
    /// so that a bucket's candidates are compared where they lie. Then every pair of buckets whose
    /// values differ by a mask is visited once: mask by mask, the buckets in order, each with the
    /// bucket its value XOR the mask names when that one is larger (the mask's highest bit is 0
    /// in the first value), and a bucket with itself for the zero mask. For a fixed mask the
    /// second bucket moves in step with the first, so the 4.5 million bucket pairs of a radius-2
    /// chunk read the table in sequence. Each pair of items is compared once per chunk.
    static func closePairs(_ hashes: UnsafeBufferPointer<UInt64>, chunk: Int, masks: [UInt16], distance: Int) -> [(Int32, Int32)] {
        let shift = UInt64(chunk * 16)
        let count = hashes.count
        let start = UnsafeMutablePointer<Int32>.allocate(capacity: 65_537)
        let next = UnsafeMutablePointer<Int32>.allocate(capacity: 65_537)
        let members = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, count))
        let sorted = UnsafeMutablePointer<UInt64>.allocate(capacity: max(1, count))
        defer { start.deallocate(); next.deallocate(); members.deallocate(); sorted.deallocate() }
        start.initialize(repeating: 0, count: 65_537)
        for hash in hashes { start[Int((hash >> shift) & 0xFFFF) + 1] += 1 }
        for value in 0..<65_536 { start[value + 1] += start[value] }
        next.initialize(from: start, count: 65_537)
        for index in 0..<count {
            let value = Int((hashes[index] >> shift) & 0xFFFF)
            let slot = Int(next[value])
            members[slot] = Int32(index)
            sorted[slot] = hashes[index]
            next[value] = Int32(slot + 1)
        }
        var pairs: [(Int32, Int32)] = []
        for mask in masks {
            if mask == 0 {
                for value in 0..<65_536 {
                    let first = Int(start[value]), end = Int(start[value + 1])
                    guard end - first > 1 else { continue }
                    var a = first
                    while a < end - 1 {
                        let hashA = sorted[a]
                        var b = a + 1
                        while b < end {
                            if (hashA ^ sorted[b]).nonzeroBitCount <= distance {
                                let i = members[a], j = members[b]
                                pairs.append(i < j ? (i, j) : (j, i))
                            }
                            b += 1
                        }
                        a += 1
                    }
                }
                continue
            }
            let mask = Int(mask)
            let high = 1 << (Int.bitWidth - 1 - mask.leadingZeroBitCount)
            var blockStart = 0
            while blockStart < 65_536 {
                var value = blockStart
                let blockEnd = blockStart + high
                while value < blockEnd {
                    let first = Int(start[value]), end = Int(start[value + 1])
                    if first < end {
                        let other = value ^ mask
                        let otherStart = Int(start[other]), otherEnd = Int(start[other + 1])
                        if otherStart < otherEnd {
                            var a = first
                            while a < end {
                                let hashA = sorted[a]
                                var b = otherStart
                                while b < otherEnd {
                                    if (hashA ^ sorted[b]).nonzeroBitCount <= distance {
                                        let i = members[a], j = members[b]
                                        pairs.append(i < j ? (i, j) : (j, i))
                                    }
                                    b += 1
                                }
                                a += 1
                            }
                        }
                    }
                    value += 1
                }
                blockStart += 2 * high
            }
        }
        return pairs
    }

    /// Every 16-bit mask with at most `radius` bits set (radius 2: 137 masks), 0 first.
    static func chunkMasks(radius: Int) -> [UInt16] {
        (0...UInt16.max).filter { $0.nonzeroBitCount <= radius }
    }
}

/// The near-duplicate candidates of each library: the items with a perceptual hash that are not
/// flagged exact copies, read compactly.
///
/// One query, one row per owner, with three `bytea` columns built by `string_agg` in the same
/// aggregate step (so their entries line up), sent as hex digits: the ids (16 bytes each), the hashes and
/// `created_at` (8 bytes each, big-endian, as PostgreSQL's binary send functions write them).
/// 100,000 items are three values of 2.4 MB of hex instead of 300,000 text values, each a Swift
/// string of its own. The server reads them with one index-only scan of
/// `idx_media_items_similar` (migration 0016), whose predicate this query repeats.
///
/// The order in which an aggregate meets its rows is not promised without `ORDER BY` inside it
/// (which would sort every owner's items again), so ``ordered(_:)`` puts each group, and the
/// groups, in (`created_at`, `id`) order itself: a few members each.
struct SimilarCandidates {
    var ids: [UInt8]
    var hashes: [UInt64]
    var times: [Int64]

    /// The query; `hex` wraps the columns in `encode(…, 'hex')`, for a server whose
    /// `bytea_output` is `escape` (the default, `hex`, sends the same digits after `\x` and is
    /// faster: one copy fewer of 7 MB).
    static func query(hex: Bool) -> String {
        func column(_ aggregate: String) -> String { hex ? "encode(\(aggregate), 'hex')" : aggregate }
        return """
            SELECT s.owner_id::text AS owner, \(column("string_agg(uuid_send(s.id), '')")) AS ids,
                   \(column("string_agg(int8send(s.perceptual_hash), '')")) AS hashes,
                   \(column("string_agg(timestamptz_send(s.created_at), '')")) AS times
              FROM (SELECT owner_id, created_at, id, perceptual_hash
                      FROM media_items
                     WHERE perceptual_hash IS NOT NULL AND NOT (metadata ? 'duplicate_of')
                       AND ($1::uuid IS NULL OR owner_id = $1::uuid)
                     ORDER BY owner_id, created_at, id) s
             GROUP BY s.owner_id
             ORDER BY s.owner_id
            """
    }

    /// Each library's candidates, by owner id.
    static func load(ownerID: String?, on connection: PGConnection) throws(DatabaseError) -> [SimilarCandidates] {
        var rows = try connection.query(query(hex: false), [ownerID])
        if let text = rows.first?.text("ids"), !text.hasPrefix("\\x") {
            rows = try connection.query(query(hex: true), [ownerID])
        }
        var libraries: [SimilarCandidates] = []
        for row in rows {
            let ids = try Self.bytes(row, "ids"), hashes = try Self.bytes(row, "hashes"), times = try Self.bytes(row, "times")
            let count = ids.count / 16
            guard ids.count == count * 16, hashes.count == count * 8, times.count == count * 8 else {
                throw DatabaseError(kind: .decoding, message: "the near-duplicate candidates of one owner came back with \(ids.count) id bytes, \(hashes.count) hash bytes and \(times.count) time bytes, which do not line up")
            }
            libraries.append(SimilarCandidates(ids: ids, hashes: Self.bigEndianWords(hashes), times: Self.bigEndianWords(times).map { Int64(bitPattern: $0) }))
        }
        return libraries
    }

    /// A `bytea` column as bytes: its hex digits, after the `\x` of `bytea_output = hex` or
    /// bare (`encode(…, 'hex')`).
    static func bytes(_ row: PGRow, _ column: String) throws(DatabaseError) -> [UInt8] {
        guard var text = row.text(column) else { return [] }
        let decoded: [UInt8]? = text.withUTF8 { utf8 in
            let skip = utf8.count >= 2 && utf8[0] == UInt8(ascii: "\\") && utf8[1] == UInt8(ascii: "x") ? 2 : 0
            guard utf8.count % 2 == 0 else { return nil }
            let count = (utf8.count - skip) / 2
            var failed = false
            let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                @inline(__always) func nibble(_ c: UInt8) -> UInt8 {
                    switch c {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
                    default: failed = true; return 0
                    }
                }
                for index in 0..<count {
                    buffer[index] = nibble(utf8[skip + 2 * index]) << 4 | nibble(utf8[skip + 2 * index + 1])
                }
                initialized = count
            }
            return failed ? nil : bytes
        }
        guard let decoded else {
            throw DatabaseError(kind: .decoding, message: "column \"\(column)\" is not bytea as hex digits")
        }
        return decoded
    }

    /// Big-endian 8-byte words.
    static func bigEndianWords(_ bytes: [UInt8]) -> [UInt64] {
        let count = bytes.count / 8
        return bytes.withUnsafeBytes { raw in
            [UInt64](unsafeUninitializedCapacity: count) { buffer, initialized in
                for index in 0..<count { buffer[index] = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self)) }
                initialized = count
            }
        }
    }

    /// Whether item `a` comes before item `b`: earlier `created_at`, then the smaller id (uuid
    /// order is the order of its bytes).
    func precedes(_ a: Int, _ b: Int) -> Bool {
        if times[a] != times[b] { return times[a] < times[b] }
        for offset in 0..<16 where ids[16 * a + offset] != ids[16 * b + offset] {
            return ids[16 * a + offset] < ids[16 * b + offset]
        }
        return false
    }

    /// `groups` with each group's members in (`created_at`, `id`) order, and the groups by their
    /// first member. Usually they come that way already (the rows arrive in that order).
    func ordered(_ groups: [[Int]]) -> [[Int]] {
        groups.map { $0.sorted(by: precedes) }.sorted { precedes($0[0], $1[0]) }
    }

    /// Item `index`'s id as PostgreSQL prints a uuid (lower-case, 8-4-4-4-12).
    func idText(_ index: Int) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var out = 0
            for offset in 0..<16 {
                if offset == 4 || offset == 6 || offset == 8 || offset == 10 { buffer[out] = UInt8(ascii: "-"); out += 1 }
                let byte = ids[16 * index + offset]
                buffer[out] = digits.utf8Start[Int(byte >> 4)]
                buffer[out + 1] = digits.utf8Start[Int(byte & 0xF)]
                out += 2
            }
            return out
        }
    }
}
