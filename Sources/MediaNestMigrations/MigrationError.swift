public import MediaNestDB

/// Why migrating could not proceed, in a form an operator can act on.
///
/// ``code`` is stable (scripts and alerts may match on it); ``message`` names the file or version
/// involved and says what to do. Modelled on postgres-nio's `PSQLError.Code`: a struct with static
/// members, so new codes can be added without breaking callers.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    /// A stable, machine-readable reason.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The code's text, such as `checksum_mismatch`.
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// No migrations directory was given or found.
        public static let directoryNotFound = Code("directory_not_found")
        /// A file in the migrations directory could not be read.
        public static let unreadableFile = Code("unreadable_file")
        /// A `.sql` file's name does not follow `NNNN_name.up.sql` / `NNNN_name.down.sql`.
        public static let invalidFileName = Code("invalid_file_name")
        /// Two files claim the same version and direction.
        public static let duplicateVersion = Code("duplicate_version")
        /// A version has an up file without a down file, or the other way round.
        public static let missingPair = Code("missing_pair")
        /// A file that runs in a transaction contains BEGIN, COMMIT or ROLLBACK.
        public static let transactionControlInFile = Code("transaction_control_in_file")
        /// An applied migration's up file differs from what was applied.
        public static let checksumMismatch = Code("checksum_mismatch")
        /// A version recorded as applied has no file any more.
        public static let appliedMigrationMissing = Code("applied_migration_missing")
        /// The requested target version does not exist.
        public static let unknownTarget = Code("unknown_target")
        /// A migration's SQL failed; nothing of it was recorded.
        public static let migrationFailed = Code("migration_failed")
        /// Another migrator held the lock for longer than the configured wait.
        public static let lockTimeout = Code("lock_timeout")
        /// Talking to the database failed outside any migration's SQL.
        public static let database = Code("database")
    }

    /// The stable reason.
    public var code: Code
    /// What happened, for a person: the file or version, and what to do about it.
    public var message: String
    /// The database error behind this one, if any (its SQLSTATE is often the useful part).
    public var underlying: DatabaseError?

    /// Creates an error.
    /// - Parameters:
    ///   - code: The stable reason.
    ///   - message: A sentence naming the file or version involved.
    ///   - underlying: The database error that caused it, if any.
    public init(_ code: Code, _ message: String, underlying: DatabaseError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return message }
        return "\(message): \(underlying)"
    }
}
