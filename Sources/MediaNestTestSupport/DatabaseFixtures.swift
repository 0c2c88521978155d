import Foundation
public import MediaNestDB

/// Rows the queue and worker tests need: a user and their media items.
public enum DatabaseFixtures {
    /// Inserts a user and returns its id.
    public static func insertUser(on connection: PGConnection) throws -> String {
        let id = UUID().uuidString.lowercased()
        try connection.execute("INSERT INTO users (id, email, password_hash) VALUES ($1::uuid, $2, 'x')", [id, "\(id)@example.test"])
        return id
    }

    /// Inserts a media item owned by `ownerID` and returns its id.
    /// - Parameters:
    ///   - mimeType: Decides the default job set.
    ///   - name: The original filename (shown in notifications).
    public static func insertMediaItem(ownerID: String, mimeType: String = "image/jpeg", name: String = "holiday.jpg", on connection: PGConnection) throws -> String {
        let id = UUID().uuidString.lowercased()
        try connection.execute("""
            INSERT INTO media_items (id, owner_id, filename, original_filename, mime_type, file_size, storage_path)
            VALUES ($1::uuid, $2::uuid, $3, $3, $4, 1000, $5)
            """, [id, ownerID, name, mimeType, "u/\(id)/\(name)"])
        return id
    }

    /// Inserts one job directly (bypassing enqueue_media_processing) with the given input.
    public static func insertJob(mediaItemID: String, type: String, input: String = "{}", priority: Int = 0, maxAttempts: Int = 5, on connection: PGConnection) throws -> String {
        try connection.query("""
            INSERT INTO processing_jobs (media_item_id, job_type, input_data, priority, max_attempts)
            VALUES ($1::uuid, $2, $3::jsonb, $4::int, $5::int) RETURNING id::text AS id
            """, [mediaItemID, type, input, priority, maxAttempts])[0].decode("id", as: String.self)
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes, sleeping with `Task.sleep`
/// so that waiting tests do not hold a thread of the cooperative pool.
/// - Returns: Whether it held.
public func waitUntil(timeout: Duration, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try condition()
}
