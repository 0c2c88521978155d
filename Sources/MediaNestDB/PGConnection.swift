import CLibPQ
import Foundation
public import Logging

/// A notification received on a channel the connection LISTENs to.
public struct PGNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String
    /// The backend PID of the sender.
    public var senderPID: Int32
}

/// One libpq connection.
///
/// Every call blocks the calling thread, so a connection must never be used from Swift's
/// cooperative thread pool: use ``PGConnectionRunner`` from async code, or a thread of your own.
/// A connection is not thread-safe; it is `@unchecked Sendable` only so that it can be handed to
/// the single thread or serial queue that owns it.
public final class PGConnection: @unchecked Sendable {
    private var handle: OpaquePointer?
    /// What the connection was opened with.
    public let configuration: DatabaseConfiguration
    private let logger: Logger
    private var listening: Set<String> = []

    private init(handle: OpaquePointer, configuration: DatabaseConfiguration, logger: Logger) {
        self.handle = handle
        self.configuration = configuration
        self.logger = logger
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection.
    /// - Parameters:
    ///   - configuration: Where to connect; libpq's defaults fill in what it leaves out.
    ///   - logger: For connection events. Passwords are never logged.
    /// - Throws: ``DatabaseError`` of kind ``DatabaseError/Kind/connectionFailed`` with libpq's
    ///   reason (refused, timed out, authentication failed), within `connect_timeout` seconds.
    public static func connect(_ configuration: DatabaseConfiguration, logger: Logger = Logger(label: "medianest.db")) throws(DatabaseError) -> PGConnection {
        let handle = openHandle(configuration)
        guard let handle else {
            throw DatabaseError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let reason = configuration.redactingSecrets(in: lastErrorMessage(handle))
            PQfinish(handle)
            throw connectFailure(reason, configuration: configuration, verb: "connect")
        }
        let connection = PGConnection(handle: handle, configuration: configuration, logger: logger)
        try connection.configureSession()
        logger.debug("connected to PostgreSQL", metadata: connection.endpointMetadata)
        return connection
    }

    /// A failed connection attempt as a ``DatabaseError``, classified from libpq's message.
    ///
    /// libpq reports no SQLSTATE for a refused connection, only text (in the server's
    /// `lc_messages`, English by default), so the faults that never fix themselves are
    /// recognised by their wording and given the SQLSTATE the server logs for them; see
    /// ``DatabaseError/isConfigurationProblem``.
    private static func connectFailure(_ reason: String, configuration: DatabaseConfiguration, verb: String) -> DatabaseError {
        let text = reason.lowercased()
        var kind = DatabaseError.Kind.connectionFailed
        var sqlState: String?
        if text.contains("password authentication failed") || text.contains("no password supplied") {
            sqlState = "28P01"
        } else if text.contains("role \"") && text.contains("does not exist") {
            sqlState = "28000"
        } else if text.contains("no pg_hba.conf entry") {
            sqlState = "28000"
        } else if text.contains("database \"") && text.contains("does not exist") {
            sqlState = "3D000"
        } else if text.contains("permission denied for database") {
            sqlState = "42501"
            kind = .invalidConfiguration
        } else if text.hasPrefix("invalid ") || text.contains("connection option") || text.contains("connection info string")
                    || text.contains("in uri") || text.contains("uri query parameter") || text.contains("percent-encoded") {
            kind = .invalidConfiguration
        }
        return DatabaseError(kind: kind, message: "could not \(verb) to PostgreSQL (\(configuration)): \(reason)", sqlState: sqlState)
    }

    private static func openHandle(_ configuration: DatabaseConfiguration) -> OpaquePointer? {
        let pairs = configuration.keywordValuePairs
        var keywords = pairs.map { strdup($0.0) } + [nil]
        var values = pairs.map { strdup($0.1) } + [nil]
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        return keywords.withUnsafeMutableBufferPointer { keywordBuffer in
            values.withUnsafeMutableBufferPointer { valueBuffer in
                keywordBuffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: keywordBuffer.count) { k in
                    valueBuffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: valueBuffer.count) { v in
                        PQconnectdbParams(k, v, 1)
                    }
                }
            }
        }
    }

    /// Timestamps come back in ISO form and UTC whatever the server's defaults are.
    private func configureSession() throws(DatabaseError) {
        try execute("SELECT set_config('datestyle', 'ISO, MDY', false), set_config('timezone', 'UTC', false)")
    }

    private static func lastErrorMessage(_ handle: OpaquePointer?) -> String {
        guard let handle, let message = PQerrorMessage(handle) else { return "unknown error" }
        return String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Host, port, database and user, for log metadata (never the password).
    public var endpointMetadata: Logger.Metadata {
        guard let handle else { return [:] }
        func text(_ value: UnsafeMutablePointer<CChar>?) -> String { value.map { String(cString: $0) } ?? "" }
        return [
            "db.host": "\(text(PQhost(handle)))",
            "db.port": "\(text(PQport(handle)))",
            "db.name": "\(text(PQdb(handle)))",
            "db.user": "\(text(PQuser(handle)))",
        ]
    }

    /// Whether libpq still considers the connection usable.
    public var isConnected: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The server's backend process id (for `pg_terminate_backend` in tests and diagnostics).
    public var backendPID: Int32 { handle.map { PQbackendPID($0) } ?? 0 }

    /// Re-establishes a broken connection with the same parameters, and LISTENs again.
    /// - Throws: ``DatabaseError`` of kind ``DatabaseError/Kind/connectionFailed``.
    public func reconnect() throws(DatabaseError) {
        if let handle { PQfinish(handle) }
        handle = PGConnection.openHandle(configuration)
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let reason = configuration.redactingSecrets(in: PGConnection.lastErrorMessage(handle))
            throw PGConnection.connectFailure(reason, configuration: configuration, verb: "reconnect")
        }
        try configureSession()
        let channels = listening
        listening = []
        for channel in channels { try listen(channel) }
        logger.info("reconnected to PostgreSQL", metadata: endpointMetadata)
    }

    // MARK: Queries

    /// Runs one statement with bound parameters and returns its rows.
    ///
    /// - Parameters:
    ///   - sql: One statement with `$1`, `$2`, … placeholders. Values never go into this text.
    ///   - parameters: The values; `nil` is SQL NULL.
    /// - Returns: The decoded-on-demand rows.
    /// - Throws: ``DatabaseError`` with the server's SQLSTATE, message, detail and hint; of kind
    ///   ``DatabaseError/Kind/connectionLost`` when the connection broke.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PGEncodable)?] = []) throws(DatabaseError) -> PGResult {
        guard let handle else { throw DatabaseError(kind: .connectionLost, message: "the connection is closed", query: sql) }
        var texts: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.map { strdup($0.pgText) } ?? nil }
        defer { texts.forEach { free($0) } }
        let types: [Oid] = parameters.map { $0.map { type(of: $0).pgParameterType } ?? PGType.unknown }
        let result: OpaquePointer? = texts.withUnsafeMutableBufferPointer { textBuffer in
            textBuffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { valueBuffer in
                types.withUnsafeBufferPointer { typeBuffer in
                    PQexecParams(handle, sql, Int32(parameters.count), typeBuffer.baseAddress, valueBuffer.baseAddress, nil, nil, 0)
                }
            }
        }
        return try consume(result, sql: sql)
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [(any PGEncodable)?] = []) throws(DatabaseError) -> Int {
        try query(sql, parameters).affectedRows
    }

    /// Runs a script of several statements without parameters (migrations, test setup).
    ///
    /// This uses the simple query protocol, which is the only way to send several statements in
    /// one round trip. It must never be given text built from values: use ``query(_:_:)`` for those.
    /// - Throws: ``DatabaseError`` for the first statement that fails.
    public func executeScript(_ sql: String) throws(DatabaseError) {
        guard let handle else { throw DatabaseError(kind: .connectionLost, message: "the connection is closed", query: sql) }
        guard PQsendQuery(handle, sql) == 1 else {
            throw connectionOrClientError(PGConnection.lastErrorMessage(handle), sql: sql)
        }
        var firstError: DatabaseError?
        while let result = PQgetResult(handle) {
            do { _ = try consume(result, sql: sql) } catch { if firstError == nil { firstError = error } }
        }
        if let firstError { throw firstError }
        if PQstatus(handle) != CONNECTION_OK { throw connectionOrClientError(PGConnection.lastErrorMessage(handle), sql: sql) }
    }

    private func connectionOrClientError(_ message: String, sql: String?) -> DatabaseError {
        let lost = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
        return DatabaseError(kind: lost ? .connectionLost : .clientError, message: configuration.redactingSecrets(in: message), query: sql)
    }

    /// Turns a `PGresult` into a ``PGResult`` or an error, and frees it.
    private func consume(_ result: OpaquePointer?, sql: String) throws(DatabaseError) -> PGResult {
        guard let result else {
            throw connectionOrClientError(PGConnection.lastErrorMessage(handle), sql: sql)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            var columns: [String] = []
            var types: [PGTypeOID] = []
            columns.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                columns.append(String(cString: PQfname(result, Int32(column))))
                types.append(PQftype(result, Int32(column)))
            }
            var rows: [[String?]] = []
            rows.reserveCapacity(rowCount)
            for row in 0..<rowCount {
                var values: [String?] = []
                values.reserveCapacity(columnCount)
                for column in 0..<columnCount {
                    if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                        values.append(nil)
                    } else {
                        values.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                    }
                }
                rows.append(values)
            }
            let tuples = PQcmdTuples(result).map { String(cString: $0) } ?? ""
            return PGResult(columns: columns, columnTypes: types, values: rows, affectedRows: Int(tuples) ?? rowCount)
        default:
            func field(_ code: Int32) -> String? { PQresultErrorField(result, code).map { String(cString: $0) } }
            let sqlState = field(CLibPQ_PG_DIAG_SQLSTATE)
            let message = field(CLibPQ_PG_DIAG_MESSAGE_PRIMARY)
                ?? PQresultErrorMessage(result).map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) }
                ?? "unknown error"
            let lost = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
            let kind: DatabaseError.Kind = lost ? .connectionLost : (sqlState == nil ? .clientError : .serverError)
            throw DatabaseError(kind: kind, message: message, sqlState: sqlState,
                                detail: field(CLibPQ_PG_DIAG_MESSAGE_DETAIL), hint: field(CLibPQ_PG_DIAG_MESSAGE_HINT), query: sql)
        }
    }

    // MARK: Transactions

    /// Runs `body` inside `BEGIN` … `COMMIT`, rolling back if it throws.
    ///
    /// - Parameter body: The work; it receives this connection.
    /// - Returns: What `body` returned.
    /// - Throws: Whatever `body` threw (after the rollback), or a ``DatabaseError`` from
    ///   `BEGIN`/`COMMIT` (a failed commit, such as a serialization failure, is thrown as is).
    public func transaction<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try execute("BEGIN")
        let value: T
        do {
            value = try body(self)
        } catch {
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
        try execute("COMMIT")
        return value
    }

    // MARK: LISTEN/NOTIFY

    /// Subscribes to a notification channel (survives ``reconnect()``).
    public func listen(_ channel: String) throws(DatabaseError) {
        try execute("LISTEN " + quoteIdentifier(channel))
        listening.insert(channel)
    }

    /// Unsubscribes from a notification channel.
    public func unlisten(_ channel: String) throws(DatabaseError) {
        try execute("UNLISTEN " + quoteIdentifier(channel))
        listening.remove(channel)
    }

    /// Quotes an identifier (channel or table name) with libpq's own escaping.
    public func quoteIdentifier(_ identifier: String) throws(DatabaseError) -> String {
        guard let handle, let escaped = PQescapeIdentifier(handle, identifier, identifier.utf8.count) else {
            throw DatabaseError(kind: .clientError, message: "cannot quote identifier \(identifier)")
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    /// Waits until at least one notification arrives or `timeout` passes, sleeping in `poll(2)`
    /// on the connection's socket: no busy-waiting, no query sent.
    ///
    /// - Parameters:
    ///   - timeout: The longest to wait; zero only drains what already arrived.
    ///   - wakeDescriptor: A descriptor (an `eventfd`, a pipe) that ends the wait early when it
    ///     becomes readable; the caller drains it.
    /// - Returns: The notifications received, possibly none.
    /// - Throws: ``DatabaseError`` of kind ``DatabaseError/Kind/connectionLost`` when the
    ///   connection broke while waiting.
    public func waitForNotifications(timeout: Duration, wakeDescriptor: Int32? = nil) throws(DatabaseError) -> [PGNotification] {
        guard let handle else { throw DatabaseError(kind: .connectionLost, message: "the connection is closed") }
        var received = try drainNotifications()
        if !received.isEmpty { return received }
        let deadline = ContinuousClock.now + timeout
        while received.isEmpty {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { break }
            let milliseconds = Int32(clamping: Int64(remaining.components.seconds) * 1000 + Int64(remaining.components.attoseconds / 1_000_000_000_000_000) + 1)
            var descriptors = [pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeDescriptor ?? -1, events: Int16(POLLIN), revents: 0)]
            guard descriptors[0].fd >= 0 else { throw DatabaseError(kind: .connectionLost, message: "the connection has no socket") }
            let ready = poll(&descriptors, wakeDescriptor == nil ? 1 : 2, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw DatabaseError(kind: .clientError, message: "poll failed: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { break }
            if descriptors[1].revents != 0 && descriptors[0].revents == 0 { break }
            guard PQconsumeInput(handle) == 1 else {
                throw DatabaseError(kind: .connectionLost, message: PGConnection.lastErrorMessage(handle))
            }
            received = try drainNotifications()
            if PQstatus(handle) != CONNECTION_OK {
                throw DatabaseError(kind: .connectionLost, message: PGConnection.lastErrorMessage(handle))
            }
        }
        return received
    }

    private func drainNotifications() throws(DatabaseError) -> [PGNotification] {
        guard let handle else { return [] }
        guard PQconsumeInput(handle) == 1 else {
            throw DatabaseError(kind: .connectionLost, message: PGConnection.lastErrorMessage(handle))
        }
        var received: [PGNotification] = []
        while let notify = PQnotifies(handle) {
            let value = notify.pointee
            received.append(PGNotification(channel: String(cString: value.relname),
                                           payload: value.extra.map { String(cString: $0) } ?? "",
                                           senderPID: value.be_pid))
            PQfreemem(notify)
        }
        return received
    }
}
