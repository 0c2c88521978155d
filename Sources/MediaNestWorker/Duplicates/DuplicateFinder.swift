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
/// 64 bits are cut into four 16-bit chunks, and two hashes at most `d` bits apart agree within
/// `d / 4` bits (rounded down) on at least one chunk (pigeonhole). So for each chunk, each item
/// only meets the items whose chunk is within that radius of its own, read from a table indexed
/// by the chunk's 65,536 values. That is a few hundred candidates per item at the default
/// distance instead of every other item: 100,000 items take well under a second, where all pairs
/// (5 × 10⁹) would take tens. Items closer than the distance are joined into groups (single
/// linkage, per owner). Exact copies are reported once, as `exact`: an item flagged
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
        let rows = try connection.query("""
            SELECT id::text AS id, owner_id::text AS owner, perceptual_hash AS hash
              FROM media_items
             WHERE perceptual_hash IS NOT NULL AND NOT (metadata ? 'duplicate_of')
               AND ($1::uuid IS NULL OR owner_id = $1::uuid)
             ORDER BY owner_id, created_at, id
            """, [ownerID])
        var similar: [DuplicateGroup] = []
        var start = 0
        var ids: [String] = [], hashes: [UInt64] = []
        var owner = ""
        ids.reserveCapacity(rows.count)
        hashes.reserveCapacity(rows.count)
        func flush() {
            for members in similarGroups(hashes: hashes, distance: distance) {
                similar.append(DuplicateGroup(kind: .similar, items: members.map { ids[$0] }))
            }
            ids.removeAll(keepingCapacity: true)
            hashes.removeAll(keepingCapacity: true)
        }
        while start < rows.count {
            let row = rows[start]
            let rowOwner = try row.decode("owner", as: String.self)
            if rowOwner != owner { flush(); owner = rowOwner }
            ids.append(try row.decode("id", as: String.self))
            hashes.append(UInt64(bitPattern: try row.decode("hash", as: Int64.self)))
            start += 1
        }
        flush()
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
        let radius = max(0, distance) / 4
        let masks = chunkMasks(radius: radius)
        var parent = Array(0..<count)
        func root(_ i: Int) -> Int {
            var i = i
            while parent[i] != i { parent[i] = parent[parent[i]]; i = parent[i] }
            return i
        }
        // The four chunks are searched at once (one table each), the pairs joined afterwards.
        let pairsByChunk = Mutex<[[(Int32, Int32)]]>(Array(repeating: [], count: 4))
        DispatchQueue.concurrentPerform(iterations: 4) { chunk in
            let pairs = closePairs(hashes, chunk: chunk, masks: masks, distance: distance)
            pairsByChunk.withLock { $0[chunk] = pairs }
        }
        for pairs in pairsByChunk.withLock({ $0 }) {
            for (a, b) in pairs {
                let rootA = root(Int(a)), rootB = root(Int(b))
                if rootA != rootB { parent[max(rootA, rootB)] = min(rootA, rootB) }
            }
        }
        var byRoot: [Int: [Int]] = [:]
        for index in 0..<count { byRoot[root(index), default: []].append(index) }
        return byRoot.values.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
    }

    /// The pairs (lower index first) at most `distance` apart whose 16-bit chunk number `chunk`
    /// differs by one of `masks`.
    ///
    /// The items are sorted by the chunk's value (a counting sort), with their hashes beside them
    /// so that a bucket's candidates are compared where they lie. Then every pair of buckets whose
    /// values differ by a mask is visited once (the one with the larger value from the smaller),
    /// and a bucket with itself for the zero mask: each pair of items is compared once per chunk.
    static func closePairs(_ hashes: [UInt64], chunk: Int, masks: [UInt16], distance: Int) -> [(Int32, Int32)] {
        let shift = UInt64(chunk * 16)
        var start = [Int32](repeating: 0, count: 65_537)
        var members = [Int32](repeating: 0, count: hashes.count)
        var sorted = [UInt64](repeating: 0, count: hashes.count)
        var pairs: [(Int32, Int32)] = []
        hashes.withUnsafeBufferPointer { hashes in
            start.withUnsafeMutableBufferPointer { start in
                members.withUnsafeMutableBufferPointer { members in
                    sorted.withUnsafeMutableBufferPointer { sorted in
                        for hash in hashes { start[Int((hash >> shift) & 0xFFFF) + 1] += 1 }
                        for value in 0..<65_536 { start[value + 1] += start[value] }
                        var next = Array(start)
                        for index in 0..<hashes.count {
                            let value = Int((hashes[index] >> shift) & 0xFFFF)
                            members[Int(next[value])] = Int32(index)
                            sorted[Int(next[value])] = hashes[index]
                            next[value] += 1
                        }
                        for value in 0..<65_536 {
                            let first = Int(start[value]), end = Int(start[value + 1])
                            guard first < end else { continue }
                            for mask in masks {
                                let other = value ^ Int(mask)
                                guard other >= value else { continue }
                                let otherStart = Int(start[other]), otherEnd = Int(start[other + 1])
                                guard otherStart < otherEnd else { continue }
                                var a = first
                                while a < end {
                                    let hashA = sorted[a]
                                    // Within one bucket, each pair once: only the slots after a.
                                    var b = other == value ? a + 1 : otherStart
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
                    }
                }
            }
        }
        return pairs
    }

    /// Every 16-bit mask with at most `radius` bits set (radius 2: 137 masks).
    static func chunkMasks(radius: Int) -> [UInt16] {
        (0...UInt16.max).filter { $0.nonzeroBitCount <= radius }
    }
}
