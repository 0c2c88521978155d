public import Foundation

/// One versioned schema change: a pair of files `NNNN_name.up.sql` and `NNNN_name.down.sql`.
public struct Migration: Sendable, Hashable, Identifiable {
    /// One direction of a migration: a file and how to run it.
    public struct Script: Sendable, Hashable {
        /// The file the SQL was read from.
        public let file: URL
        /// The file's text.
        public let sql: String
        /// False when the first line is ``Migration/noTransactionMarker``: the script then runs
        /// outside a transaction, one statement at a time.
        public let runsInTransaction: Bool

        /// The statements, split as ``SQLStatementSplitter`` does.
        public var statements: [String] { SQLStatementSplitter.statements(in: sql) }
    }

    /// The first line that makes a file run outside a transaction.
    public static let noTransactionMarker = "-- medianest:no-transaction"

    /// The version, from the file name's number (`0007` is 7). Migrations apply in ascending order.
    public let version: Int64
    /// The file name's part after the number, such as `media_versioning`.
    public let name: String
    /// Applies the change.
    public let up: Script
    /// Reverts it.
    public let down: Script
    /// SHA-256 of the up file's bytes, lower-case hex; stored in `schema_migrations.checksum`.
    public let checksum: String

    public var id: Int64 { version }

    /// `0007_media_versioning`: the files' common stem, for messages.
    public var displayName: String {
        let number = String(version)
        let padded = number.count >= 4 ? number : String(repeating: "0", count: 4 - number.count) + number
        return "\(padded)_\(name)"
    }

    /// Creates a migration from its two scripts.
    /// - Parameters:
    ///   - version: The version number.
    ///   - name: The descriptive part of the file name.
    ///   - up: The forward script.
    ///   - down: The reverting script.
    ///   - checksum: SHA-256 hex of the up file.
    public init(version: Int64, name: String, up: Script, down: Script, checksum: String) {
        self.version = version
        self.name = name
        self.up = up
        self.down = down
        self.checksum = checksum
    }
}

extension Migration.Script {
    init(file: URL, sql: String) {
        self.file = file
        self.sql = sql
        let firstLine = sql.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        self.runsInTransaction = firstLine.trimmingWhitespace() != Migration.noTransactionMarker
    }
}
