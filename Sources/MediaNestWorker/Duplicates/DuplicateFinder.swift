public import MediaNestDB
import MediaNestQueue

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
        var start = [Int32](repeating: 0, count: 65_537)
        var next = [Int32](repeating: 0, count: 65_537)
        // The items sorted by one chunk's value, and their hashes in the same order: a bucket's
        // candidates are compared where they lie, one cache line for most buckets.
        var members = [Int32](repeating: 0, count: count)
        var memberHashes = [UInt64](repeating: 0, count: count)
        var pairs: [(Int32, Int32)] = []
        for chunk in 0..<4 {
            let shift = UInt64(chunk * 16)
            hashes.withUnsafeBufferPointer { hashes in
                start.withUnsafeMutableBufferPointer { start in
                    next.withUnsafeMutableBufferPointer { next in
                        members.withUnsafeMutableBufferPointer { members in
                            memberHashes.withUnsafeMutableBufferPointer { memberHashes in
                                // Counting sort by the chunk's value.
                                for i in 0..<start.count { start[i] = 0 }
                                for hash in hashes { start[Int((hash >> shift) & 0xFFFF) + 1] += 1 }
                                for value in 0..<65_536 { start[value + 1] += start[value] }
                                for i in 0..<start.count { next[i] = start[i] }
                                for index in 0..<hashes.count {
                                    let hash = hashes[index]
                                    let value = Int((hash >> shift) & 0xFFFF)
                                    members[Int(next[value])] = Int32(index)
                                    memberHashes[Int(next[value])] = hash
                                    next[value] += 1
                                }
                                for index in 0..<hashes.count {
                                    let hash = hashes[index]
                                    let value = UInt16(truncatingIfNeeded: hash >> shift)
                                    for mask in masks {
                                        let bucket = Int(value ^ mask)
                                        var slot = Int(start[bucket])
                                        let end = Int(start[bucket + 1])
                                        while slot < end {
                                            // Each pair once per chunk, from its lower index.
                                            if (hash ^ memberHashes[slot]).nonzeroBitCount <= distance, Int(members[slot]) > index {
                                                pairs.append((Int32(index), members[slot]))
                                            }
                                            slot += 1
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for (a, b) in pairs {
                let rootA = root(Int(a)), rootB = root(Int(b))
                if rootA != rootB { parent[max(rootA, rootB)] = min(rootA, rootB) }
            }
            pairs.removeAll(keepingCapacity: true)
        }
        var byRoot: [Int: [Int]] = [:]
        for index in 0..<count { byRoot[root(index), default: []].append(index) }
        return byRoot.values.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
    }

    /// Every 16-bit mask with at most `radius` bits set (radius 2: 137 masks).
    static func chunkMasks(radius: Int) -> [UInt16] {
        (0...UInt16.max).filter { $0.nonzeroBitCount <= radius }
    }
}
