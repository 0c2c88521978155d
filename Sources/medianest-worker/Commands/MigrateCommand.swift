import ArgumentParser
import Foundation
import Logging
import MediaNestDB
import MediaNestMigrations

/// `medianest-worker migrate`: applies, reverts and lists the schema migrations.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply, revert or list the database schema migrations.",
        discussion: """
            Migrations are the NNNN_name.up.sql / .down.sql files in the migrations directory: --migrations-dir, else MEDIANEST_MIGRATIONS_DIR, else migrations/ next to the executable, in ../share/medianest-worker/, in a parent directory of the executable, or in the current directory. Several hosts may run 'migrate' at once: an advisory lock makes each migration apply exactly once.
            """,
        subcommands: [Up.self, Down.self, Status.self],
        defaultSubcommand: Up.self
    )

    /// The options every subcommand shares.
    struct Options: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("libpq connection string or URI (default: $DATABASE_URL; if empty, libpq's PG* variables, ~/.pgpass and service files).", valueName: "url"))
        var databaseURL: String?

        @Option(name: .long, help: ArgumentHelp("Directory of NNNN_name.up.sql/.down.sql files (default: $MEDIANEST_MIGRATIONS_DIR, then next to the executable).", valueName: "path"))
        var migrationsDir: String?

        func makeMigrator() throws -> Migrator {
            let directory = try MigrationsDirectory.locate(explicitPath: migrationsDir)
            let catalog = try MigrationCatalog.load(from: directory)
            // The command prints each step itself; the log adds waits and warnings only.
            var logger = Logger(label: "medianest.migrations")
            logger.logLevel = .notice
            return Migrator(catalog: catalog, logger: logger)
        }

        func connect() throws -> PGConnection {
            let url = databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"] ?? ""
            return try PGConnection.connect(DatabaseConfiguration(connectionString: url, applicationName: "medianest-worker migrate"))
        }
    }

    /// `migrate up`: applies pending migrations.
    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply pending migrations (all, or up to --to VERSION).")

        @OptionGroup var options: Options

        @Option(name: .long, help: ArgumentHelp("Apply pending migrations up to and including this version.", valueName: "version"))
        var to: Int64?

        func run() throws {
            let migrator = try options.makeMigrator()
            let connection = try options.connect()
            let runs = try migrator.migrateUp(on: connection, to: to)
            if runs.isEmpty {
                print("Database schema is up to date (\(migrator.catalog.directory.path)).")
            } else {
                for run in runs { print("applied  \(run.migration.displayName)  (\(formatted(run.duration)))") }
                print("Applied \(runs.count) migration\(runs.count == 1 ? "" : "s").")
            }
        }
    }

    /// `migrate down [N]`: reverts the last N applied migrations.
    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revert the last N applied migrations (default 1).")

        @OptionGroup var options: Options

        @Argument(help: "How many applied migrations to revert, newest first.")
        var steps: Int = 1

        @Flag(name: .long, help: "Revert every applied migration (an empty schema).")
        var all = false

        func validate() throws {
            guard steps >= 1 else { throw ValidationError("N must be at least 1.") }
        }

        func run() throws {
            let migrator = try options.makeMigrator()
            let connection = try options.connect()
            let runs = try migrator.migrateDown(on: connection, steps: all ? Int.max : steps)
            if runs.isEmpty {
                print("No applied migrations to revert.")
            } else {
                for run in runs { print("reverted \(run.migration.displayName)  (\(formatted(run.duration)))") }
                print("Reverted \(runs.count) migration\(runs.count == 1 ? "" : "s").")
            }
        }
    }

    /// `migrate status`: lists every migration and whether it is applied.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List migrations: applied or pending, and whether applied files changed.")

        @OptionGroup var options: Options

        func run() throws {
            let migrator = try options.makeMigrator()
            let connection = try options.connect()
            let status = try migrator.status(on: connection)
            let dateFormatter = ISO8601DateFormatter()
            let rows: [[String]] = status.entries.map { entry in
                let checksum: String = switch entry.state {
                case .applied: "ok"
                case .changed: "changed"
                case .missingFile: "missing-file"
                case .pending: "-"
                }
                return [String(entry.version), entry.name, entry.isApplied ? "yes" : "no",
                        entry.appliedAt.map { dateFormatter.string(from: $0) } ?? "-", checksum]
            }
            printTable(header: ["version", "name", "applied", "applied_at", "checksum"], rows: rows)
            print("Migrations directory: \(migrator.catalog.directory.path)")
            print("\(status.pendingCount) pending.")
            for problem in status.problems {
                let what = problem.state == .changed ? "its file changed after it was applied" : "its file is missing"
                print("WARNING: migration \(problem.version) (\(problem.name)): \(what); 'migrate up' will refuse to run.")
            }
            // Health checks and deploy scripts can rely on the exit status: 2 means the applied
            // schema no longer matches the files.
            if !status.problems.isEmpty { throw ExitCode(2) }
        }
    }
}

private func formatted(_ duration: Duration) -> String {
    let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    return "\(milliseconds) ms"
}

private func printTable(header: [String], rows: [[String]]) {
    let widths = header.indices.map { column in
        ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { column, cell in
            cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    print(line(header))
    print(line(widths.map { String(repeating: "-", count: $0) }))
    rows.forEach { print(line($0)) }
}
