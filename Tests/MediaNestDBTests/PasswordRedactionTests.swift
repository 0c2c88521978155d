import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

/// Issue 7 §8: libpq repeats parts of a malformed connection string in its own errors; no part of
/// the password may reach an error description or a log line, wherever the password came from.
@Suite("password redaction")
struct PasswordRedactionTests {
    /// Connects (it must fail) and returns everything a log line could show of the failure.
    private func failure(_ configuration: DatabaseConfiguration) throws -> String {
        let error = #expect(throws: DatabaseError.self) { try PGConnection.connect(configuration) }
        let found = try #require(error)
        return "\(found) | \(found.message) | \(configuration)"
    }

    @Test func slashInAURIPasswordDoesNotLeakThroughThePortError() throws {
        // libpq ends the authority at the '/', so "S3cret" becomes the port.
        let shown = try failure(DatabaseConfiguration(connectionString: "postgresql://u:S3cret/PW@host/db", connectTimeoutSeconds: 2))
        #expect(shown.contains("port"), "the message still says what is wrong: \(shown)")
        #expect(!shown.contains("S3cret"), "\(shown)")
        #expect(!shown.contains("S3cret/PW"), "\(shown)")
        #expect(!shown.contains("PW@"), "\(shown)")
    }

    @Test func atSignInAURIPasswordDoesNotLeakItsTail() throws {
        // libpq splits the user info at the first '@', so "ret@127.0.0.1" becomes the host.
        let configuration = DatabaseConfiguration(connectionString: "postgresql://u:S3c@ret@127.0.0.1:1/db", connectTimeoutSeconds: 2)
        #expect(!configuration.description.contains("S3c"), "\(configuration)")
        #expect(!configuration.description.contains("ret@"), "\(configuration)")
        let shown = try failure(configuration)
        #expect(!shown.contains("S3c"), "\(shown)")
        #expect(!shown.contains("ret@"), "\(shown)")
        #expect(!shown.contains("\"ret"), "\(shown)")
    }

    @Test func keywordPasswordIsMaskedInLibpqsOwnMessages() {
        let configuration = DatabaseConfiguration(connectionString: "host=db user=app password=Sup3r/Secret@x dbname=media")
        let libpq = #"invalid integer value "Sup3r" for connection option "port"; host "Secret@x" not found"#
        let shown = configuration.redactingSecrets(in: libpq)
        #expect(!shown.contains("Sup3r") && !shown.contains("Secret"), "\(shown)")
        #expect(shown.contains("connection option \"port\""))
        #expect(!configuration.description.contains("Sup3r"))
    }

    @Test func overrideAndPGPASSWORDPasswordsAreMasked() {
        let configuration = DatabaseConfiguration(connectionString: "host=db", overrides: ["password": "Ov3rride-Pass"])
        #expect(configuration.redactingSecrets(in: "could not use \"Ov3rride\" here") == "could not use \"***\" here")
        // Never setenv here: the suites run in parallel, glibc's setenv/unsetenv are not
        // thread-safe (unsetenv moves the entries of `environ` under the feet of any thread
        // reading it), and libpq reads PGPASSWORD and the other PG* variables on every connect.
        let plain = DatabaseConfiguration(connectionString: "host=db")
        let shown = plain.redactingSecrets(in: "server said: EnvPa55word and \"Pa55w\"", environment: ["PGPASSWORD": "EnvPa55word"])
        #expect(!shown.contains("EnvPa55word") && !shown.contains("Pa55w"), "\(shown)")
    }

    @Test func percentEncodedPasswordIsMaskedDecodedToo() {
        let configuration = DatabaseConfiguration(connectionString: "postgresql://u:p%40ss%2Fw0rd@host/db")
        #expect(!configuration.redactingSecrets(in: "bad value \"p@ss/w0rd\"").contains("p@ss/w0rd"))
        #expect(!configuration.description.contains("p%40ss"))
    }

    @Test func wrongPasswordOverTCPNeverShowsIt() throws {
        let port = try #require(ProcessInfo.processInfo.environment["MEDIANEST_TEST_PG_TCP_PORT"])
        let shown = try failure(DatabaseConfiguration(connectionString: "postgresql://medianest:N0t-The-Pass@127.0.0.1:\(port)/postgres", connectTimeoutSeconds: 5))
        #expect(shown.contains("password authentication failed"))
        #expect(!shown.contains("N0t-The-Pass") && !shown.contains("N0t") && !shown.contains("The-Pass"), "\(shown)")
    }
}
