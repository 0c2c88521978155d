import Foundation
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Testing

/// One test per defect of the seed's "Example Migration: Adding Media Versioning"; each fails on
/// the seed's trigger and index as written there.
@Suite("Media versioning", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(2)))
struct MediaVersioningTests {
    static let owner = "00000000-0000-0000-0000-0000000000b1"

    private func insertItem(_ connection: PGConnection, _ filename: String, parent: String? = nil) throws -> String {
        try #require(try connection.scalar("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, parent_id)
            VALUES ($1, $2, $3, 'image/png', $4, $5) RETURNING id
            """, [Self.owner, filename, filename, "/storage/" + filename, parent]))
    }

    private func chain(_ connection: PGConnection, root: String) throws -> [String] {
        try connection.column("""
            SELECT filename || ':v' || version || (CASE WHEN is_latest_version THEN ':latest' ELSE '' END)
              FROM media_items WHERE id = $1 OR parent_id = $1 ORDER BY version
            """, [root])
    }

    private func versionedDatabase(_ prefix: String) throws -> (TestDatabase, PGConnection) {
        let (database, connection) = try migratedDatabase(prefix)
        try connection.execute("INSERT INTO users (id, email) VALUES ($1, 'versions@example.org')", [Self.owner])
        return (database, connection)
    }

    /// Defect 1: the seed's BEFORE INSERT OR UPDATE trigger UPDATEs media_items, which fires
    /// itself again: "stack depth limit exceeded" as soon as a chain has two versions.
    @Test func addingAndUpdatingVersionsDoesNotRecurse() throws {
        let (database, connection) = try versionedDatabase("recurse")
        defer { database.drop() }
        let root = try insertItem(connection, "a")
        _ = try insertItem(connection, "b", parent: root)
        _ = try insertItem(connection, "c", parent: root)
        _ = try insertItem(connection, "d", parent: root)
        #expect(try connection.execute("UPDATE media_items SET description = 'touched'") == 4)
        #expect(try chain(connection, root: root) == ["a:v1", "b:v2", "c:v3", "d:v4:latest"])
    }

    /// Defect 2: the seed's trigger recomputes `version` on every UPDATE.
    @Test func updatingAVersionDoesNotBumpItsNumber() throws {
        let (database, connection) = try versionedDatabase("bump")
        defer { database.drop() }
        let root = try insertItem(connection, "a")
        let second = try insertItem(connection, "b", parent: root)
        try connection.execute("UPDATE media_items SET status = 'ready', description = 'processed' WHERE id = $1", [second])
        try connection.execute("UPDATE media_items SET download_count = download_count + 1 WHERE id = $1", [root])
        #expect(try connection.scalar("SELECT version FROM media_items WHERE id = $1", [second]) == "2")
        #expect(try connection.scalar("SELECT version FROM media_items WHERE id = $1", [root]) == "1")
        // Changing the chain by UPDATE is refused rather than silently renumbered.
        let error = try #require(throws: DatabaseError.self) {
            try connection.execute("UPDATE media_items SET version = 7 WHERE id = $1", [second])
        }
        #expect(error.sqlState == "23514")
    }

    /// Defect 3: the seed clears is_latest_version only on rows sharing NEW.parent_id, so the
    /// original (parent_id NULL) stays latest beside the new version.
    @Test func theOriginalIsNoLongerLatestOnceANewVersionExists() throws {
        let (database, connection) = try versionedDatabase("latest")
        defer { database.drop() }
        let root = try insertItem(connection, "a")
        #expect(try chain(connection, root: root) == ["a:v1:latest"])
        let second = try insertItem(connection, "b", parent: root)
        #expect(try chain(connection, root: root) == ["a:v1", "b:v2:latest"])
        // Naming a non-root version as parent still extends the same chain.
        _ = try insertItem(connection, "c", parent: second)
        #expect(try chain(connection, root: root) == ["a:v1", "b:v2", "c:v3:latest"])
        #expect(try connection.scalar("SELECT count(*) FROM media_items WHERE is_latest_version AND (id = $1 OR parent_id = $1)", [root]) == "1")
        // Deleting the latest version makes the previous one latest again.
        try connection.execute("DELETE FROM media_items WHERE filename = 'c'")
        #expect(try chain(connection, root: root) == ["a:v1", "b:v2:latest"])
    }

    /// Defect 4: the seed runs CREATE INDEX CONCURRENTLY between BEGIN and COMMIT, which
    /// PostgreSQL refuses. Here it is a no-transaction migration and the index ends up valid.
    @Test func theVersionIndexIsBuiltConcurrentlyOutsideATransactionAndIsValid() throws {
        let catalog = try MigrationCatalog.load(from: migrationsDirectory)
        let indexMigration = try #require(catalog.migrations.first { migration in
            migration.up.statements.contains { $0.hasPrefix("CREATE UNIQUE INDEX CONCURRENTLY idx_media_items_parent_version") }
        })
        #expect(!indexMigration.up.runsInTransaction)
        #expect(indexMigration.up.sql.hasPrefix(Migration.noTransactionMarker))
        #expect(indexMigration.up.statements.allSatisfy { !$0.uppercased().hasPrefix("BEGIN") })

        let (database, connection) = try versionedDatabase("concurrent")
        defer { database.drop() }
        let index = try connection.query("""
            SELECT indisvalid, indisready, pg_get_indexdef(indexrelid) AS definition FROM pg_index
             WHERE indexrelid = 'idx_media_items_parent_version'::regclass
            """)
        let row = try #require(index.first)
        #expect(try row.decode("indisvalid", as: Bool.self))
        #expect(try row.decode("indisready", as: Bool.self))
        let definition = try row.decode("definition", as: String.self)
        #expect(definition.contains("(parent_id, version)") && definition.contains("WHERE (parent_id IS NOT NULL)"))

        // What the seed did: PostgreSQL refuses it inside a transaction block.
        let refused = try #require(throws: DatabaseError.self) {
            try connection.transaction { connection in
                try connection.execute("CREATE INDEX CONCURRENTLY idx_seed_example ON media_items (parent_id, version) WHERE parent_id IS NOT NULL")
            }
        }
        #expect(refused.sqlState == "25001")
    }

    @Test func concurrentNewVersionsOfOneItemGetDistinctNumbers() throws {
        let (database, connection) = try versionedDatabase("parallel")
        defer { database.drop() }
        let root = try insertItem(connection, "a")
        let insertFive: @Sendable () throws -> Void = {
            let own = try database.connect()
            for _ in 0..<5 {
                try own.execute("""
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, parent_id)
                    VALUES ($1, 'v', 'v', 'image/png', '/v', $2)
                    """, [Self.owner, root])
            }
        }
        for result in runOnThreads([insertFive, insertFive, insertFive]) { try result.get() }
        let versions = try connection.column("SELECT version FROM media_items WHERE id = $1 OR parent_id = $1 ORDER BY version", [root])
        #expect(versions == (1...16).map(String.init))
        #expect(try connection.scalar("SELECT version FROM media_items WHERE is_latest_version AND (id = $1 OR parent_id = $1)", [root]) == "16")
    }
}
