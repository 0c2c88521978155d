import Foundation

/// The mermaid `erDiagram` of the seed design document, parsed at test time so the schema is
/// checked against the design and not against the migrations themselves.
struct SeedERD {
    struct Column {
        var type: String
        var name: String
        var keys: Set<String>
        /// The quoted value list ("guest,user,admin") of enum and constrained varchar columns.
        var values: [String]?
    }

    struct Relationship {
        var parent: String
        var child: String
        var label: String
    }

    var tables: [String: [Column]] = [:]
    var relationships: [Relationship] = []

    /// information_schema.columns.data_type for each ERD type.
    static let postgresDataType: [String: String] = [
        "uuid": "uuid", "varchar": "character varying", "text": "text", "jsonb": "jsonb",
        "bigint": "bigint", "integer": "integer", "boolean": "boolean",
        "timestamp": "timestamp with time zone", "inet": "inet", "float": "double precision",
        "enum": "USER-DEFINED",
    ]

    static func load(from file: URL) throws -> SeedERD {
        let document = try String(contentsOf: file, encoding: .utf8)
        guard let start = document.range(of: "```mermaid\nerDiagram") else {
            throw ParseError(message: "no mermaid erDiagram block in \(file.path)")
        }
        let body = document[start.upperBound...]
        let block = body[..<(body.range(of: "```")?.lowerBound ?? body.endIndex)]

        var erd = SeedERD()
        var currentTable: String?
        for rawLine in block.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("%%") { continue }
            if line.hasSuffix("{"), !line.contains("--") {
                currentTable = line.dropLast().trimmingCharacters(in: .whitespaces)
                erd.tables[currentTable!] = []
                continue
            }
            if line == "}" {
                currentTable = nil
                continue
            }
            if let table = currentTable {
                var values: [String]?
                var declaration = Substring(line)
                if let quote = line.firstIndex(of: "\"") {
                    let quoted = line[line.index(after: quote)...].prefix { $0 != "\"" }
                    values = quoted.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    declaration = line[..<quote]
                }
                let tokens = declaration.split(separator: " ").map(String.init)
                guard tokens.count >= 2 else { throw ParseError(message: "cannot parse column line '\(line)'") }
                erd.tables[table]!.append(Column(type: tokens[0], name: tokens[1], keys: Set(tokens.dropFirst(2)), values: values))
                continue
            }
            // users ||--o{ user_sessions : "has"
            let parts = line.split(separator: " ").map(String.init)
            if parts.count >= 5, parts[1].contains("--"), parts[3] == ":" {
                erd.relationships.append(Relationship(parent: parts[0], child: parts[2],
                                                      label: parts[4...].joined(separator: " ").trimmingCharacters(in: CharacterSet(charactersIn: "\""))))
            }
        }
        return erd
    }

    struct ParseError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
