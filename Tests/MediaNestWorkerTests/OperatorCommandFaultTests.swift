import Foundation
import MediaNestDB
import MediaNestTestSupport
import Testing

/// Every operator command meets a bad environment the way `run` does: one line saying what is
/// wrong and what to do, exit 78 (`EX_CONFIG`), never a raw `relation "…" does not exist`.
@Suite("operator commands on a bad environment", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct OperatorCommandFaultTests {
    /// A command's arguments, given a storage root and a scratch directory that exist.
    enum Command: String, CaseIterable, CustomTestStringConvertible {
        case `import`, status, statusWatch, gallery, enqueue, retry, cancel, maintenance

        func arguments(storageRoot: String, scratch: String) throws -> [String] {
            let someID = "00000000-0000-4000-8000-000000000001"
            switch self {
            case .import:
                let file = scratch + "/photo.jpg"
                try Data("not really a photo".utf8).write(to: URL(fileURLWithPath: file))
                return ["import", "--storage-root", storageRoot, "--owner", "someone@example.com", file]
            case .status: return ["status"]
            case .statusWatch: return ["status", "--watch", "--interval", "0.1"]
            case .gallery: return ["gallery", "--storage-root", storageRoot, "--output", scratch + "/gallery"]
            case .enqueue: return ["enqueue", someID]
            case .retry: return ["retry", someID]
            case .cancel: return ["cancel", someID]
            case .maintenance: return ["maintenance", "--log-format", "text"]
            }
        }

        var testDescription: String { self == .statusWatch ? "status --watch" : rawValue }
    }

    @Test("an unmigrated database", arguments: Command.allCases)
    func unmigratedDatabase(_ command: Command) async throws {
        try await TestDatabase.with("unmigrated") { database in
            let storage = try scratchDirectory("root")
            let scratch = try scratchDirectory("scratch")
            let arguments = try command.arguments(storageRoot: storage, scratch: scratch) + ["--database-url", database.connectionString]
            // Bounded: `status --watch` used to retry an unmigrated database for ever.
            let result = try runCLI(arguments, timeout: 30)
            #expect(result.status == 78, "\(arguments): \(result.error)")
            let lines = result.error.split(separator: "\n").filter { !$0.isEmpty }
            #expect(lines.count == 1, "one clear line: \(result.error)")
            #expect(result.error.contains("is not migrated for this worker (schema version 0, needs"), "\(result.error)")
            #expect(result.error.contains("run `medianest-worker migrate up`"), "\(result.error)")
            #expect(!result.error.contains("SQLSTATE"), "\(result.error)")
            // Nothing was done: the storage root is as empty as it was.
            #expect(try FileManager.default.contentsOfDirectory(atPath: storage).isEmpty)
        }
    }

    @Test("a database that does not exist", arguments: [Command.status, .enqueue, .maintenance])
    func missingDatabase(_ command: Command) throws {
        let missing = "mn_missing_\(UUID().uuidString.prefix(8).lowercased())"
        let arguments = try command.arguments(storageRoot: try scratchDirectory("root"), scratch: try scratchDirectory("scratch"))
            + ["--database-url", TestDatabase.adminConfiguration.connectionString + " dbname=\(missing)"]
        let result = try runCLI(arguments)
        #expect(result.status == 78, "\(arguments): \(result.error)")
        #expect(result.error.contains("database \"\(missing)\" does not exist"), "\(result.error)")
        #expect(result.error.contains("Check --database-url (DATABASE_URL)"), "\(result.error)")
    }

    @Test("a storage root that is missing", arguments: [Command.import, .gallery])
    func missingStorageRoot(_ command: Command) async throws {
        try await withMigratedDatabase("noroot") { database, connection, _ in
            let gone = try scratchDirectory("gone") + "/not-mounted"
            let arguments = try command.arguments(storageRoot: gone, scratch: try scratchDirectory("scratch")) + ["--database-url", database.connectionString]
            let result = try runCLI(arguments)
            #expect(result.status == 78, "\(arguments): \(result.error)")
            #expect(result.error.contains("storage root \(gone) cannot be used: No such file or directory. Is the volume mounted?"), "\(result.error)")
            let items = try connection.query("SELECT count(*) AS n FROM media_items")[0].decode("n", as: Int.self)
            #expect(items == 0)
        }
    }

    @Test func galleryRefusesADerivedRootThatIsMissing() async throws {
        try await withMigratedDatabase("noderived") { database, _, _ in
            let storage = try scratchDirectory("root")
            let scratch = try scratchDirectory("scratch")
            let derived = storage + "/thumbs-volume"
            let result = try runCLI(["gallery", "--storage-root", storage, "--derived-root", derived, "--output", scratch + "/gallery",
                                     "--database-url", database.connectionString])
            #expect(result.status == 78, "\(result.error)")
            #expect(result.error.contains("derived root \(derived) cannot be used: No such file or directory"), "\(result.error)")
            #expect(!FileManager.default.fileExists(atPath: scratch + "/gallery"))
        }
    }

    @Test func runRefusesADerivedRootItCouldNotCreate() async throws {
        try await withMigratedDatabase("badderived") { database, _, _ in
            let storage = try scratchDirectory("root")
            // Its parent is missing too: the first job could not create it, so no job could write.
            let derived = storage + "/unmounted/derived"
            let worker = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                           arguments: ["--drain", "--storage-root", storage, "--derived-root", derived], executable: "medianest-worker")
            defer { worker.stop() }
            let status = try await worker.waitForExit(timeout: .seconds(30))
            #expect(status == 78, "\(worker.log)")
            #expect(worker.log.contains("derived root \(derived) cannot be used: No such file or directory"), "\(worker.log)")

            // A derived root that does not exist yet but can be made is fine: the first job makes it.
            let fine = try WorkerProcess(connectionString: database.connectionString, runLog: makeRunLog(),
                                         arguments: ["--drain", "--storage-root", storage, "--derived-root", storage + "/derived"], executable: "medianest-worker")
            defer { fine.stop() }
            #expect(try await fine.waitForExit(timeout: .seconds(30)) == 0, "\(fine.log)")
        }
    }
}
