import Foundation
public import MediaNestDB
import MediaNestCore
import MediaNestMedia

/// How `import` places a file in the storage root.
public enum ImportMode: String, Sendable {
    /// Hard-link when the source is on the storage root's file system, else copy (the default).
    case auto
    /// Hard-link only; a file on another file system is reported, not copied.
    case link
    /// Always copy.
    case copy
}

/// What an import did.
public struct ImportReport: Sendable {
    /// The owner's `users.id`.
    public var ownerID: String
    /// Regular files found.
    public var found = 0
    /// New media items created.
    public var imported = 0
    /// Files whose content the owner's library already holds (same SHA-256): nothing added.
    public var alreadyInLibrary = 0
    /// Of the imported files, how many were hard-linked.
    public var linked = 0
    /// Of the imported files, how many were copied.
    public var copied = 0
    /// Bytes of the imported files.
    public var bytes: Int64 = 0
    /// Processing jobs created by `enqueue_media_processing`.
    public var jobs = 0
    /// Hidden files and directories left out (names starting with `.`).
    public var hiddenSkipped = 0
    /// Everything that could not be imported, with the reason.
    public var skipped: [ImportSkip] = []
}

/// An import that could not start at all (the storage root or the database is unusable).
public struct ImportError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, for a person.
    public var message: String
    /// The message.
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// Brings existing files into a MediaNest library: the engine of `medianest-worker import`.
///
/// For each regular file found under the given paths:
/// 1. it is hard-linked (or copied) to `imports/.staging/<unique>` under the storage root;
/// 2. the staged file is opened with ``SafeFile`` and hashed with ``Checksummer`` and sniffed with
///    ``MimeSniffer``, so the recorded checksums and MIME type describe exactly the stored bytes
///    (the metadata job later computes the same SHA-256);
/// 3. content the owner already has (same SHA-256) is dropped; otherwise the staged file is
///    linked to its final place, `imports/<owner id>/<sha256[0..2]>/<sha256[0..16]>-<name>`, and
///    the staging name removed;
/// 4. every ``batchSize`` files, the file system is synced and one transaction inserts the batch's
///    `media_items` rows and calls `enqueue_media_processing` for each.
///
/// Two imports of one owner running at once both read the library before either inserts. The
/// unique index `media_items_one_import_per_content` (migration 0014: owner, SHA-256, for items
/// under `imports/`) decides: the insert is `ON CONFLICT DO NOTHING`, so the second import's row
/// waits for the first one's transaction and is then not added; its file is removed (unless it
/// is the very path the first import's row points at) and it counts as already in the library.
///
/// A crash between 3 and 4 leaves a file in place with no row; the next import finds the same
/// path, checks it holds the same bytes and uses it.
public struct LibraryImporter: Sendable {
    /// Absolute storage root.
    public var storageRoot: String
    /// The owner's e-mail.
    public var ownerEmail: String
    /// Link or copy.
    public var mode: ImportMode
    /// Files per transaction.
    public var batchSize = 500
    /// Files hashed at once.
    public var parallelism = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))

    /// Creates an importer.
    /// - Parameters:
    ///   - storageRoot: Absolute path of the storage root (created if missing).
    ///   - ownerEmail: The owner's e-mail; the user is created if there is none.
    ///   - mode: Link or copy.
    public init(storageRoot: String, ownerEmail: String, mode: ImportMode) {
        self.storageRoot = storageRoot
        self.ownerEmail = ownerEmail
        self.mode = mode
    }

    /// Progress: files processed so far, files in total, bytes processed so far, bytes in total.
    public typealias Progress = @Sendable (_ done: Int, _ total: Int, _ bytes: Int64, _ totalBytes: Int64) -> Void

    /// Imports `paths` (files or directories).
    /// - Parameters:
    ///   - paths: What to import.
    ///   - connection: The database.
    ///   - progress: Called after each file (from the importing threads, serialised).
    /// - Returns: What happened.
    /// - Throws: ``ImportError`` or ``DatabaseError`` when the import cannot go on at all; a bad
    ///   file is never thrown, it is listed in ``ImportReport/skipped``.
    public func run(paths: [String], on connection: PGConnection, progress: Progress? = nil) throws -> ImportReport {
        guard storageRoot.hasPrefix("/") else { throw ImportError("The storage root must be an absolute path (got \(storageRoot)).") }
        let staging = "imports/.staging"
        do {
            try FileManager.default.createDirectory(atPath: storageRoot + "/" + staging, withIntermediateDirectories: true)
        } catch {
            throw ImportError("The storage root \(storageRoot) is not writable: \(error.localizedDescription)")
        }
        let storageDevice = Self.device(of: storageRoot)

        let ownerID = try ensureOwner(on: connection)
        var report = ImportReport(ownerID: ownerID)

        var walker = ImportWalker(storageRoot: storageRoot)
        for path in paths { walker.walk(argument: path) }
        report.found = walker.files.count
        report.hiddenSkipped = walker.hiddenSkipped
        report.skipped = walker.skipped

        var known = Set(try connection.query(
            "SELECT checksum_sha256 FROM media_items WHERE owner_id = $1::uuid AND checksum_sha256 IS NOT NULL", [ownerID]
        ).map { row throws(DatabaseError) in try row.decode("checksum_sha256", as: String.self) })

        let totalBytes = walker.files.reduce(Int64(0)) { $0 + $1.size }
        let counter = ProgressCounter(total: walker.files.count, totalBytes: totalBytes, progress: progress)
        let context = PlacementContext(storageRoot: storageRoot, staging: staging, ownerID: ownerID, mode: mode,
                                       storageDevice: storageDevice, token: "\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        var createdDirectories = Set<String>()
        let inserter = DispatchQueue(label: "medianest.import.insert")
        let inserting = DispatchGroup()
        let inserts = InsertResults()
        var start = 0
        while start < walker.files.count {
            let batchStart = start
            let batch = Array(walker.files[start..<min(start + batchSize, walker.files.count)])
            let outcomes = OutcomeSlots(count: batch.count)
            let parallel = parallelism
            DispatchQueue.concurrentPerform(iterations: parallel) { lane in
                var index = lane
                while index < batch.count {
                    outcomes.set(index, context.stage(batch[index], slot: batchStart + index))
                    counter.advance(bytes: batch[index].size)
                    index += parallel
                }
            }
            var rows: [StagedFile] = []
            for (index, outcome) in outcomes.values.enumerated() {
                switch outcome {
                case .failed(let reason):
                    report.skipped.append(ImportSkip(path: batch[index].displayPath, reason: reason))
                case .staged(let staged):
                    if known.contains(staged.sha256) {
                        context.discard(staged)
                        report.alreadyInLibrary += 1
                        continue
                    }
                    switch context.place(staged, created: &createdDirectories) {
                    case .success(let placed):
                        known.insert(placed.sha256)
                        rows.append(placed)
                    case .failure(let skip):
                        report.skipped.append(ImportSkip(path: batch[index].displayPath, reason: skip.reason))
                    }
                case nil:
                    report.skipped.append(ImportSkip(path: batch[index].displayPath, reason: "internal error: no result"))
                }
            }
            if let error = inserts.error { throw error }
            if !rows.isEmpty {
                // The batch is written while the next one is hashed: one serial queue keeps the
                // batches in order and the connection on one thread at a time.
                let batchRows = rows
                inserter.async(group: inserting) {
                    guard inserts.error == nil else { return }
                    do {
                        // The rows must never point at bytes a power cut could still take away.
                        context.syncStorage()
                        let (jobs, lost, orphaned) = try insert(batchRows, ownerID: ownerID, on: connection)
                        inserts.add(jobs, lost: lost)
                        for file in orphaned { context.removePlaced(file) }
                    } catch {
                        inserts.fail(error)
                    }
                }
                report.imported += rows.count
                report.linked += rows.filter(\.linked).count
                report.copied += rows.filter { !$0.linked }.count
                report.bytes += rows.reduce(Int64(0)) { $0 + $1.size }
            }
            start += batch.count
        }
        inserting.wait()
        if let error = inserts.error { throw error }
        report.jobs = inserts.jobs
        // Files another import added first, while this one was hashing them.
        for lost in inserts.lost {
            report.imported -= 1
            report.alreadyInLibrary += 1
            if lost.linked { report.linked -= 1 } else { report.copied -= 1 }
            report.bytes -= lost.size
        }
        return report
    }

    private func ensureOwner(on connection: PGConnection) throws -> String {
        let email = ownerEmail.trimmingCharacters(in: .whitespacesAndNewlines)
        guard email.contains("@"), !email.contains(where: \.isWhitespace) else {
            throw ImportError("The owner \"\(ownerEmail.escapingControlCharacters())\" is not an e-mail address.")
        }
        let local = String(email.prefix { $0 != "@" })
        // ON CONFLICT without a target also covers the case-insensitive unique index on lower(email).
        try connection.execute("""
            INSERT INTO users (email, first_name, email_verified) VALUES ($1, $2, false) ON CONFLICT DO NOTHING
            """, [email, String(local.prefix(255))])
        guard let row = try connection.query("SELECT id::text AS id FROM users WHERE lower(email) = lower($1)", [email]).first else {
            throw ImportError("The owner \(email) could not be created.")
        }
        return try row.decode("id", as: String.self)
    }

    /// Inserts a batch's rows and enqueues their jobs, in one transaction.
    /// - Returns: The jobs created; the files whose content another import added first (no row
    ///   was inserted for them); and of those, the ones no row points at (to remove).
    private func insert(_ rows: [StagedFile], ownerID: String, on connection: PGConnection) throws
        -> (jobs: Int, lost: [StagedFile], orphaned: [StagedFile]) {
        try connection.transaction { connection in
            let inserted = try connection.query("""
                WITH inserted AS (
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path,
                                             checksum_md5, checksum_sha256, status)
                    -- 'processing' at once: the jobs are enqueued in this transaction, and
                    -- enqueue_media_processing then has no row to update (half the write work).
                    SELECT $1::uuid, u.filename, u.original, u.mime, u.size::bigint, u.path, u.md5, u.sha256, 'processing'
                      FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                           WITH ORDINALITY AS u(filename, original, mime, size, path, md5, sha256, n)
                     ORDER BY u.n
                    -- One imported item per content and owner (migration 0014): a concurrent
                    -- import that inserted this content first wins; this row waits for its
                    -- transaction, then is skipped.
                    ON CONFLICT (owner_id, checksum_sha256) WHERE storage_path LIKE 'imports/%' AND NOT (metadata ? 'duplicate_of')
                    DO NOTHING
                    RETURNING id, checksum_sha256
                )
                SELECT coalesce(array_agg(id::text), '{}') AS ids, coalesce(array_agg(checksum_sha256), '{}') AS sums FROM inserted
                """, [ownerID, rows.map(\.filename), rows.map(\.originalFilename), rows.map(\.mimeType), rows.map { String($0.size) },
                      rows.map(\.storagePath), rows.map(\.md5), rows.map(\.sha256)])[0]
            let ids = try inserted.decode("ids", as: [String].self)
            let added = Set(try inserted.decode("sums", as: [String].self))
            let lost = rows.filter { !added.contains($0.sha256) }
            // The winner's row may point at the very file this import placed (same name, same
            // content-addressed path): that file is not ours to remove.
            let taken = lost.isEmpty ? [] : Set(try connection.query("""
                SELECT storage_path FROM media_items WHERE owner_id = $1::uuid AND storage_path = ANY($2::text[])
                """, [ownerID, lost.map(\.storagePath)]).map { row throws(DatabaseError) in try row.decode("storage_path", as: String.self) })
            let jobs = ids.isEmpty ? 0 : try connection.query("""
                SELECT count(*)::int AS n FROM unnest($1::text[]::uuid[]) AS i(id), LATERAL enqueue_media_processing(i.id) AS e
                """, [ids])[0].decode("n", as: Int.self)
            return (jobs, lost, lost.filter { !taken.contains($0.storagePath) })
        }
    }

    static func device(of path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_dev) : nil
    }
}

/// A file staged under the storage root, hashed and sniffed.
struct StagedFile: Sendable {
    var stagedPath: String
    var storagePath: String = ""
    var filename: String
    var originalFilename: String
    var mimeType: String
    var size: Int64
    var md5: String
    var sha256: String
    var linked: Bool
}

enum StageOutcome: Sendable {
    case staged(StagedFile)
    case failed(String)
}

struct PlacementFailure: Error { var reason: String }

/// The per-file work, shared by the hashing threads.
struct PlacementContext: Sendable {
    var storageRoot: String
    var staging: String
    var ownerID: String
    var mode: ImportMode
    var storageDevice: UInt64?
    var token: String

    /// Import takes files of any size; the jobs apply their own limits later.
    static let unlimited: MediaLimits = {
        var limits = MediaLimits.default
        limits.maxInputBytes = .max
        return limits
    }()

    /// Links or copies `source` to a staging name, then hashes and sniffs the staged file.
    func stage(_ source: ImportSource, slot: Int) -> StageOutcome {
        let stagedRelative = "\(staging)/\(token)-\(slot)"
        let stagedAbsolute = storageRoot + "/" + stagedRelative
        var linked = false
        if mode != .copy {
            let flags: Int32 = source.throughSymlink ? AT_SYMLINK_FOLLOW : 0
            if linkat(AT_FDCWD, source.rawPath, AT_FDCWD, stagedAbsolute, flags) == 0 {
                linked = true
            } else {
                let code = errno
                // EXDEV: another file system. EPERM: fs.protected_hardlinks refuses files we do
                // not own. EMLINK: the inode has too many links. All three can still be copied.
                guard mode == .auto, code == EXDEV || code == EPERM || code == EMLINK else {
                    if code == EXDEV { return .failed("on another file system than the storage root; hard links cannot cross file systems (use --copy)") }
                    return .failed(ImportWalker.describe(errno: code, doing: "cannot be hard-linked"))
                }
            }
        }
        if !linked, let failure = Self.copy(source, to: stagedAbsolute) { return .failed(failure) }
        do {
            let file = try SafeFile.open(relativePath: stagedRelative, in: storageRoot, limits: Self.unlimited)
            let header = try file.read(at: 0, count: Int(min(Int64(MimeSniffer.headerSize), file.size)))
            let mime = MimeSniffer.normalize(try MimeSniffer.sniff(header))
            switch MimeSniffer.classify(mime) {
            case .image, .video, .audio, .unknown: break
            case .playlist:
                unlink(stagedAbsolute)
                return .failed("a playlist (\(mime)), not media; playlists are never imported")
            case .notMedia:
                // Sidecars, notes and documents next to the photos: not library items.
                unlink(stagedAbsolute)
                return .failed("not a photo, video or song (the content is \(mime))")
            }
            let sums = try Checksummer.compute(file)
            let name = source.name
            return .staged(StagedFile(stagedPath: stagedRelative, filename: ImportNaming.sanitised(name),
                                      originalFilename: String(name.prefix(1024)), mimeType: String(mime.prefix(255)),
                                      size: sums.bytesRead, md5: sums.md5, sha256: sums.sha256, linked: linked))
        } catch {
            unlink(stagedAbsolute)
            if error.code == .ioError, error.message.contains("ermission") { return .failed("cannot be read: permission denied") }
            return .failed(error.message)
        }
    }

    /// Moves a staged file to its final, content-addressed place.
    /// - Parameter created: Shard directories known to exist (a `mkdir` costs more than the
    ///   rest of a small file's import).
    func place(_ staged: StagedFile, created: inout Set<String>) -> Result<StagedFile, PlacementFailure> {
        var placed = staged
        let directory = "imports/\(ownerID)/\(staged.sha256.prefix(2))"
        placed.storagePath = "\(directory)/\(staged.sha256.prefix(16))-\(staged.filename)"
        if !created.contains(directory) {
            do {
                try FileManager.default.createDirectory(atPath: storageRoot + "/" + directory, withIntermediateDirectories: true)
                created.insert(directory)
            } catch {
                discard(staged)
                return .failure(PlacementFailure(reason: "its directory \(directory) cannot be created under the storage root"))
            }
        }
        let stagedAbsolute = storageRoot + "/" + staged.stagedPath
        let finalAbsolute = storageRoot + "/" + placed.storagePath
        // link + unlink rather than rename: link never replaces an existing file.
        if link(stagedAbsolute, finalAbsolute) != 0 {
            let code = errno
            guard code == EEXIST, Self.sameContent(finalAbsolute, sha256: staged.sha256, root: storageRoot, relative: placed.storagePath) else {
                discard(staged)
                return .failure(PlacementFailure(reason: ImportWalker.describe(errno: code, doing: "cannot be placed in the storage root")))
            }
        }
        unlink(stagedAbsolute)
        return .success(placed)
    }

    func discard(_ staged: StagedFile) {
        unlink(storageRoot + "/" + staged.stagedPath)
    }

    /// Removes a placed file no row points at (its content was added by another import first).
    func removePlaced(_ placed: StagedFile) {
        unlink(storageRoot + "/" + placed.storagePath)
    }

    func syncStorage() {
        let fd = open(storageRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = GNUCalls.syncfs?(fd)
        close(fd)
    }

    /// A file left by an interrupted import at the same content-addressed path.
    private static func sameContent(_ path: String, sha256: String, root: String, relative: String) -> Bool {
        guard let file = try? SafeFile.open(relativePath: relative, in: root, limits: Self.unlimited),
              let sums = try? Checksummer.compute(file) else { return false }
        return sums.sha256 == sha256
    }

    /// Copies with `copy_file_range` (reflinks or in-kernel copies where the file system can),
    /// falling back to read/write. Returns a reason on failure.
    private static func copy(_ source: ImportSource, to destination: String) -> String? {
        let input = open(source.rawPath, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (source.throughSymlink ? 0 : O_NOFOLLOW))
        guard input >= 0 else { return ImportWalker.describe(errno: errno, doing: "cannot be read") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return "not a regular file any more" }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { return ImportWalker.describe(errno: errno, doing: "cannot be copied into the storage root") }
        defer { close(output) }
        var useRange = GNUCalls.copyFileRange != nil
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            if useRange {
                let n = GNUCalls.copyFileRange!(input, nil, output, nil, 1 << 30, 0)
                if n > 0 { continue }
                if n == 0 { break }
                let code = errno
                if code == EXDEV || code == EINVAL || code == ENOSYS || code == EOPNOTSUPP { useRange = false; continue }
                unlink(destination)
                return ImportWalker.describe(errno: code, doing: "cannot be copied")
            }
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                unlink(destination)
                return ImportWalker.describe(errno: code, doing: "cannot be read")
            }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    unlink(destination)
                    return ImportWalker.describe(errno: code, doing: "cannot be copied")
                }
                written += w
            }
        }
        // Keep the original modification time: photo tools sort by it.
        var times = [info.st_atim, info.st_mtim]
        _ = futimens(output, &times)
        return nil
    }
}

/// Storage names for imported files.
public enum ImportNaming {
    /// The longest stored name, in UTF-8 bytes (file systems allow 255; this leaves room).
    public static let maxNameBytes = 200

    /// A name that is safe on disk and in `media_items.filename`: control characters, `/`, `\`
    /// and a leading `.` or `-` become `_`, the name is cut to ``maxNameBytes`` bytes at a
    /// character boundary keeping the extension, and an empty result becomes `file`.
    public static func sanitised(_ name: String) -> String {
        var text = String(String.UnicodeScalarView(name.unicodeScalars.map { scalar in
            if scalar.properties.generalCategory == .control || scalar == "/" || scalar == "\\" || scalar.value == 0xFFFD
                || scalar.properties.generalCategory == .format || scalar.properties.generalCategory == .lineSeparator
                || scalar.properties.generalCategory == .paragraphSeparator {
                return "_"
            }
            return scalar
        }))
        text = text.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix(".") || text.hasPrefix("-") { text = "_" + text.dropFirst() }
        if text.isEmpty { return "file" }
        guard text.utf8.count > maxNameBytes else { return text }
        let dot = text.lastIndex(of: ".")
        var ext = dot.map { String(text[$0...]) } ?? ""
        if ext.utf8.count > 16 { ext = "" }
        var stem = ext.isEmpty ? text : String(text[..<dot!])
        while stem.utf8.count + ext.utf8.count > maxNameBytes { stem.removeLast() }
        return stem + ext
    }
}

/// What the insert queue did: jobs created, or the first error.
private final class InsertResults: @unchecked Sendable {
    private let lock = NSLock()
    private var jobCount = 0
    private var lostFiles: [StagedFile] = []
    private var firstError: (any Error)?
    var jobs: Int { lock.withLock { jobCount } }
    /// Files whose content another import added first.
    var lost: [StagedFile] { lock.withLock { lostFiles } }
    var error: (any Error)? { lock.withLock { firstError } }
    func add(_ jobs: Int, lost: [StagedFile]) { lock.withLock { jobCount += jobs; lostFiles += lost } }
    func fail(_ error: any Error) { lock.withLock { if firstError == nil { firstError = error } } }
}

/// Serialises progress callbacks from the hashing threads.
private final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private var bytes: Int64 = 0
    let total: Int
    let totalBytes: Int64
    let progress: LibraryImporter.Progress?
    init(total: Int, totalBytes: Int64, progress: LibraryImporter.Progress?) {
        self.total = total
        self.totalBytes = totalBytes
        self.progress = progress
    }
    func advance(bytes size: Int64) {
        lock.lock()
        defer { lock.unlock() }
        done += 1
        bytes += size
        progress?(done, total, bytes, totalBytes)
    }
}

/// One result slot per file of a batch, written by the hashing threads.
private final class OutcomeSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [StageOutcome?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ outcome: StageOutcome) {
        lock.lock()
        slots[index] = outcome
        lock.unlock()
    }
    var values: [StageOutcome?] {
        lock.lock()
        defer { lock.unlock() }
        return slots
    }
}

/// glibc functions Swift's Glibc module hides behind `_GNU_SOURCE`, looked up once at run time.
enum GNUCalls {
    typealias SyncFS = @convention(c) (Int32) -> Int32
    typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int
    static let syncfs: SyncFS? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syncfs").map { unsafeBitCast($0, to: SyncFS.self) }
    static let copyFileRange: CopyFileRange? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "copy_file_range").map { unsafeBitCast($0, to: CopyFileRange.self) }
}
