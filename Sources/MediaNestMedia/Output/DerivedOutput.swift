#if canImport(Glibc)
import Glibc
#endif
public import MediaNestCore

/// Where an item's derived files live under the derived root: a deterministic layout, so any
/// worker (and the web tier) finds them from the item id alone.
///
/// `<derived root>/<first two hex digits of the id>/<id>/<name>`, for example
/// `.derived/3f/3f2a…e1/thumbnail.webp`. The two-digit fan-out keeps directories small in a
/// library of millions of items.
public enum DerivedLayout {
    /// The directory components of an item's derived files, relative to the derived root.
    /// - Parameter mediaItemID: The item's UUID.
    /// - Throws: ``JobError`` `invalid_input` when the id is not a plain identifier.
    public static func itemComponents(mediaItemID: String) throws(JobError) -> [String] {
        let id = mediaItemID.lowercased()
        guard id.count >= 8, id.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || $0 == 45 }) else {
            throw JobError(.invalidInput, "The media item id \(mediaItemID.debugDescription) is not a UUID.", retryable: false)
        }
        return [String(id.prefix(2)), id]
    }
}

/// A directory under the derived root, opened component by component with `openat` and no
/// symbolic links (the mirror of ``SafeFile``'s open), creating what is missing.
///
/// Outputs are written through ``PendingOutput``: a temporary file with a name unique to this
/// writer in the final directory, fsynced, `renameat`ed over the final name, and the directory
/// fsynced. A reader therefore sees the old file or the new one, never a half-written one; a
/// run that dies leaves at most a hidden temporary file; and a late run that lost its lease can
/// only replace a finished file with another finished file (the worker stops such a run before
/// it commits; see `JobCancellation.extendLease(until:)`).
///
/// A directory opened for a **writer** (a job type: `thumbnail`, `preview`, `transcode`) names
/// its temporary files after it, and ``removeTemporariesOfEarlierRuns()`` deletes that writer's
/// leftovers whatever their age: one job of a type runs per item at a time, so a temporary file
/// of the same writer that exists when a run starts belongs to a run that died (SIGKILL, OOM, a
/// decoder crash) or lost its lease. Other temporaries are swept by age
/// (``removeStaleTemporaries(olderThan:)``).
public final class DerivedDirectory: Sendable {
    /// The directory's path relative to the derived root, without a trailing slash.
    public let relativePath: String
    /// Who writes through this handle (a job type), or `nil`; part of every temporary name.
    public let writer: String?
    let descriptor: Int32

    private init(relativePath: String, writer: String?, descriptor: Int32) {
        self.relativePath = relativePath
        self.writer = writer
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Opens (creating as needed) `components` under `derivedRoot`.
    /// - Parameters:
    ///   - derivedRoot: Absolute path of the derived root (trusted configuration). Its last
    ///     component is created when missing; its parent must exist.
    ///   - components: Plain names, no `/`, `.` or `..`.
    ///   - writer: Who writes through the handle (a job type: letters, digits, `_`, `-`), or
    ///     `nil`; see ``removeTemporariesOfEarlierRuns()``.
    /// - Returns: The open directory.
    /// - Throws: ``JobError`` `path_outside_storage` for a symbolic link or a bad name, `io_error`
    ///   or `disk_full` when the file system refuses.
    public static func open(derivedRoot: String, components: [String], writtenBy writer: String? = nil) throws(JobError) -> DerivedDirectory {
        if let writer {
            precondition(!writer.isEmpty && writer.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 45 },
                         "a writer is a plain identifier")
        }
        for component in components {
            guard !component.isEmpty, component != ".", component != "..", !component.contains("/"), !component.utf8.contains(0) else {
                throw JobError(.pathOutsideStorage, "The derived path component \(component.debugDescription) is not a plain name.", retryable: false)
            }
        }
        var directory = Glibc.open(derivedRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory < 0 && errno == ENOENT {
            if mkdir(derivedRoot, 0o755) != 0 && errno != EEXIST {
                throw writeError(errno, "The derived root \(derivedRoot) cannot be created")
            }
            directory = Glibc.open(derivedRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        guard directory >= 0 else { throw writeError(errno, "The derived root \(derivedRoot) cannot be opened") }
        for component in components {
            var next = openat(directory, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT {
                if mkdirat(directory, component, 0o755) != 0 && errno != EEXIST {
                    let code = errno
                    close(directory)
                    throw writeError(code, "The derived directory '\(component)' cannot be created")
                }
                next = openat(directory, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if next < 0 {
                let code = errno
                close(directory)
                if code == ELOOP || code == ENOTDIR {
                    throw JobError(.pathOutsideStorage, "The derived path component '\(component)' is a symbolic link or not a directory; derived files are never written through links.", retryable: false)
                }
                throw writeError(code, "The derived directory '\(component)' cannot be opened")
            }
            close(directory)
            directory = next
        }
        return DerivedDirectory(relativePath: components.joined(separator: "/"), writer: writer, descriptor: directory)
    }

    /// Opens the directory of one media item's derived files (see ``DerivedLayout``).
    /// - Parameters:
    ///   - mediaItemID: The item's UUID.
    ///   - derivedRoot: Absolute path of the derived root.
    ///   - subdirectory: An optional further plain name (for example `trickplay`).
    ///   - writer: Who writes through the handle (a job type), or `nil`.
    public static func forMediaItem(_ mediaItemID: String, derivedRoot: String, subdirectory: String? = nil,
                                    writtenBy writer: String? = nil) throws(JobError) -> DerivedDirectory {
        var components = try DerivedLayout.itemComponents(mediaItemID: mediaItemID)
        if let subdirectory { components.append(subdirectory) }
        return try open(derivedRoot: derivedRoot, components: components, writtenBy: writer)
    }

    /// Starts a new output that will become `name` in this directory when committed.
    /// - Parameter name: The final file name (a plain name).
    /// - Throws: ``JobError`` `io_error` or `disk_full`.
    public func createOutput(named name: String) throws(JobError) -> PendingOutput {
        guard !name.isEmpty, !name.hasPrefix("."), !name.contains("/"), !name.utf8.contains(0) else {
            throw JobError(.pathOutsideStorage, "The derived file name \(name.debugDescription) is not a plain name.", retryable: false)
        }
        // SystemRandomNumberGenerator reads the kernel's CSPRNG: names no other run can guess or share.
        var generator = SystemRandomNumberGenerator()
        let token = (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let temporaryName = "\(temporaryPrefix)\(name).\(token.map { hex($0) }.joined()).tmp"
        // Read-write: the MP4 muxer reads its own output back for `+faststart` (``PendingOutput/read(into:at:)``).
        let fd = openat(descriptor, temporaryName, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DerivedDirectory.writeError(errno, "A temporary file for \(relativePath)/\(name) cannot be created") }
        return PendingOutput(directory: self, name: name, temporaryName: temporaryName, descriptor: fd)
    }

    /// Writes `bytes` as `name` atomically: temporary file, fsync, rename, directory fsync.
    /// - Returns: The file's path relative to the derived root.
    @discardableResult
    public func writeAtomically(_ bytes: [UInt8], named name: String) throws(JobError) -> String {
        let output = try createOutput(named: name)
        try output.write(bytes)
        try output.commit()
        return output.relativePath
    }

    /// Removes `name` from this directory if it exists (an output a new run no longer makes).
    public func remove(named name: String) {
        guard !name.isEmpty, !name.contains("/") else { return }
        _ = unlinkat(descriptor, name, 0)
    }

    /// The names of the regular files in this directory (hidden temporaries included).
    public func fileNames() -> [String] {
        let dup = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let stream = fdopendir(dup) else { return [] }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            var info = stat()
            if fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
                names.append(name)
            }
        }
        return names.sorted()
    }

    /// How this handle's temporary names start: `.` then, for a writer, `writer~`.
    private var temporaryPrefix: String { writer.map { ".\($0)~" } ?? "." }

    /// Deletes every temporary file of this directory's ``writer``, whatever its age: they were
    /// left by earlier runs of the same job, which died or lost their lease (the caller holds
    /// the job's lease, and one job per item and type runs at a time). A late run whose file is
    /// deleted under it cannot commit (its rename finds nothing). Does nothing without a writer.
    /// - Returns: How many were removed.
    @discardableResult
    public func removeTemporariesOfEarlierRuns() -> Int {
        guard writer != nil else { return 0 }
        let prefix = temporaryPrefix
        var removed = 0
        for name in fileNames() where name.hasPrefix(prefix) && name.hasSuffix(".tmp") {
            if unlinkat(descriptor, name, 0) == 0 { removed += 1 }
        }
        return removed
    }

    /// Deletes temporary files left by runs that died, when they are older than `age` (a run
    /// still writing one keeps touching it, so a generous age never hits a live run).
    /// - Returns: How many were removed.
    @discardableResult
    public func removeStaleTemporaries(olderThan age: Duration) -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var removed = 0
        for name in fileNames() where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            var info = stat()
            guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if Double(now.tv_sec - info.st_mtim.tv_sec) > Double(age.components.seconds) {
                if unlinkat(descriptor, name, 0) == 0 { removed += 1 }
            }
        }
        return removed
    }

    func syncDirectory() throws(JobError) {
        guard fsync(descriptor) == 0 else { throw DerivedDirectory.writeError(errno, "The derived directory \(relativePath) could not be synced") }
    }

    static func writeError(_ code: Int32, _ message: String) -> JobError {
        switch code {
        case ENOSPC, EDQUOT: JobError(.diskFull, "\(message): the disk is full.")
        // A volume turns read-only under a running worker (remounted after an I/O error, a
        // share exported read-only for maintenance) and writable again: retry, like a full disk.
        case EROFS: JobError(.ioError, "\(message): the file system is read-only.")
        case EACCES, EPERM: JobError(.ioError, "\(message): \(errnoText(code)).", retryable: false)
        default: JobError(.ioError, "\(message): \(errnoText(code)).")
        }
    }
}

private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}

/// One derived file being written: a hidden temporary file in its final directory until
/// ``commit()`` renames it into place. Dropped without a commit (a failure, a cancellation),
/// the temporary file is deleted.
///
/// Not thread-safe: one writer at a time (FFmpeg's muxer writes from the thread that drives it).
public final class PendingOutput {
    /// The final file name.
    public let name: String
    /// The final path relative to the derived root.
    public var relativePath: String { directory.relativePath.isEmpty ? name : directory.relativePath + "/" + name }
    let directory: DerivedDirectory
    let temporaryName: String
    /// The temporary file's descriptor, for `pwrite`/`pread` by muxers (seekable output).
    let descriptor: Int32
    private var finished = false
    /// Bytes written so far (the end of the furthest write).
    public private(set) var size: Int64 = 0

    init(directory: DerivedDirectory, name: String, temporaryName: String, descriptor: Int32) {
        self.directory = directory
        self.name = name
        self.temporaryName = temporaryName
        self.descriptor = descriptor
    }

    deinit {
        if !finished { _ = unlinkat(directory.descriptor, temporaryName, 0) }
        close(descriptor)
    }

    /// Appends `bytes` at the current end of the file.
    public func write(_ bytes: [UInt8]) throws(JobError) {
        let result: Result<Void, JobError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(JobError) in try write(buffer, at: size) }
        }
        try result.get()
    }

    /// Writes `buffer` at `offset` (muxers seek back to patch headers).
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws(JobError) {
        precondition(!finished, "write after commit or discard")
        var done = 0
        while done < buffer.count {
            let n = pwrite(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw DerivedDirectory.writeError(n < 0 ? errno : EIO, "Writing \(relativePath) failed")
        }
        size = max(size, offset + Int64(buffer.count))
    }

    /// Reads back up to `count` bytes at `offset` (the MP4 muxer's faststart pass re-reads its output).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        while true {
            let n = pread(descriptor, buffer.baseAddress!, buffer.count, off_t(offset))
            if n >= 0 || errno != EINTR { return n }
        }
    }

    /// Makes the output durable and visible under its final name, replacing an older file.
    /// - Throws: ``JobError`` `io_error` or `disk_full`; the temporary file is then removed.
    public func commit() throws(JobError) {
        precondition(!finished, "commit twice")
        guard fsync(descriptor) == 0 else {
            throw DerivedDirectory.writeError(errno, "Syncing \(relativePath) failed")
        }
        guard renameat(directory.descriptor, temporaryName, directory.descriptor, name) == 0 else {
            throw DerivedDirectory.writeError(errno, "Moving \(relativePath) into place failed")
        }
        finished = true
        try directory.syncDirectory()
    }

    /// Abandons the output and deletes its temporary file now.
    public func discard() {
        guard !finished else { return }
        finished = true
        _ = unlinkat(directory.descriptor, temporaryName, 0)
    }
}
