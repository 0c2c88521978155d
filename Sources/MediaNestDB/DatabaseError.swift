/// A failure talking to PostgreSQL, with what the server said about it.
///
/// Modelled on postgres-nio's `PSQLError`: a stable ``Kind`` plus context. ``sqlState`` is the
/// five-character SQLSTATE when the server reported one, so callers can react to
/// `40001` (serialization failure), `55P03` (lock not available), `23505` (unique violation) and so on.
public struct DatabaseError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, broadly.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The connection could not be established (server down, bad password, bad URL).
        public static let connectionFailed = Kind("connection failed")
        /// An established connection broke (server restart, network).
        public static let connectionLost = Kind("connection lost")
        /// The server rejected a statement.
        public static let serverError = Kind("server error")
        /// A value could not be decoded into the requested Swift type.
        public static let decoding = Kind("decoding failed")
        /// A libpq call failed without a server error (out of memory, protocol problem).
        public static let clientError = Kind("client error")
        /// libpq rejected the connection string or an option in it before connecting.
        public static let invalidConfiguration = Kind("invalid connection settings")
    }

    public var kind: Kind
    /// The server's SQLSTATE, if it sent one.
    public var sqlState: String?
    /// The primary message.
    public var message: String
    /// The server's DETAIL, if any.
    public var detail: String?
    /// The server's HINT, if any.
    public var hint: String?
    /// The statement that failed, shortened; never contains parameter values.
    public var query: String?

    public init(kind: Kind, message: String, sqlState: String? = nil, detail: String? = nil, hint: String? = nil, query: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.query = query.map { $0.count > 300 ? String($0.prefix(300)) + "…" : $0 }
    }

    /// Whether the connection is gone and must be re-established before anything else works.
    ///
    /// True for lost and failed connections and for the server's `08xxx` (connection exception),
    /// `57P01`..`57P03` (admin shutdown, crash shutdown, cannot connect now) classes.
    public var isConnectionProblem: Bool {
        if kind == .connectionLost || kind == .connectionFailed { return true }
        guard let state = sqlState else { return false }
        return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
    }

    /// Whether retrying the same transaction soon may succeed: a serialization failure or
    /// deadlock (SQLSTATE class `40`) or a lock wait that ran past `lock_timeout` (`55P03`).
    /// Nothing about the statement was wrong; another transaction was in the way.
    public var isTransientConflict: Bool {
        guard kind == .serverError, let state = sqlState else { return false }
        return state.hasPrefix("40") || state == "55P03"
    }

    /// Whether the connection settings themselves are wrong, so that trying again cannot help:
    /// the database or the role does not exist, the password is wrong or missing, `pg_hba.conf`
    /// rejects the client (SQLSTATE class `28`, `3D000`), or libpq cannot parse the connection
    /// string (``Kind/invalidConfiguration``).
    public var isConfigurationProblem: Bool {
        if kind == .invalidConfiguration { return true }
        guard kind == .connectionFailed, let state = sqlState else { return false }
        return state.hasPrefix("28") || state == "3D000"
    }

    public var description: String {
        var text = "\(kind): \(message)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let detail { text += "; detail: \(detail)" }
        if let hint { text += "; hint: \(hint)" }
        return text
    }
}
