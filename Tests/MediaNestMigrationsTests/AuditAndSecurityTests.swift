import Foundation
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Testing

@Suite("Audit log partitions", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(2)))
struct AuditLogPartitionTests {
    @Test func partitionFunctionCreatesAMonthAndRowsLandInTheRightPartition() throws {
        let (database, connection) = try migratedDatabase("audit")
        defer { database.drop() }
        // The migration made the current month's partition.
        let currentMonth = try connection.scalar("SELECT 'audit_logs_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")!
        #expect(try connection.scalar("SELECT to_regclass($1)::text", [currentMonth]) == currentMonth)

        #expect(try connection.scalar("SELECT create_audit_log_partition('2031-03-15')") == "audit_logs_203103")
        #expect(try connection.scalar("SELECT create_audit_log_partition('2031-03-01')") == "audit_logs_203103")
        let placed = try connection.scalar("""
            INSERT INTO audit_logs (action, created_at) VALUES ('upload', '2031-03-31 23:59:59+00') RETURNING tableoid::regclass::text
            """)
        #expect(placed == "audit_logs_203103")
        let recent = try connection.scalar("INSERT INTO audit_logs (action) VALUES ('login') RETURNING tableoid::regclass::text")
        #expect(recent == currentMonth)
        let farFuture = try connection.scalar("""
            INSERT INTO audit_logs (action, created_at) VALUES ('later', '2199-06-01') RETURNING tableoid::regclass::text
            """)
        #expect(farFuture == "audit_logs_default")
    }

    @Test func creatingAMonthLateMovesItsRowsOutOfTheDefaultPartition() throws {
        let (database, connection) = try migratedDatabase("auditlate")
        defer { database.drop() }
        try connection.execute("INSERT INTO audit_logs (action, created_at) VALUES ('early', '2033-07-04'), ('other', '2033-08-01')")
        #expect(try connection.scalar("SELECT create_audit_log_partition('2033-07-01')") == "audit_logs_203307")
        let placement = try connection.column("SELECT action || '@' || tableoid::regclass::text FROM audit_logs WHERE created_at >= '2033-01-01' ORDER BY created_at")
        #expect(placement == ["early@audit_logs_203307", "other@audit_logs_default"])
    }

    @Test func auditRowsSurviveTheDeletionOfTheirUser() throws {
        let (database, connection) = try migratedDatabase("auditnull")
        defer { database.drop() }
        let user = "00000000-0000-0000-0000-0000000000c1"
        try connection.execute("INSERT INTO users (id, email) VALUES ($1, 'gone@example.org')", [user])
        try connection.execute("INSERT INTO audit_logs (user_id, action) VALUES ($1, 'login')", [user])
        try connection.execute("DELETE FROM users WHERE id = $1", [user])
        #expect(try connection.scalar("SELECT count(*) FROM audit_logs WHERE action = 'login' AND user_id IS NULL") == "1")
    }
}

@Suite("Row level security", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(2)))
struct RowLevelSecurityTests {
    static let alice = "00000000-0000-0000-0000-0000000000d1"
    static let bob = "00000000-0000-0000-0000-0000000000d2"
    static let privateItem = "10000000-0000-0000-0000-0000000000d1"

    /// The filenames visible to `role` acting for `user` (nil: no medianest.user_id set).
    private func visibleFilenames(_ connection: PGConnection, role: String, user: String?) throws -> [String] {
        try connection.transaction { connection in
            try connection.execute("SET LOCAL ROLE " + connection.quoteIdentifier(role))
            if let user { try connection.execute("SELECT set_config('medianest.user_id', $1, true)", [user]) }
            return try connection.column("SELECT filename FROM media_items ORDER BY filename")
        }
    }

    @Test func anotherUsersPrivateItemIsHiddenUntilShared() throws {
        let (database, connection) = try migratedDatabase("rls")
        defer { database.drop() }
        try connection.execute("INSERT INTO users (id, email) VALUES ($1, 'alice@example.org'), ($2, 'bob@example.org')", [Self.alice, Self.bob])
        try connection.execute("""
            INSERT INTO media_items (id, owner_id, filename, original_filename, mime_type, storage_path)
            VALUES ($1, $2, 'alice-private.jpg', 'p.jpg', 'image/jpeg', '/p')
            """, [Self.privateItem, Self.alice])
        try connection.execute("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, visibility)
            VALUES ($1, 'alice-public.jpg', 'q.jpg', 'image/jpeg', '/q', 'public')
            """, [Self.alice])

        #expect(try visibleFilenames(connection, role: "authenticated_users", user: Self.alice) == ["alice-private.jpg", "alice-public.jpg"])
        #expect(try visibleFilenames(connection, role: "authenticated_users", user: Self.bob) == ["alice-public.jpg"])
        #expect(try visibleFilenames(connection, role: "authenticated_users", user: nil) == ["alice-public.jpg"])

        try connection.execute("""
            INSERT INTO sharing_permissions (resource_id, resource_type, shared_with, shared_by) VALUES ($1, 'media_item', $2, $3)
            """, [Self.privateItem, Self.bob, Self.alice])
        #expect(try visibleFilenames(connection, role: "authenticated_users", user: Self.bob) == ["alice-private.jpg", "alice-public.jpg"])

        // Seeing a shared item is not owning it: bob cannot change it.
        let changed = try connection.transaction { connection in
            try connection.execute("SET LOCAL ROLE authenticated_users")
            try connection.execute("SELECT set_config('medianest.user_id', $1, true)", [Self.bob])
            return try connection.execute("UPDATE media_items SET description = 'bob was here'")
        }
        #expect(changed == 0)

        // An expired share grants nothing.
        try connection.execute("UPDATE sharing_permissions SET expires_at = now() - interval '1 minute'")
        #expect(try visibleFilenames(connection, role: "authenticated_users", user: Self.bob) == ["alice-public.jpg"])

        #expect(try visibleFilenames(connection, role: "admin_users", user: nil) == ["alice-private.jpg", "alice-public.jpg"])
    }

    @Test func usersCannotCreateItemsForSomeoneElse() throws {
        let (database, connection) = try migratedDatabase("rlscheck")
        defer { database.drop() }
        try connection.execute("INSERT INTO users (id, email) VALUES ($1, 'alice@example.org'), ($2, 'bob@example.org')", [Self.alice, Self.bob])
        let error = try #require(throws: DatabaseError.self) {
            try connection.transaction { connection in
                try connection.execute("SET LOCAL ROLE authenticated_users")
                try connection.execute("SELECT set_config('medianest.user_id', $1, true)", [Self.bob])
                try connection.execute("""
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    VALUES ($1, 'forged', 'f', 'image/png', '/f')
                    """, [Self.alice])
            }
        }
        #expect(error.sqlState == "42501")
    }
}
