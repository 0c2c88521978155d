import Foundation
import MediaNestMigrations
import MediaNestTestSupport
import Testing

@Suite("Migration files and statement splitting")
struct MigrationCatalogTests {
    @Test func projectMigrationsLoadInOrderWithPairs() throws {
        let catalog = try MigrationCatalog.load(from: migrationsDirectory)
        let versions = catalog.migrations.map(\.version)
        // 0001..0009 are the seed schema; later migrations (the job engine's 0010, ...) follow in order.
        #expect(Array(versions.prefix(9)) == Array(1...9))
        #expect(versions == versions.sorted() && Set(versions).count == versions.count)
        #expect(catalog.migrations.allSatisfy { $0.checksum.count == 64 })
        let outside = catalog.migrations.filter { !$0.up.runsInTransaction }.map(\.displayName)
        #expect(outside == ["0007_media_versioning_index", "0008_query_indexes", "0014_duplicates", "0015_live_photo_index", "0016_duplicates_fast_and_fresh"])
    }

    @Test func checksumIsSHA256OfTheUpFile() throws {
        let directory = try scratchDirectory(["0001_a.up.sql": "abc", "0001_a.down.sql": ""])
        defer { try? FileManager.default.removeItem(at: directory) }
        let migration = try #require(try MigrationCatalog.load(from: directory).migrations.first)
        #expect(migration.checksum == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test(arguments: [
        (["0001_a.up.sql": "", "0001_a.down.sql": "", "0001_b.up.sql": "", "0001_b.down.sql": ""], MigrationError.Code.duplicateVersion),
        (["0001_a.up.sql": ""], MigrationError.Code.missingPair),
        (["0001_a.down.sql": ""], MigrationError.Code.missingPair),
        (["1_a.up.sql": "", "1_a.down.sql": ""], MigrationError.Code.invalidFileName),
        (["0001-a.up.sql": ""], MigrationError.Code.invalidFileName),
        (["0001_a.up.sql": "BEGIN;\nCREATE TABLE t ();\nCOMMIT;", "0001_a.down.sql": ""], MigrationError.Code.transactionControlInFile),
    ])
    func invalidDirectoriesAreRejected(files: [String: String], expected: MigrationError.Code) throws {
        let directory = try scratchDirectory(files)
        defer { try? FileManager.default.removeItem(at: directory) }
        let error = try #require(throws: MigrationError.self) { try MigrationCatalog.load(from: directory) }
        #expect(error.code == expected)
    }

    @Test func otherFilesAreIgnoredAndMissingDirectoryIsReported() throws {
        let directory = try scratchDirectory(["README.md": "notes", "0002_b.up.sql": "", "0002_b.down.sql": ""])
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try MigrationCatalog.load(from: directory).migrations.map(\.name) == ["b"])
        let missing = try #require(throws: MigrationError.self) {
            try MigrationCatalog.load(from: directory.appendingPathComponent("nope"))
        }
        #expect(missing.code == .directoryNotFound)
    }

    @Test func directoryIsFoundFromOptionEnvironmentOrExecutable() throws {
        #expect(try MigrationsDirectory.locate(explicitPath: "/x/y", environment: [:]).path == "/x/y")
        #expect(try MigrationsDirectory.locate(environment: ["MEDIANEST_MIGRATIONS_DIR": "/from/env"]).path == "/from/env")
        let fakeBinary = repositoryRoot.appendingPathComponent(".build/x86_64-unknown-linux-gnu/debug/medianest-worker")
        #expect(try MigrationsDirectory.locate(environment: [:], executable: fakeBinary).standardizedFileURL.path == migrationsDirectory.standardizedFileURL.path)
    }

    @Test func splitterRespectsQuotesCommentsAndDollarQuotes() {
        let script = """
            -- medianest:no-transaction
            -- a comment; with a semicolon
            CREATE INDEX CONCURRENTLY a ON t (x);
            SELECT 'it''s; fine', E'back\\'slash;', "odd;name" FROM t; /* block; /* nested; */ still; */
            DO $body$ BEGIN PERFORM 1; END $body$;
            CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
            SELECT $1, a$b FROM t;
            ;;
            -- trailing comment only
            """
        let statements = SQLStatementSplitter.statements(in: script)
        #expect(statements.count == 5)
        #expect(statements[0].hasSuffix("CREATE INDEX CONCURRENTLY a ON t (x)"))
        #expect(statements[1] == #"SELECT 'it''s; fine', E'back\'slash;', "odd;name" FROM t"#)
        #expect(statements[2].hasSuffix("DO $body$ BEGIN PERFORM 1; END $body$"))
        #expect(statements[3] == "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$")
        #expect(statements[4] == "SELECT $1, a$b FROM t")
    }

    private func scratchDirectory(_ files: [String: String]) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-catalog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, text) in files {
            try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return directory
    }
}
