import Foundation

/// How to reach PostgreSQL.
///
/// ``connectionString`` is anything libpq accepts: a URI (`postgresql://user@host/db`) or a
/// `key=value` string. When it is empty, libpq's own defaults apply: the `PG*` environment
/// variables, `~/.pgpass`, `PGSERVICE` service files and `sslmode`. Operators get exactly the
/// configuration they already know from `psql`.
public struct DatabaseConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// A libpq connection string or URI; empty for libpq's defaults.
    public var connectionString: String
    /// Keywords applied after the connection string, overriding it (for example `dbname` in tests).
    public var overrides: [String: String]
    /// Shown in `pg_stat_activity.application_name`.
    public var applicationName: String
    /// Seconds libpq waits for a connection before giving up (libpq's `connect_timeout`), unless
    /// the connection string sets its own.
    public var connectTimeoutSeconds: Int

    public init(connectionString: String = "", overrides: [String: String] = [:], applicationName: String = "medianest-worker", connectTimeoutSeconds: Int = 10) {
        self.connectionString = connectionString
        self.overrides = overrides
        self.applicationName = applicationName
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }

    /// The same configuration with `keyword` set to `value`.
    public func with(_ keyword: String, _ value: String) -> DatabaseConfiguration {
        var copy = self
        copy.overrides[keyword] = value
        return copy
    }

    /// The keywords and values for `PQconnectdbParams`, in the order libpq should apply them:
    /// our defaults first, then the expanded connection string, then the overrides.
    var keywordValuePairs: [(String, String)] {
        var pairs: [(String, String)] = [
            ("connect_timeout", String(connectTimeoutSeconds)),
            ("application_name", applicationName),
        ]
        if !connectionString.isEmpty { pairs.append(("dbname", connectionString)) }
        for key in overrides.keys.sorted() { pairs.append((key, overrides[key]!)) }
        return pairs
    }

    /// A description that never includes a password.
    public var description: String {
        var shown = DatabaseConfiguration.redactingPasswords(in: connectionString)
        if shown.isEmpty { shown = "(libpq defaults)" }
        let extra = overrides.keys.sorted().map { key in
            key.lowercased() == "password" ? "\(key)=***" : "\(key)=\(overrides[key]!)"
        }
        return ([shown] + extra).joined(separator: " ")
    }

    /// Replaces the password in a URI (`user:secret@`) or a `password=` keyword with `***`.
    public static func redactingPasswords(in connectionString: String) -> String {
        var text = connectionString
        if let schemeRange = text.range(of: "://"), let at = text[schemeRange.upperBound...].firstIndex(of: "@") {
            let userInfo = text[schemeRange.upperBound..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                text.replaceSubrange(text.index(after: colon)..<at, with: "***")
            }
        }
        if let queryStart = text.firstIndex(of: "?") {
            let query = text[text.index(after: queryStart)...].split(separator: "&", omittingEmptySubsequences: false).map { part in
                part.lowercased().hasPrefix("password=") ? "password=***" : String(part)
            }
            text = String(text[...queryStart]) + query.joined(separator: "&")
        }
        // key=value form: password=secret or password='se cret'
        var result = ""
        var rest = Substring(text)
        while let range = rest.range(of: "password", options: .caseInsensitive) {
            result += rest[..<range.upperBound]
            rest = rest[range.upperBound...]
            let trimmed = rest.drop(while: { $0 == " " })
            guard trimmed.first == "=" else { continue }
            var value = trimmed.dropFirst().drop(while: { $0 == " " })
            if value.first == "'" {
                value = value.dropFirst()
                while let c = value.first, c != "'" { value = value.dropFirst(c == "\\" ? 2 : 1) }
                value = value.dropFirst()
            } else {
                value = value.drop(while: { $0 != " " })
            }
            result += "=***"
            rest = value
        }
        return result + rest
    }
}
