import MediaNestCore
import MediaNestDB

/// Pairs the two halves of a Live Photo (``LivePhotoLink``) in the transaction that completes
/// the metadata job of one of them.
///
/// The race: the still and the video of one Live Photo are uploaded together, so their metadata
/// jobs often complete at the same moment on two workers. Each transaction writes its own item's
/// `content_id` and looks for the other half; under READ COMMITTED each one's search reads a
/// snapshot in which the other's write is not committed yet, and neither links.
///
/// So the pair is serialised on a transaction-level advisory lock named after the owner and the
/// identifier (`pg_advisory_xact_lock`), taken **before** any item lock: step 0 of the engine's
/// lock order (docs/QUEUE.md). The second transaction waits for the first to commit; its search
/// for the other half is a later statement, whose snapshot is taken after the lock was granted,
/// so it sees the first one's `content_id`. The halves found are then locked with the job's own
/// item, all in id order, in the engine's usual step 1. Nothing that holds an item lock ever
/// waits for one of these advisory locks, so the extra step cannot close a cycle.
extension JobStore {
    /// Step 0: takes the advisory lock of every (owner, identifier) pair of `links`, in the order
    /// of their lock keys, then finds the other halves that already exist.
    /// - Parameters:
    ///   - links: The items completing with a Live Photo identifier, and their halves.
    ///   - lockTimeout: The engine's lock timeout, applied to these waits too.
    ///   - connection: The connection, inside the completing transaction.
    /// - Returns: The ids of the other halves, to lock with the job's items.
    /// - Throws: ``DatabaseError`` (a lock timeout among them), or a decoding error.
    static func lockLivePhotoKeys(_ links: [(itemID: String, link: LivePhotoLink)], lockTimeout: Duration?,
                                  on connection: PGConnection) throws -> [String] {
        guard !links.isEmpty else { return [] }
        if let lockTimeout {
            try connection.execute("SELECT set_config('lock_timeout', $1, true)", ["\(max(1, Int(lockTimeout.seconds * 1000)))ms"])
        }
        // The owner never changes, so reading it unlocked is safe.
        let keys = try connection.query("""
            SELECT DISTINCT hashtextextended('medianest.live_photo/' || m.owner_id::text || '/' || v.content_id, 0) AS key
              FROM unnest($1::text[]::uuid[], $2::text[]) AS v(id, content_id)
              JOIN media_items m ON m.id = v.id
             ORDER BY key
            """, [links.map(\.itemID), links.map(\.link.contentID)]).map { try $0.decode("key", as: Int64.self) }
        for key in keys {
            try connection.execute("SELECT pg_advisory_xact_lock($1::bigint)", [key])
        }
        // A statement of its own: its snapshot sees every half committed before the locks above.
        return try connection.query(partnerSearchSQL, [links.map(\.itemID), links.map(\.link.contentID), links.map(\.link.role.partnerKind)])
            .map { try $0.decode("id", as: String.self) }
    }

    /// The search for the other halves: `$1` item ids, `$2` their identifiers, `$3` the kind of
    /// the half wanted. Its `WHERE` repeats the expression and predicate of the partial index
    /// `idx_media_items_live_photo` (migration 0015), so it reads only the owner's Live Photo
    /// items with that identifier.
    static let partnerSearchSQL = """
        SELECT DISTINCT p.id::text AS id
          FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS v(id, content_id, partner_kind)
          JOIN media_items m ON m.id = v.id
          JOIN media_items p ON p.owner_id = m.owner_id AND p.id <> m.id
         WHERE p.metadata ? 'live_photo'
           AND p.metadata #>> '{live_photo,content_id}' = v.content_id
           AND p.metadata ->> 'kind' = v.partner_kind
        """

    /// Links each item of `links` with the earliest other half (by `created_at`, then id), when
    /// one exists. The caller holds the advisory locks and the locks of both items, and has
    /// already written the item's own `metadata.live_photo.content_id`.
    static func linkLivePhotos(_ links: [(itemID: String, link: LivePhotoLink)], on connection: PGConnection) throws(DatabaseError) {
        for (itemID, link) in links {
            try connection.execute("""
                WITH me AS (
                    SELECT id, owner_id FROM media_items WHERE id = $1::uuid
                ), partner AS (
                    SELECT p.id FROM me JOIN media_items p ON p.owner_id = me.owner_id AND p.id <> me.id
                     WHERE p.metadata ? 'live_photo'
                       AND p.metadata #>> '{live_photo,content_id}' = $2
                       AND p.metadata ->> 'kind' = $3
                     ORDER BY p.created_at, p.id
                     LIMIT 1
                ), pair AS (
                    SELECT CASE WHEN $4 = 'still' THEN me.id ELSE partner.id END AS still_id,
                           CASE WHEN $4 = 'still' THEN partner.id ELSE me.id END AS video_id
                      FROM me, partner
                )
                UPDATE media_items m
                   SET metadata = jsonb_set(m.metadata, '{live_photo}', coalesce(m.metadata -> 'live_photo', '{}') ||
                           CASE WHEN m.id = pair.still_id THEN jsonb_build_object('video_id', pair.video_id::text)
                                ELSE jsonb_build_object('still_id', pair.still_id::text, 'role', 'motion') END)
                  FROM pair
                 WHERE m.id IN (pair.still_id, pair.video_id)
                """, [itemID, link.contentID, link.role.partnerKind, link.role.rawValue])
        }
    }
}
