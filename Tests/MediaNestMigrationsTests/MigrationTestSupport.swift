import Foundation
import Logging
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Synchronization

/// The project's own migrations directory.
let migrationsDirectory = repositoryRoot.appendingPathComponent("migrations")

/// The seed design document the schema is checked against.
let seedDocument = repositoryRoot.appendingPathComponent("docs/seed/medianest-database-schema.md")

/// The migrator's logger in these tests: at `MEDIANEST_TEST_LOG` (see ``TestLogging``).
let quietLogger: Logger = TestLogging.logger("medianest.migrations.tests")

func projectMigrator() throws -> Migrator {
    Migrator(catalog: try MigrationCatalog.load(from: migrationsDirectory), logger: quietLogger)
}

/// A fresh database with every project migration applied.
func migratedDatabase(_ prefix: String) throws -> (TestDatabase, PGConnection) {
    let database = try TestDatabase.create(prefix)
    do {
        let connection = try database.connect()
        try projectMigrator().migrateUp(on: connection)
        return (database, connection)
    } catch {
        database.drop()
        throw error
    }
}

/// Runs each body on a thread of its own, all at once, and returns their results in order.
/// Blocking libpq calls then really overlap, which the cooperative pool would not guarantee.
func runOnThreads<T: Sendable>(_ bodies: [@Sendable () throws -> T]) -> [Result<T, any Error>] {
    let results = Mutex<[Int: Result<T, any Error>]>([:])
    let finished = DispatchSemaphore(value: 0)
    for (index, body) in bodies.enumerated() {
        let thread = Thread {
            let result = Result { try body() }
            results.withLock { $0[index] = result }
            finished.signal()
        }
        thread.start()
    }
    for _ in bodies { finished.wait() }
    return results.withLock { all in bodies.indices.map { all[$0]! } }
}

/// Copies the project's migrations into a new temporary directory the test may edit.
func temporaryMigrationsCopy() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-migrations-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: migrationsDirectory, to: directory)
    return directory
}

extension PGConnection {
    /// The single value of a one-row, one-column query, as text (NULL as nil).
    func scalar(_ sql: String, _ parameters: [(any PGEncodable)?] = []) throws -> String? {
        let result = try query(sql, parameters)
        guard let row = try result.singleRow() else { return nil }
        return row.text(result.columns[0])
    }

    /// The first column of every row, as text.
    func column(_ sql: String, _ parameters: [(any PGEncodable)?] = []) throws -> [String] {
        let result = try query(sql, parameters)
        return result.map { $0.text(result.columns[0]) ?? "NULL" }
    }
}
