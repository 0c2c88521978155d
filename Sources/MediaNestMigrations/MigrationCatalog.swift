public import Foundation

/// The migrations found in a directory, validated and ordered by version.
///
/// File names are `NNNN_name.up.sql` and `NNNN_name.down.sql`: at least four digits, then
/// lower-case letters, digits and underscores. Every version needs both files. Other files
/// (README.md) are ignored, but a `.sql` file with any other name is an error, so a typo cannot
/// make a migration silently disappear. Gaps between versions are allowed (ranges are reserved
/// per module: 0001..0009 for the seed schema, 0010 and up for the job engine).
public struct MigrationCatalog: Sendable {
    /// The directory the migrations were read from.
    public let directory: URL
    /// All migrations, ascending by version.
    public let migrations: [Migration]

    /// Creates a catalog from already-built migrations (tests, embedded SQL).
    /// - Parameters:
    ///   - directory: Where they came from, for messages.
    ///   - migrations: The migrations; they are sorted by version.
    public init(directory: URL, migrations: [Migration]) {
        self.directory = directory
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// The migration with `version`, if any.
    public func migration(version: Int64) -> Migration? {
        migrations.first { $0.version == version }
    }

    /// Reads and validates every migration in `directory`.
    /// - Parameter directory: A directory of `NNNN_name.up.sql` / `.down.sql` files.
    /// - Throws: ``MigrationError`` with code ``MigrationError/Code/directoryNotFound``,
    ///   ``MigrationError/Code/unreadableFile``, ``MigrationError/Code/invalidFileName``,
    ///   ``MigrationError/Code/duplicateVersion``, ``MigrationError/Code/missingPair`` or
    ///   ``MigrationError/Code/transactionControlInFile``, naming the file.
    public static func load(from directory: URL) throws(MigrationError) -> MigrationCatalog {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MigrationError(.directoryNotFound, "migrations directory \(directory.path) does not exist or is not a directory")
        }
        let names: [String]
        do {
            names = try fileManager.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw MigrationError(.unreadableFile, "cannot list migrations directory \(directory.path): \(error)")
        }

        struct Half { var name: String; var file: URL; var data: Data }
        var ups: [Int64: Half] = [:]
        var downs: [Int64: Half] = [:]
        for fileName in names.sorted() where fileName.hasSuffix(".sql") {
            guard let parsed = parseFileName(fileName) else {
                throw MigrationError(.invalidFileName, "\(directory.appendingPathComponent(fileName).path): a migration file must be named NNNN_name.up.sql or NNNN_name.down.sql (at least four digits; name of a-z, 0-9 and _)")
            }
            let file = directory.appendingPathComponent(fileName)
            let data: Data
            do {
                data = try Data(contentsOf: file)
            } catch {
                throw MigrationError(.unreadableFile, "cannot read \(file.path): \(error)")
            }
            let half = Half(name: parsed.name, file: file, data: data)
            if let existing = (parsed.isUp ? ups : downs)[parsed.version] {
                throw MigrationError(.duplicateVersion, "\(existing.file.lastPathComponent) and \(fileName) both claim version \(parsed.version) in \(directory.path); give one of them a new number")
            }
            if parsed.isUp { ups[parsed.version] = half } else { downs[parsed.version] = half }
        }

        var migrations: [Migration] = []
        for version in Set(ups.keys).union(downs.keys).sorted() {
            guard let up = ups[version] else {
                throw MigrationError(.missingPair, "\(downs[version]!.file.path) has no matching .up.sql file")
            }
            guard let down = downs[version] else {
                throw MigrationError(.missingPair, "\(up.file.path) has no matching .down.sql file; every migration must be reversible")
            }
            guard up.name == down.name else {
                throw MigrationError(.missingPair, "\(up.file.lastPathComponent) and \(down.file.lastPathComponent) share version \(version) but not a name")
            }
            let upScript = try script(up.file, up.data)
            let downScript = try script(down.file, down.data)
            migrations.append(Migration(version: version, name: up.name, up: upScript, down: downScript,
                                        checksum: SHA256.hexDigest(of: up.data)))
        }
        return MigrationCatalog(directory: directory, migrations: migrations)
    }

    private static func script(_ file: URL, _ data: Data) throws(MigrationError) -> Migration.Script {
        guard let sql = String(data: data, encoding: .utf8) else {
            throw MigrationError(.unreadableFile, "\(file.path) is not valid UTF-8")
        }
        let script = Migration.Script(file: file, sql: sql)
        if script.runsInTransaction {
            // The runner owns the transaction; a COMMIT in the file would end it early and make
            // the schema_migrations row land separately from the change.
            for statement in script.statements {
                let firstWord = statement.prefix { $0.isLetter }.uppercased()
                let secondWord = statement.dropFirst(firstWord.count).drop { $0.isWhitespace }.prefix { $0.isLetter }.uppercased()
                let isTransactionControl = ["BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT"].contains(firstWord) && secondWord != "ATOMIC"
                    || (firstWord == "START" && secondWord == "TRANSACTION")
                if isTransactionControl {
                    throw MigrationError(.transactionControlInFile, "\(file.path) contains \(firstWord): migrations run in a transaction of their own; remove it, or mark the file with '\(Migration.noTransactionMarker)' as its first line")
                }
            }
        }
        return script
    }

    /// Parses `0007_media_versioning.up.sql`.
    static func parseFileName(_ fileName: String) -> (version: Int64, name: String, isUp: Bool)? {
        let isUp: Bool
        let stem: Substring
        if fileName.hasSuffix(".up.sql") {
            isUp = true
            stem = fileName.dropLast(".up.sql".count)
        } else if fileName.hasSuffix(".down.sql") {
            isUp = false
            stem = fileName.dropLast(".down.sql".count)
        } else {
            return nil
        }
        let digits = stem.prefix { $0.isASCII && $0.isNumber }
        guard digits.count >= 4, stem.dropFirst(digits.count).first == "_" else { return nil }
        let name = stem.dropFirst(digits.count + 1)
        let allowed = name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" }
        guard !name.isEmpty, allowed, let version = Int64(digits), version > 0 else { return nil }
        return (version, String(name), isUp)
    }
}
