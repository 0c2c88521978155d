public import Foundation

/// Finds the migrations directory of an installed or development `medianest-worker`.
///
/// The SQL files are not compiled into the binary; they ship next to it. In order:
/// 1. the explicit path (`--migrations-dir`),
/// 2. the environment variable `MEDIANEST_MIGRATIONS_DIR`,
/// 3. next to the executable: `<bindir>/migrations`, then `<bindir>/../share/medianest-worker/migrations`
///    (an installed layout such as `/usr/local/bin` + `/usr/local/share/medianest-worker/migrations`),
/// 4. `migrations/` in a parent of the executable's directory (a development build in
///    `.build/<triple>/debug/` finds the repository's `migrations/`),
/// 5. `migrations/` in the current directory.
///
/// Candidates from 3 to 5 count only if they contain at least one `*.up.sql` file.
public enum MigrationsDirectory {
    /// The environment variable naming the directory.
    public static let environmentVariable = "MEDIANEST_MIGRATIONS_DIR"

    /// Resolves the directory.
    /// - Parameters:
    ///   - explicitPath: A path given on the command line; wins when set and non-empty.
    ///   - environment: The process environment (for ``environmentVariable``).
    ///   - executable: The running executable; defaults to `/proc/self/exe` or `argv[0]`.
    /// - Returns: The directory to load with ``MigrationCatalog/load(from:)``.
    /// - Throws: ``MigrationError`` with code ``MigrationError/Code/directoryNotFound`` listing
    ///   the places searched.
    public static func locate(explicitPath: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              executable: URL? = nil) throws(MigrationError) -> URL {
        if let explicitPath, !explicitPath.isEmpty { return URL(fileURLWithPath: explicitPath) }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty {
            return URL(fileURLWithPath: fromEnvironment)
        }
        var candidates: [URL] = []
        if let binary = (executable ?? currentExecutable())?.resolvingSymlinksInPath() {
            let binDirectory = binary.deletingLastPathComponent()
            candidates.append(binDirectory.appendingPathComponent("migrations"))
            candidates.append(binDirectory.deletingLastPathComponent().appendingPathComponent("share/medianest-worker/migrations"))
            var parent = binDirectory.deletingLastPathComponent()
            for _ in 0..<5 {
                candidates.append(parent.appendingPathComponent("migrations"))
                let up = parent.deletingLastPathComponent()
                if up.path == parent.path { break }
                parent = up
            }
        }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("migrations"))
        for candidate in candidates where containsMigrations(candidate) {
            return candidate.standardizedFileURL
        }
        throw MigrationError(.directoryNotFound, "no migrations directory found; pass --migrations-dir or set \(environmentVariable). Searched: \(candidates.map(\.standardizedFileURL.path).joined(separator: ", "))")
    }

    private static func currentExecutable() -> URL? {
        let procSelf = URL(fileURLWithPath: "/proc/self/exe")
        if FileManager.default.fileExists(atPath: procSelf.path) { return procSelf.resolvingSymlinksInPath() }
        return Bundle.main.executableURL ?? CommandLine.arguments.first.map { URL(fileURLWithPath: $0) }
    }

    private static func containsMigrations(_ directory: URL) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return false }
        return names.contains { $0.hasSuffix(".up.sql") }
    }
}
