import Foundation
import Logging
public import MediaNestDB

/// Throwaway databases on the private cluster that `scripts/test.sh` starts.
///
/// Every test that touches PostgreSQL creates its own database, so tests run in parallel without
/// seeing each other's rows. The cluster is found through `DATABASE_URL` (set by the scripts) or
/// libpq's `PG*` variables.
public struct TestDatabase: Sendable {
    /// The database's name.
    public let name: String
    /// A configuration that connects to this database.
    public let configuration: DatabaseConfiguration

    /// The cluster's maintenance database.
    public static var adminConfiguration: DatabaseConfiguration {
        DatabaseConfiguration(connectionString: ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "",
                              applicationName: "medianest-tests", connectTimeoutSeconds: 5)
    }

    /// Whether a test cluster is configured at all.
    public static var isAvailable: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["DATABASE_URL"] != nil || env["PGHOST"] != nil
    }

    /// Creates an empty database with a unique name.
    /// - Parameter prefix: Part of the name, to tell databases apart when debugging.
    public static func create(_ prefix: String = "t") throws -> TestDatabase {
        let safePrefix = String(prefix.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(20))
        let name = "mn_\(safePrefix)_\(UUID().uuidString.prefix(8).lowercased())"
        let admin = try PGConnection.connect(adminConfiguration)
        try admin.execute("CREATE DATABASE " + admin.quoteIdentifier(name))
        return TestDatabase(name: name, configuration: adminConfiguration.with("dbname", name))
    }

    /// Opens a connection to this database.
    public func connect() throws -> PGConnection {
        try PGConnection.connect(configuration)
    }

    /// A libpq `key=value` string for child processes: the cluster's `DATABASE_URL` plus `dbname`.
    public var connectionString: String {
        let base = TestDatabase.adminConfiguration.connectionString
        return base.isEmpty ? "dbname=\(name)" : "\(base) dbname=\(name)"
    }

    /// Drops the database, disconnecting anyone still in it.
    public func drop() {
        guard let admin = try? PGConnection.connect(TestDatabase.adminConfiguration) else { return }
        _ = try? admin.execute("DROP DATABASE IF EXISTS " + admin.quoteIdentifier(name) + " WITH (FORCE)")
    }

    /// Runs `body` with a fresh database and drops it afterwards.
    public static func with<T>(_ prefix: String = "t", _ body: (TestDatabase) async throws -> T) async throws -> T {
        let database = try create(prefix)
        defer { database.drop() }
        return try await body(database)
    }
}
