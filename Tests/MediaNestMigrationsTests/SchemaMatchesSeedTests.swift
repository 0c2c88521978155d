import Foundation
import MediaNestDB
import MediaNestMigrations
import MediaNestTestSupport
import Testing

@Suite("Schema matches the seed ERD", .enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"),
       .timeLimit(.minutes(2)))
struct SchemaMatchesSeedTests {
    @Test func seedERDParsesIntoFifteenTables() throws {
        let erd = try SeedERD.load(from: seedDocument)
        #expect(erd.tables.count == 15)
        #expect(erd.tables["media_items"]?.contains { $0.name == "parent_id" && $0.keys.contains("FK") } == true)
        #expect(erd.relationships.count == 17)
    }

    @Test func everyERDTableAndColumnExistsWithItsType() throws {
        let erd = try SeedERD.load(from: seedDocument)
        let (database, connection) = try migratedDatabase("columns")
        defer { database.drop() }
        for (table, columns) in erd.tables {
            let rows = try connection.query("""
                SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                """, [table])
            let actual = Dictionary(uniqueKeysWithValues: try rows.map { row in
                (try row.decode("name", as: String.self), try row.decode("type", as: String.self))
            })
            #expect(!actual.isEmpty, "table \(table) does not exist")
            for column in columns {
                let expected = try #require(SeedERD.postgresDataType[column.type], "unknown ERD type \(column.type)")
                #expect(actual[column.name] == expected, "\(table).\(column.name): expected \(expected), found \(actual[column.name] ?? "no column")")
            }
        }
    }

    @Test func everyERDValueListIsAnEnumOrACheckConstraint() throws {
        let erd = try SeedERD.load(from: seedDocument)
        let (database, connection) = try migratedDatabase("values")
        defer { database.drop() }
        for (table, columns) in erd.tables {
            for column in columns {
                guard let expected = column.values else { continue }
                if column.type == "enum" {
                    let labels = try connection.column("""
                        SELECT e.enumlabel::text FROM pg_attribute a JOIN pg_enum e ON e.enumtypid = a.atttypid
                         WHERE a.attrelid = $1::regclass AND a.attname = $2 ORDER BY e.enumsortorder
                        """, [table, column.name])
                    #expect(labels == expected, "\(table).\(column.name): enum labels \(labels), ERD says \(expected)")
                } else {
                    let definitions = try connection.column("""
                        SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                         WHERE c.conrelid = $1::regclass AND c.contype = 'c' AND a.attname = $2
                        """, [table, column.name])
                    let lists = definitions.map(quotedLiterals)
                    #expect(lists.contains(expected), "\(table).\(column.name): no CHECK allows exactly \(expected); found \(definitions)")
                }
            }
        }
    }

    @Test func primaryAndUniqueKeysOfTheERDExist() throws {
        let erd = try SeedERD.load(from: seedDocument)
        let (database, connection) = try migratedDatabase("keys")
        defer { database.drop() }
        for (table, columns) in erd.tables {
            let primaryKey = try connection.column("""
                SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = $1::regclass AND i.indisprimary
                """, [table])
            for column in columns where column.keys.contains("PK") {
                #expect(primaryKey.contains(column.name), "\(table).\(column.name) is not in the primary key \(primaryKey)")
            }
            for column in columns where column.keys.contains("UK") {
                let uniqueIndexes = try connection.scalar("""
                    SELECT count(*) FROM pg_index i
                     WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL
                       AND i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)
                    """, [table, column.name])
                #expect(uniqueIndexes != "0", "\(table).\(column.name) has no unique constraint")
            }
        }
    }

    @Test func everyERDRelationshipIsAForeignKey() throws {
        let erd = try SeedERD.load(from: seedDocument)
        let (database, connection) = try migratedDatabase("fks")
        defer { database.drop() }
        var expectedCount: [String: Int] = [:]
        for relationship in erd.relationships { expectedCount["\(relationship.parent)->\(relationship.child)", default: 0] += 1 }
        for (pair, expected) in expectedCount {
            let tables = pair.components(separatedBy: "->")
            let found = Int(try connection.scalar("""
                SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::regclass AND conrelid = $2::regclass
                """, [tables[0], tables[1]]) ?? "0") ?? 0
            #expect(found >= expected, "\(tables[1]) has \(found) foreign keys to \(tables[0]); the ERD draws \(expected)")
        }
        for (table, columns) in erd.tables {
            for column in columns where column.keys.contains("FK") {
                let inForeignKey = try connection.scalar("""
                    SELECT count(*) FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                     WHERE c.contype = 'f' AND c.conrelid = $1::regclass AND a.attname = $2
                    """, [table, column.name])
                #expect(inForeignKey != "0", "\(table).\(column.name) is marked FK in the ERD but has no foreign key")
            }
        }
    }

    @Test func seedIndexesExistAndAreValid() throws {
        let (database, connection) = try migratedDatabase("indexes")
        defer { database.drop() }
        let seed = try String(contentsOf: seedDocument, encoding: .utf8)
        let names = seed.components(separatedBy: "CREATE INDEX CONCURRENTLY ").dropFirst()
            .map { String($0.prefix { !$0.isWhitespace }) }
        #expect(names.count == 9)
        for name in names {
            let valid = try connection.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass($1)", [name])
            #expect(valid == "true", "index \(name): \(valid ?? "missing")")
        }
        // Partial indexes keep the seed's predicates.
        let pending = try connection.scalar("SELECT pg_get_indexdef('idx_processing_jobs_pending'::regclass)") ?? ""
        #expect(pending.contains("WHERE") && pending.contains("pending") && pending.contains("running"))
        // The full-text index answers a search that repeats its expression.
        try connection.execute("INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000a1', 'search@example.org')")
        try connection.execute("""
            INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path, description, tags)
            VALUES ('00000000-0000-0000-0000-0000000000a1', 'x.jpg', 'holiday.jpg', 'image/jpeg', '/x', 'Sunset at the beach', '["summer"]')
            """)
        let hits = try connection.scalar("""
            SELECT count(*) FROM media_items WHERE to_tsvector('english', coalesce(original_filename, '') || ' ' ||
                coalesce(description, '') || ' ' || coalesce(tags::text, '')) @@ websearch_to_tsquery('english', 'beach summer')
            """)
        #expect(hits == "1")
    }
}

/// The single-quoted literals of a constraint definition, in order.
private func quotedLiterals(_ definition: String) -> [String] {
    definition.split(separator: "'", omittingEmptySubsequences: false).enumerated()
        .filter { $0.offset % 2 == 1 }.map { String($0.element) }
}
