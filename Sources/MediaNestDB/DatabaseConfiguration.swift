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
        return redactingSecrets(in: ([shown] + extra).joined(separator: " "))
    }

    /// Masks every trace of this configuration's password in `text`, typically libpq's own
    /// error message.
    ///
    /// libpq repeats parts of a malformed connection string in its errors: with
    /// `postgresql://u:S3cret/PW@host/db` the `/` ends the authority, so it reports
    /// `invalid integer value "S3cret" for connection option "port"`. So the password is taken
    /// from wherever it was given (a URI's user info up to its last `@`, a `password=` keyword or
    /// query parameter, ``overrides``, `PGPASSWORD`), percent-decoded as well as raw, split into
    /// the fragments a URI parser would cut it into. Every fragment of two or more characters is
    /// masked, and so is every run of four or more characters inside the double quotes libpq puts
    /// around the values it repeats that also occurs in a password.
    /// - Parameters:
    ///   - text: A message that may contain the password or pieces of it.
    ///   - environment: Where `PGPASSWORD` is read; the process's environment unless a caller
    ///     (a test) passes its own, which spares it a `setenv` that races every other thread
    ///     reading the environment.
    /// - Returns: The message with `***` in their place.
    public func redactingSecrets(in text: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        var fromEnvironment = environment["PGPASSWORD"].map { [$0] } ?? []
        fromEnvironment.removeAll { $0.isEmpty }
        return DatabaseConfiguration.redacting(secrets: passwordCandidates + fromEnvironment, in: text)
    }

    /// The passwords written into ``connectionString`` and ``overrides``, raw and percent-decoded.
    var passwordCandidates: [String] {
        var found: [String] = []
        for (key, value) in overrides where key.lowercased() == "password" { found.append(value) }
        let text = connectionString
        if let scheme = text.range(of: "://") {
            let rest = text[scheme.upperBound...]
            let query = rest.firstIndex(of: "?")
            let authority = rest[..<(query ?? rest.endIndex)]
            // The user meant everything up to the last '@' as user info, whatever libpq made of it.
            if let lastAt = authority.lastIndex(of: "@") {
                let userInfo = authority[..<lastAt]
                if let colon = userInfo.firstIndex(of: ":") { found.append(String(userInfo[userInfo.index(after: colon)...])) }
            }
            if let query {
                for part in rest[rest.index(after: query)...].split(separator: "&") where part.lowercased().hasPrefix("password=") {
                    found.append(String(part.dropFirst("password=".count)))
                }
            }
        }
        var rest = Substring(text)
        while let range = rest.range(of: "password", options: .caseInsensitive) {
            rest = rest[range.upperBound...]
            let trimmed = rest.drop(while: { $0 == " " })
            guard trimmed.first == "=" else { continue }
            var value = trimmed.dropFirst().drop(while: { $0 == " " })
            var secret = ""
            if value.first == "'" {
                value = value.dropFirst()
                while let c = value.first, c != "'" {
                    if c == "\\", let next = value.dropFirst().first { secret.append(next); value = value.dropFirst(2) } else { secret.append(c); value = value.dropFirst() }
                }
            } else {
                secret = String(value.prefix(while: { $0 != " " && $0 != "&" }))
            }
            found.append(secret)
        }
        var all: [String] = []
        for secret in found where !secret.isEmpty {
            all.append(secret)
            if let decoded = secret.removingPercentEncoding, decoded != secret { all.append(decoded) }
        }
        return all
    }

    /// Masks `secrets` (and their fragments and long shared runs) in `text`.
    static func redacting(secrets: [String], in text: String) -> String {
        let secrets = secrets.filter { !$0.isEmpty }
        guard !secrets.isEmpty, !text.isEmpty else { return text }
        var needles = Set<String>()
        for secret in secrets {
            if secret.count >= 2 { needles.insert(secret) }
            for fragment in secret.split(whereSeparator: { ":/@?#&=[],; ".contains($0) }) where fragment.count >= 2 {
                needles.insert(String(fragment))
            }
        }
        let characters = Array(text)
        var masked = Array(repeating: false, count: characters.count)
        // Whole secrets and their URI fragments, wherever they occur.
        for needle in needles.sorted(by: { $0.count > $1.count }) {
            let pattern = Array(needle)
            var index = 0
            while index + pattern.count <= characters.count {
                if Array(characters[index..<index + pattern.count]) == pattern {
                    for offset in index..<index + pattern.count { masked[offset] = true }
                    index += pattern.count
                } else {
                    index += 1
                }
            }
        }
        // Inside the quotes libpq puts around the values it repeats, any run of four or more
        // characters that also occurs in a secret (a cut made at a delimiter this code did not
        // foresee). Outside quotes only whole fragments count, so that a password containing
        // "password" does not mask "password authentication failed".
        var quoted = Array(repeating: false, count: characters.count)
        var inside = false
        for (offset, character) in characters.enumerated() {
            if character == "\"" { inside.toggle() } else { quoted[offset] = inside }
        }
        let secretArrays = secrets.map(Array.init)
        var start = 0
        while start < characters.count {
            guard quoted[start] else { start += 1; continue }
            var longest = 0
            for secret in secretArrays {
                for offset in secret.indices {
                    var length = 0
                    while start + length < characters.count, offset + length < secret.count, quoted[start + length],
                          characters[start + length] == secret[offset + length] { length += 1 }
                    longest = max(longest, length)
                }
            }
            if longest >= 4 {
                for offset in start..<start + longest { masked[offset] = true }
                start += longest
            } else {
                start += 1
            }
        }
        guard masked.contains(true) else { return text }
        var result = ""
        var index = 0
        while index < characters.count {
            if masked[index] {
                result += "***"
                while index < characters.count && masked[index] { index += 1 }
            } else {
                result.append(characters[index])
                index += 1
            }
        }
        return result
    }

    /// Replaces the password in a URI (`user:secret@`) or a `password=` keyword with `***`.
    public static func redactingPasswords(in connectionString: String) -> String {
        var text = connectionString
        if let schemeRange = text.range(of: "://") {
            let afterScheme = text[schemeRange.upperBound...]
            let authority = afterScheme[..<(afterScheme.firstIndex(of: "?") ?? afterScheme.endIndex)]
            // Up to the last '@': a password may itself contain '@' or '/'.
            if let at = authority.lastIndex(of: "@") {
                let userInfo = text[schemeRange.upperBound..<at]
                if let colon = userInfo.firstIndex(of: ":") {
                    text.replaceSubrange(text.index(after: colon)..<at, with: "***")
                }
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
