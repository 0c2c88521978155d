import Foundation
import Logging
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport

/// The repository checkout these tests were compiled from.
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Applies every project migration (0001..0010 and later) to `connection`.
func migrate(_ connection: PGConnection) throws {
    var logger = Logger(label: "medianest.queue.tests")
    logger.logLevel = .warning
    let catalog = try MigrationCatalog.load(from: repositoryRoot.appendingPathComponent("migrations"))
    _ = try Migrator(catalog: catalog, logger: logger).migrateUp(on: connection)
}

/// A fresh, migrated database with one user; dropped after `body`.
func withQueueDatabase<T>(_ prefix: String, _ body: (TestDatabase, PGConnection, _ ownerID: String) async throws -> T) async throws -> T {
    try await TestDatabase.with(prefix) { database in
        let connection = try database.connect()
        try migrate(connection)
        let owner = try DatabaseFixtures.insertUser(on: connection)
        return try await body(database, connection, owner)
    }
}
