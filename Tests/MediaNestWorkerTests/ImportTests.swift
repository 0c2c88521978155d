import Foundation
import MediaNestDB
import MediaNestMedia
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// A scratch directory with a source folder and a storage root, removed afterwards.
final class ImportScratch {
    let base: String
    var source: String { base + "/source" }
    var storage: String { base + "/storage" }

    init() throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-import-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: base + "/source", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/storage", withIntermediateDirectories: true)
        // Readable by the unprivileged user the permission test runs as.
        chmod(base, 0o755)
        chmod(base + "/source", 0o755)
        chmod(base + "/storage", 0o777)
    }

    deinit { try? FileManager.default.removeItem(atPath: base) }

    /// Writes `bytes` to `source/<relative>`, creating directories.
    @discardableResult
    func write(_ relative: String, _ bytes: [UInt8]) throws -> String {
        let path = source + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o644)
        return path
    }

    /// Copies a corpus file into the source folder under `relative`.
    func add(_ fixture: String, from fixtures: MediaFixtures, as relative: String) throws {
        try write(relative, Array(try Data(contentsOf: URL(fileURLWithPath: fixtures.path(fixture)))))
    }
}

/// Runs `medianest-worker import`, optionally as the unprivileged `nobody` (for permission tests
/// when the suite runs as root, which reads every file).
func runImport(_ arguments: [String], database: TestDatabase, storage: String, asNobody: Bool = false) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    let worker = binDirectory.appendingPathComponent("medianest-worker").path
    let full = ["import", "--storage-root", storage, "--database-url", database.connectionString] + arguments
    if asNobody {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", worker] + full
    } else {
        process.executableURL = URL(fileURLWithPath: worker)
        process.arguments = full
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let error = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output, error)
}

private func inode(_ path: String) -> UInt64? {
    var info = stat()
    return lstat(path, &info) == 0 ? UInt64(info.st_ino) : nil
}

private struct ImportedRow {
    var id: String
    var filename: String
    var original: String
    var mime: String
    var size: Int64
    var path: String
    var sha256: String
    var md5: String
    var status: String
}

private func importedRows(on connection: PGConnection) throws -> [ImportedRow] {
    try connection.query("""
        SELECT id::text AS id, filename, original_filename, mime_type, file_size, storage_path, checksum_sha256, checksum_md5, status::text AS status
          FROM media_items ORDER BY original_filename
        """).map { row in
        ImportedRow(id: try row.decode("id"), filename: try row.decode("filename"), original: try row.decode("original_filename"),
                    mime: try row.decode("mime_type"), size: try row.decode("file_size"), path: try row.decode("storage_path"),
                    sha256: try row.decode("checksum_sha256"), md5: try row.decode("checksum_md5"), status: try row.decode("status"))
    }
}

@Suite("import", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(3)))
struct ImportTests {
    @Test func hardLinksCreatesRowsAndJobsAndASecondImportAddsNothing() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "2024/holiday.jpg")
        try scratch.add(MediaFixtures.Name.plainMP4, from: fixtures, as: "2024/clip.mp4")
        try scratch.add(MediaFixtures.Name.taggedMP3, from: fixtures, as: "music/song.mp3")
        // The same picture under a second name: one item, the other counted as already there.
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "2024/holiday copy.jpg")
        try await withMigratedDatabase("importlink") { database, connection, _ in
            let first = try runImport(["--owner", "Alice@Example.org", scratch.source], database: database, storage: scratch.storage)
            #expect(first.status == 0, "\(first.error)")
            #expect(first.output.contains("Imported 3 files"), "\(first.output)")
            #expect(first.output.contains("1 file already in the library"), "\(first.output)")
            #expect(first.output.contains("3 hard-linked"), "\(first.output)")

            let rows = try importedRows(on: connection)
            #expect(rows.map(\.original).sorted() == ["clip.mp4", "holiday copy.jpg", "song.mp3"] || rows.map(\.original).sorted() == ["clip.mp4", "holiday.jpg", "song.mp3"])
            #expect(Set(rows.map(\.mime)) == ["image/jpeg", "video/mp4", "audio/mpeg"])
            let owner = try connection.query("SELECT DISTINCT u.email FROM media_items m JOIN users u ON u.id = m.owner_id")
            #expect(owner.count == 1)
            #expect(try owner[0].decode("email", as: String.self) == "Alice@Example.org")
            for row in rows {
                #expect(row.status == "processing")
                #expect(row.path.hasPrefix("imports/"))
                #expect(row.path.contains(String(row.sha256.prefix(16))))
                // The stored file is the source's inode, opens through SafeFile (no links, relative),
                // and hashes to what the row says: the metadata job will agree.
                let file = try SafeFile.open(relativePath: row.path, in: scratch.storage)
                let sums = try Checksummer.compute(file)
                #expect(sums.sha256 == row.sha256)
                #expect(sums.md5 == row.md5)
                #expect(file.size == row.size)
            }
            let clip = try #require(rows.first { $0.original == "clip.mp4" })
            #expect(inode(scratch.storage + "/" + clip.path) == inode(scratch.source + "/2024/clip.mp4"))

            let jobs = try connection.query("""
                SELECT m.mime_type, array_agg(j.job_type::text ORDER BY j.job_type) AS types FROM processing_jobs j
                  JOIN media_items m ON m.id = j.media_item_id WHERE j.status = 'pending' GROUP BY 1 ORDER BY 1
                """).map { (try $0.decode("mime_type", as: String.self), try $0.decode("types", as: [String].self)) }
            #expect(jobs.map(\.0) == ["audio/mpeg", "image/jpeg", "video/mp4"])
            #expect(jobs.map(\.1) == [["metadata", "thumbnail"], ["metadata", "preview", "thumbnail"], ["metadata", "preview", "thumbnail", "transcode"]])

            let second = try runImport(["--owner", "alice@example.org", scratch.source], database: database, storage: scratch.storage)
            #expect(second.status == 0, "\(second.error)")
            #expect(second.output.contains("Nothing new: all 4 files found are already in"), "\(second.output)")
            #expect(try connection.query("SELECT count(*)::int AS n FROM media_items")[0].decode("n", as: Int.self) == 3)
            #expect(try connection.query("SELECT count(*)::int AS n FROM processing_jobs")[0].decode("n", as: Int.self) == 9)
            #expect(try connection.query("SELECT count(*)::int AS n FROM users")[0].decode("n", as: Int.self) == 2)  // the fixture user and Alice
            // Nothing is left behind in the staging directory.
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.storage + "/imports/.staging").isEmpty)
        }
    }

    @Test func copyMakesIndependentFiles() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "photo.jpg")
        try await withMigratedDatabase("importcopy") { database, connection, _ in
            let result = try runImport(["--copy", "--owner", "bob@example.org", scratch.source], database: database, storage: scratch.storage)
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("1 copied"), "\(result.output)")
            let row = try #require(try importedRows(on: connection).first)
            let stored = scratch.storage + "/" + row.path
            #expect(inode(stored) != inode(scratch.source + "/photo.jpg"))
            #expect(FileManager.default.contentsEqual(atPath: stored, andPath: scratch.source + "/photo.jpg"))
        }
    }

    /// /dev/shm is a tmpfs, so a source there is on another file system than the scratch storage.
    @Test(.enabled(if: ImportTests.shmIsAnotherFileSystem, "needs /dev/shm on another file system than the temporary directory"))
    func anotherFileSystemIsCopiedByDefaultAndRefusedWithLink() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        let source = "/dev/shm/medianest-import-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: source) }
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainJPEG), toPath: source + "/photo.jpg")
        try await withMigratedDatabase("importxdev") { database, connection, _ in
            let linkOnly = try runImport(["--link", "--owner", "erin@example.org", source], database: database, storage: scratch.storage)
            #expect(linkOnly.status == 0, "\(linkOnly.error)")
            #expect(linkOnly.output.contains("photo.jpg: on another file system than the storage root"), "\(linkOnly.output)")
            #expect(try importedRows(on: connection).isEmpty)
            let auto = try runImport(["--owner", "erin@example.org", source], database: database, storage: scratch.storage)
            #expect(auto.output.contains("Imported 1 file (") && auto.output.contains("1 copied"), "\(auto.output)")
            #expect(try importedRows(on: connection).count == 1)
        }
    }

    static var shmIsAnotherFileSystem: Bool {
        var shm = stat(), temporary = stat()
        return stat("/dev/shm", &shm) == 0 && stat(FileManager.default.temporaryDirectory.path, &temporary) == 0 && shm.st_dev != temporary.st_dev
    }

    @Test func hostileNamesAreImportedUnderSafeStorageNames() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        let jpeg = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG))))
        let names = ["Ünïcødé 写真 🎞.jpg", "with  spaces .jpg", "new\nline.jpg", String(repeating: "ł", count: 120) + ".jpg", "-rf.jpg"]
        for (index, name) in names.enumerated() {
            // Distinct content per name, or they would be one item.
            try scratch.write("odd/" + name, jpeg + [UInt8(index)])
        }
        try await withMigratedDatabase("importnames") { database, connection, _ in
            let result = try runImport(["--owner", "carol@example.org", scratch.source], database: database, storage: scratch.storage)
            #expect(result.status == 0, "\(result.error)")
            let rows = try importedRows(on: connection)
            #expect(Set(rows.map(\.original)) == Set(names))
            for row in rows {
                #expect(!row.filename.contains("\n"))
                #expect(!row.filename.hasPrefix("-"))
                #expect(row.filename.utf8.count <= ImportNaming.maxNameBytes)
                #expect(row.filename.hasSuffix(".jpg"))
                #expect(row.mime == "image/jpeg")
                _ = try SafeFile.open(relativePath: row.path, in: scratch.storage)
            }
            #expect(rows.contains { $0.filename == "Ünïcødé 写真 🎞.jpg" })
            #expect(rows.contains { $0.filename == "new_line.jpg" })
        }
    }

    @Test func loopsSpecialFilesAndUnreadableFilesAreListedAndTheRestImported() async throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try ImportScratch()
        try scratch.add(MediaFixtures.Name.plainJPEG, from: fixtures, as: "a/good.jpg")
        try scratch.add(MediaFixtures.Name.taggedMP3, from: fixtures, as: "a/b/secret.mp3")
        chmod(scratch.source + "/a/b/secret.mp3", 0o000)
        #expect(symlink("../..", scratch.source + "/a/b/up") == 0)       // a loop back to the top
        #expect(symlink("self", scratch.source + "/a/self") == 0)        // resolves to itself: ELOOP
        #expect(symlink("missing.jpg", scratch.source + "/a/dangling.jpg") == 0)
        #expect(mkfifo(scratch.source + "/a/pipe.mp4", 0o644) == 0)
        try scratch.write("a/notes.txt", Array("not a photo\n".utf8))
        try scratch.write("a/.DS_Store", [1, 2, 3])
        try await withMigratedDatabase("importodd") { database, connection, _ in
            try connection.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC")
            let asNobody = getuid() == 0
            let result = try runImport(["--owner", "dave@example.org", scratch.source], database: database, storage: scratch.storage, asNobody: asNobody)
            #expect(result.status == 0, "\(result.error)")
            let output = result.output
            #expect(output.contains("Imported 1 file"), "\(output)")
            #expect(output.contains("1 hidden file"), "\(output)")
            #expect(output.contains("a/b/up: symbolic link loop"), "\(output)")
            #expect(output.contains("a/self: symbolic link loop"), "\(output)")
            #expect(output.contains("a/dangling.jpg: broken symbolic link"), "\(output)")
            #expect(output.contains("a/pipe.mp4: a FIFO"), "\(output)")
            #expect(output.contains("a/notes.txt: not a photo, video or song"), "\(output)")
            #expect(output.contains("a/b/secret.mp3: cannot be read: permission denied"), "\(output)")
            #expect(try importedRows(on: connection).map(\.original) == ["good.jpg"])
        }
    }

    @Test func sanitisedNamesKeepTheExtensionAndFitTheLimit() {
        #expect(ImportNaming.sanitised("a/b\\c.jpg") == "a_b_c.jpg")
        #expect(ImportNaming.sanitised(".hidden.png") == "_hidden.png")
        #expect(ImportNaming.sanitised("   ") == "file")
        let long = ImportNaming.sanitised(String(repeating: "é", count: 300) + ".mov")
        #expect(long.hasSuffix(".mov"))
        #expect(long.utf8.count <= ImportNaming.maxNameBytes)
        #expect(ImportNaming.sanitised("tab\there\u{202E}.jpg") == "tab_here_.jpg")
    }

    @Test func progressLineHasRateAndETA() {
        let line = ProgressLine.render(done: 250, total: 1000, bytes: 2_500_000, totalBytes: 10_000_000, elapsed: 5, width: 20)
        #expect(line.hasPrefix("[█████···············]"))
        #expect(line.contains("250/1000 files (25%)"))
        #expect(line.contains("50 files/s"))
        #expect(line.contains("ETA 15s"))
        let plain = ProgressLine.render(done: 1000, total: 1000, bytes: 10_000_000, totalBytes: 10_000_000, elapsed: 65, width: 0)
        #expect(!plain.contains("["))
        #expect(plain.contains("in 1m05s"))
    }
}
