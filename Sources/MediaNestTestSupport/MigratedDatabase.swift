import Foundation
import Logging
public import MediaNestDB
import MediaNestMigrations

/// The repository checkout the tests were compiled from (for `migrations/` and `docs/`).
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Applies every project migration to `connection`.
public func applyProjectMigrations(_ connection: PGConnection) throws {
    let logger = TestLogging.logger("medianest.tests.migrations")
    let catalog = try MigrationCatalog.load(from: repositoryRoot.appendingPathComponent("migrations"))
    _ = try Migrator(catalog: catalog, logger: logger).migrateUp(on: connection)
}

/// Runs `body` with a fresh database that has the whole schema and one user, and drops it after.
/// - Parameters:
///   - prefix: Part of the database name.
///   - body: Receives the database, a connection to it and the user's id.
public func withMigratedDatabase<T>(_ prefix: String, _ body: (TestDatabase, PGConnection, _ ownerID: String) async throws -> T) async throws -> T {
    try await TestDatabase.with(prefix) { database in
        let connection = try database.connect()
        try applyProjectMigrations(connection)
        let owner = try DatabaseFixtures.insertUser(on: connection)
        return try await body(database, connection, owner)
    }
}
