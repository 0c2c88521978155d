import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import Testing

@Suite("libpq connection", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"))
struct PGConnectionTests {
    @Test func everySupportedTypeRoundTripsIncludingNull() async throws {
        try await TestDatabase.with("types") { database in
            let connection = try database.connect()
            try connection.executeScript("""
                CREATE TYPE mood AS ENUM ('calm', 'busy');
                CREATE TABLE everything (
                    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                    t text, v varchar(20), s smallint, i integer, b bigint, flag boolean, d double precision,
                    at timestamptz, doc jsonb, ip inet, words text[], m mood
                );
                """)
            let id = UUID()
            let when = Date(timeIntervalSince1970: 1_700_000_000.123456)
            let doc: JSONValue = ["size": 5_000_000_000, "ratio": 0.5, "name": "a \"quoted\" ü", "list": [1, nil, true]]
            let words = ["plain", "with space", "comma,inside", "quote\"s", "back\\slash", "NULL", "", "{braces}", "café", "e\u{301}\"\\", "👩‍👩‍👧 family"]
            try connection.execute(
                "INSERT INTO everything (id, t, v, s, i, b, flag, d, at, doc, ip, words, m) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                [id, "text ✓", "short", Int16(-7), Int32(2_000_000_000), Int64(9_000_000_000_000), true, 3.25, when, doc,
                 PGInet("2001:db8::1"), words, "busy"])
            try connection.execute("INSERT INTO everything (id) VALUES ($1)", [UUID()])

            let rows = try connection.query("SELECT * FROM everything ORDER BY t NULLS LAST")
            #expect(rows.count == 2)
            let full = rows[0]
            #expect(try full.decode("id", as: UUID.self) == id)
            #expect(try full.decode("id", as: String.self) == id.uuidString.lowercased())
            #expect(try full.decode("t", as: String.self) == "text ✓")
            #expect(try full.decode("v", as: String.self) == "short")
            #expect(try full.decode("s", as: Int16.self) == -7)
            #expect(try full.decode("i", as: Int32.self) == 2_000_000_000)
            #expect(try full.decode("b", as: Int64.self) == 9_000_000_000_000)
            #expect(try full.decode("flag", as: Bool.self) == true)
            #expect(try full.decode("d", as: Double.self) == 3.25)
            let decodedDate = try full.decode("at", as: Date.self)
            #expect(abs(decodedDate.timeIntervalSince1970 - when.timeIntervalSince1970) < 0.000_002)
            #expect(try full.decode("doc", as: JSONValue.self) == doc)
            #expect(try full.decode("ip", as: PGInet.self).address == "2001:db8::1")
            #expect(try full.decode("words", as: [String].self) == words)
            #expect(try full.decode("m", as: String.self) == "busy")

            let empty = rows[1]
            #expect(try empty.decode("t", as: String?.self) == nil)
            #expect(try empty.decode("s", as: Int16?.self) == nil)
            #expect(try empty.decode("flag", as: Bool?.self) == nil)
            #expect(try empty.decode("at", as: Date?.self) == nil)
            #expect(try empty.decode("doc", as: JSONValue?.self) == nil)
            #expect(try empty.decode("ip", as: PGInet?.self) == nil)
            #expect(try empty.decode("words", as: [String]?.self) == nil)

            // NULL parameters bind as NULL.
            let nullCount = try connection.query("SELECT count(*) AS n FROM everything WHERE t IS NOT DISTINCT FROM $1", [nil])
            #expect(try nullCount[0].decode("n", as: Int.self) == 1)
        }
    }

    @Test func decodingNullOrWrongTypeFailsClearly() async throws {
        try await TestDatabase.with("decode") { database in
            let connection = try database.connect()
            let row = try connection.query("SELECT NULL::text AS missing, 42 AS answer, 'x'::text AS word")[0]
            let nullError = #expect(throws: DatabaseError.self) { try row.decode("missing", as: String.self) }
            #expect(nullError?.message.contains("\"missing\" is NULL") == true)
            let typeError = #expect(throws: DatabaseError.self) { try row.decode("answer", as: String.self) }
            #expect(typeError?.message.contains("integer") == true)
            #expect(throws: DatabaseError.self) { try row.decode("word", as: Int.self) }
            #expect(throws: DatabaseError.self) { try row.decode("nonexistent", as: Int.self) }
        }
    }

    @Test func valuesAreBoundNeverSpliced() async throws {
        try await TestDatabase.with("inject") { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE victims (name text)")
            let hostile = "x'); DROP TABLE victims; --"
            try connection.execute("INSERT INTO victims (name) VALUES ($1)", [hostile])
            let rows = try connection.query("SELECT name FROM victims")
            #expect(try rows[0].decode("name", as: String.self) == hostile)
        }
    }

    @Test func transactionRollsBackWhenBodyThrows() async throws {
        struct Boom: Error {}
        try await TestDatabase.with("tx") { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE items (n int)")
            #expect(throws: Boom.self) {
                try connection.transaction { tx in
                    try tx.execute("INSERT INTO items VALUES (1)")
                    throw Boom()
                }
            }
            _ = try connection.transaction { tx in try tx.execute("INSERT INTO items VALUES (2)") }
            let values = try connection.query("SELECT n FROM items").map { try $0.decode("n", as: Int.self) }
            #expect(values == [2])
        }
    }

    @Test func serverErrorCarriesSQLStateMessageAndDetail() async throws {
        try await TestDatabase.with("errors") { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE people (email text UNIQUE)")
            try connection.execute("INSERT INTO people VALUES ($1)", ["a@example.com"])
            let error = #expect(throws: DatabaseError.self) {
                try connection.execute("INSERT INTO people VALUES ($1)", ["a@example.com"])
            }
            #expect(error?.sqlState == "23505")
            #expect(error?.kind == .serverError)
            #expect(error?.message.contains("unique") == true)
            #expect(error?.detail?.contains("a@example.com") == true)
            #expect(error?.isConnectionProblem == false)
            // The connection is still usable after a statement error.
            #expect(try connection.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        }
    }

    @Test func listenReceivesNotifyFromAnotherConnection() async throws {
        try await TestDatabase.with("listen") { database in
            let listener = try database.connect()
            try listener.listen("media jobs")  // needs quoting
            let quiet = try listener.waitForNotifications(timeout: .milliseconds(50))
            #expect(quiet.isEmpty)

            let sender = try database.connect()
            let senderPID = sender.backendPID
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.2)
                _ = try? sender.execute("SELECT pg_notify($1, $2)", ["media jobs", "hello"])
            }
            let received = try listener.waitForNotifications(timeout: .seconds(10))
            #expect(received.count == 1)
            #expect(received.first?.channel == "media jobs")
            #expect(received.first?.payload == "hello")
            #expect(received.first?.senderPID == senderPID)
        }
    }

    @Test func wrongPasswordFailsWithClearError() throws {
        let port = try #require(ProcessInfo.processInfo.environment["MEDIANEST_TEST_PG_TCP_PORT"])
        let configuration = DatabaseConfiguration(
            connectionString: "host=127.0.0.1 port=\(port) user=medianest dbname=postgres password=not-the-password",
            connectTimeoutSeconds: 5)
        let error = #expect(throws: DatabaseError.self) { try PGConnection.connect(configuration) }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.message.contains("password authentication failed") == true)
        #expect(error?.message.contains("not-the-password") == false, "the password must never appear in an error")
    }

    @Test func rightPasswordOverTCPConnects() throws {
        let env = ProcessInfo.processInfo.environment
        let port = try #require(env["MEDIANEST_TEST_PG_TCP_PORT"])
        let password = try #require(env["MEDIANEST_TEST_PG_PASSWORD"])
        let uri = "postgresql://medianest:\(password)@127.0.0.1:\(port)/postgres"
        let connection = try PGConnection.connect(DatabaseConfiguration(connectionString: uri))
        #expect(try connection.query("SELECT current_user AS u")[0].decode("u", as: String.self) == "medianest")
        #expect(!connection.configuration.description.contains(password))
    }

    @Test func serverThatIsDownFailsFastWithClearError() throws {
        let port = try closedLoopbackPort()
        let started = ContinuousClock.now
        let error = #expect(throws: DatabaseError.self) {
            try PGConnection.connect(DatabaseConfiguration(connectionString: "host=127.0.0.1 port=\(port) dbname=postgres user=medianest"))
        }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.message.contains("refused") == true)
        #expect(ContinuousClock.now - started < .seconds(9), "a refused connection must not wait for connect_timeout")
    }

    @Test func serverThatNeverAnswersTimesOutInsteadOfHanging() throws {
        // A socket that accepts TCP connections (the kernel completes the handshake from the
        // backlog) but never speaks the PostgreSQL protocol.
        let listener = try SilentListener()
        let error = #expect(throws: DatabaseError.self) {
            try PGConnection.connect(DatabaseConfiguration(
                connectionString: "host=127.0.0.1 port=\(listener.port) dbname=postgres user=medianest", connectTimeoutSeconds: 2))
        }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.message.lowercased().contains("timeout") == true)
    }

    @Test func brokenConnectionIsDetectedAndReconnects() async throws {
        try await TestDatabase.with("reconnect") { database in
            let connection = try database.connect()
            let admin = try database.connect()
            try admin.execute("SELECT pg_terminate_backend($1)", [connection.backendPID])
            let error = #expect(throws: DatabaseError.self) { try connection.query("SELECT 1") }
            #expect(error?.isConnectionProblem == true)
            #expect(connection.isConnected == false)
            try connection.reconnect()
            #expect(try connection.query("SELECT 2 AS two")[0].decode("two", as: Int.self) == 2)
        }
    }

    @Test func runnerReopensItsConnectionAfterTheServerDroppedIt() async throws {
        try await TestDatabase.with("runner") { database in
            let runner = PGConnectionRunner(configuration: database.configuration, label: "test", logger: TestLogging.logger())
            let firstPID = try await runner.run { $0.backendPID }
            let admin = try database.connect()
            try admin.execute("SELECT pg_terminate_backend($1)", [firstPID])
            await #expect(throws: DatabaseError.self) { try await runner.run { try $0.query("SELECT 1") } }
            let secondPID = try await runner.run { $0.backendPID }
            #expect(secondPID != firstPID)
            let value = try await runner.run { try $0.query("SELECT 3 AS three")[0].decode("three", as: Int.self) }
            #expect(value == 3)
            runner.close()
        }
    }

    @Test func passwordsAreRedactedFromDescriptions() {
        let uri = DatabaseConfiguration(connectionString: "postgresql://app:s3cret@db.example/media?sslmode=require&password=other")
        #expect(!uri.description.contains("s3cret"))
        #expect(!uri.description.contains("other"))
        #expect(uri.description.contains("db.example"))
        let keywords = DatabaseConfiguration(connectionString: "host=db user=app password='sp ace' dbname=media")
        #expect(!keywords.description.contains("sp ace"))
        #expect(keywords.description.contains("dbname=media"))
        #expect(!DatabaseConfiguration(connectionString: "host=db", overrides: ["password": "x1y2"]).description.contains("x1y2"))
    }
}

/// A loopback port with nothing listening on it.
func closedLoopbackPort() throws -> Int {
    let listener = try SilentListener()
    let port = listener.port
    listener.close()
    return port
}

/// A TCP listener on 127.0.0.1 that never accepts or answers.
final class SilentListener: @unchecked Sendable {
    private var descriptor: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor); descriptor = -1 }
    }

    deinit { close() }
}
