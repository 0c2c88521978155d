public import MediaNestDB

/// Exact duplicates: items of one owner with the same SHA-256 (`checksum_sha256`, recorded by the
/// metadata job) form a group, whose **original** is its earliest item (`created_at`, then `id`);
/// every other member has `metadata.duplicate_of` = the original's id.
///
/// The engine keeps the flags right in every transaction that records a checksum (complete,
/// batch complete, fail with a salvaged checksum), with the two SQL functions of migration 0014:
/// 1. `lock_media_items_for_content` replaces the engine's item-lock statement: it first takes a
///    transaction advisory lock per (owner, checksum), in key order, then locks the transaction's
///    items and every item already in those groups, in id order. Two workers recording one
///    content at once therefore take turns, and the second sees the first's checksum.
/// 2. `mark_exact_duplicates` (after the item updates, in a later statement, so its snapshot sees
///    every group member committed before the locks were granted) recomputes the groups' flags.
///    An older item that arrives late (its `created_at` is earlier) becomes the original, and
///    the members that pointed at the previous original are pointed at it.
///
/// The advisory locks come before any row lock and nothing waits for them while holding an item,
/// so they add no cycle to the engine's lock order (docs/QUEUE.md, docs/DUPLICATES.md).
public enum ExactDuplicates {
    /// The checksums the runs are about to record, by item id.
    static func contents(_ runs: [(itemID: String, update: MediaItemUpdate)]) -> [String: String] {
        var contents: [String: String] = [:]
        for run in runs {
            if let sha256 = run.update.checksumSHA256 { contents[run.itemID] = sha256 }
        }
        return contents
    }

    /// Takes the content locks, then locks `itemIDs` and the items of the contents' groups, in id
    /// order: the first statement of a transaction that records checksums.
    /// - Parameters:
    ///   - itemIDs: Every item the transaction finishes work on, sorted.
    ///   - contents: Item id → the SHA-256 about to be recorded for it.
    static func lockItems(_ itemIDs: [String], contents: [String: String], on connection: PGConnection) throws(DatabaseError) {
        let contentItems = contents.keys.sorted()
        try connection.execute("SELECT lock_media_items_for_content($1::text[]::uuid[], $2::text[]::uuid[], $3::text[])",
                               [itemIDs, contentItems, contentItems.map { contents[$0]! }])
    }

    /// Recomputes `metadata.duplicate_of` in the groups of the items whose checksum was just
    /// recorded. The caller took ``lockItems(_:contents:on:)`` first.
    static func mark(_ contents: [String: String], on connection: PGConnection) throws(DatabaseError) {
        guard !contents.isEmpty else { return }
        try connection.execute("SELECT mark_exact_duplicates($1::text[]::uuid[])", [contents.keys.sorted()])
    }

    /// The exact-duplicate groups (two items or more) of one owner, or of every owner.
    /// - Returns: Each group's item ids, the original first, then by `created_at` and `id`;
    ///   groups in the order of their originals.
    public static func groups(ownerID: String?, on connection: PGConnection) throws(DatabaseError) -> [[String]] {
        // Two steps: the contents held twice, counted on idx_media_items_owner_sha256 alone (an
        // index-only scan), then the rows of those few groups, looked up on the same index one
        // group at a time; aggregating every row's id cost ten times more on 100,000 items, and
        // joining the groups back to the table read every row. The groups travel as two arrays:
        // the planner then expects a few of them, not a third of all contents, so the plan's cost
        // stays far below jit_above_cost (compiling it took longer than running it).
        let rows = try connection.query("""
            WITH twice AS (
                SELECT array_agg(d.owner_id) AS owners, array_agg(d.checksum_sha256::text) AS checksums
                  FROM (SELECT owner_id, checksum_sha256
                          FROM media_items
                         WHERE checksum_sha256 IS NOT NULL AND ($1::uuid IS NULL OR owner_id = $1::uuid)
                         GROUP BY owner_id, checksum_sha256
                        HAVING count(*) > 1) d
            )
            SELECT g.items
              FROM twice, unnest(twice.owners, twice.checksums) AS t(owner_id, checksum)
             CROSS JOIN LATERAL (SELECT array_agg(m.id::text ORDER BY m.created_at, m.id) AS items,
                                        min(m.created_at) AS first, min(m.id::text) AS low
                                   FROM media_items m
                                  WHERE m.owner_id = t.owner_id AND m.checksum_sha256 = t.checksum) g
             ORDER BY g.first, g.low
            """, [ownerID])
        var groups: [[String]] = []
        for row in rows { groups.append(try row.decode("items", as: [String].self)) }
        return groups
    }
}
