#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import MediaNestCore

/// An untrusted media file, opened exactly once, safely, under the storage root.
///
/// Every later step (hashing, MIME sniffing, EXIF parsing, FFmpeg) reads through this one file
/// descriptor with `pread`, so the file checked here is the file processed, even if the path is
/// swapped underneath the worker afterwards.
///
/// The storage path is resolved one component at a time with `openat`, starting from a
/// directory descriptor of the root. **Symbolic links are refused entirely**, wherever they
/// appear in the path and wherever they point (even inside the root): telling a harmless link
/// from an escaping one needs a second resolution that races with the filesystem, and uploads
/// never create links. A refused link reports `path_outside_storage`.
public final class SafeFile: Sendable {
    /// The storage path as given, relative to the storage root.
    public let relativePath: String
    /// The size `fstat` reported when the file was opened, in bytes.
    public let size: Int64
    /// The open descriptor; owned by this object and closed in `deinit`.
    let descriptor: Int32
    /// The storage root the file was opened under, to resolve the path again in
    /// ``checkUnchanged()``.
    let root: String
    /// What `fstat` said when the file was opened.
    let identity: FileIdentity
    /// Where every read of the file is counted (``readFully(into:at:)`` and ``MediaInput``'s
    /// AVIO callback), when the opener asked for it.
    let readCounter: ByteCounter?

    private init(relativePath: String, root: String, identity: FileIdentity, descriptor: Int32, readCounter: ByteCounter?) {
        self.relativePath = relativePath
        self.root = root
        self.identity = identity
        self.size = identity.size
        self.descriptor = descriptor
        self.readCounter = readCounter
    }

    deinit { close(descriptor) }

    /// Opens a regular file under the storage root, refusing anything that could escape it.
    /// - Parameters:
    ///   - relativePath: The storage path, relative to `root`; never absolute, never with `..`.
    ///   - root: Absolute path of the storage root (trusted configuration; may itself be a link).
    ///   - limits: ``MediaLimits/maxInputBytes`` is enforced here.
    ///   - readCounter: Receives the bytes of every read of this file (the job's
    ///     ``MediaNestCore/ByteCounter``, for `medianest_bytes_read_total`); `nil` counts nothing.
    /// - Returns: The open file.
    /// - Throws: ``JobError`` with code `path_outside_storage`, `file_missing`,
    ///   `not_a_regular_file`, `empty_file`, `too_large` or `io_error`.
    public static func open(relativePath: String, in root: String, limits: MediaLimits = .default,
                            countingInto readCounter: ByteCounter? = nil) throws(JobError) -> SafeFile {
        let (fd, info) = try resolve(relativePath: relativePath, in: root)
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw JobError(.notARegularFile, "The storage path \(relativePath) names \(fileTypeName(info.st_mode)), not a regular file.")
        }
        let identity = FileIdentity(info)
        if identity.size == 0 {
            close(fd)
            throw JobError(.emptyFile, "The file \(relativePath) is empty (0 bytes).")
        }
        if identity.size > limits.maxInputBytes {
            close(fd)
            throw JobError(.tooLarge, "The file \(relativePath) is \(identity.size) bytes, over the limit of \(limits.maxInputBytes) bytes.")
        }
        // Reads should block normally from here on; regular files ignore O_NONBLOCK anyway.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return SafeFile(relativePath: relativePath, root: root, identity: identity, descriptor: fd, readCounter: readCounter)
    }

    /// Fails if the file changed since it was opened: its size, modification time (to the
    /// nanosecond), inode or device differ, or the storage path now names another file (the
    /// upload was replaced by a rename) or none at all.
    ///
    /// Call it after the last read. Whatever was learned from a file that changed while it was
    /// read (its checksums, its size, its probe) describes bytes that are no longer on disk, so
    /// nothing of it may be recorded.
    /// - Throws: ``JobError`` with code `file_changed` (retryable: a later run reads the new
    ///   file), or `io_error` when the descriptor cannot be examined.
    public func checkUnchanged() throws(JobError) {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            throw JobError(.ioError, "The file \(relativePath) cannot be examined after reading it: \(errnoText(code)).")
        }
        let now = FileIdentity(info)
        if let change = identity.change(to: now) {
            throw JobError(.fileChanged, "The file \(relativePath) changed while it was read (\(change)); nothing was recorded, a retry will read it again.")
        }
        // The descriptor is unchanged; make sure the path still names it, resolved the same safe
        // way as at open (a replaced upload is a new inode behind the same name).
        let current: FileIdentity
        do throws(JobError) {
            let (fd, pathInfo) = try SafeFile.resolve(relativePath: relativePath, in: root)
            close(fd)
            current = FileIdentity(pathInfo)
        } catch where error.code == .fileMissing || error.code == .pathOutsideStorage || error.code == .notARegularFile {
            throw JobError(.fileChanged, "The file \(relativePath) was removed or replaced while it was read (\(error.message)); nothing was recorded.")
        }
        if current.device != identity.device || current.inode != identity.inode {
            throw JobError(.fileChanged, "The file \(relativePath) was replaced by another file while it was read; nothing was recorded, a retry will read the new file.")
        }
    }

    /// Opens `relativePath` under `root` component by component, refusing links, and `fstat`s it.
    /// - Returns: The open descriptor (the caller closes it) and its `stat`.
    private static func resolve(relativePath: String, in root: String) throws(JobError) -> (Int32, stat) {
        let components = try validatedComponents(relativePath)

        var directory = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else {
            let code = errno
            throw JobError(.ioError, "The storage root \(root) cannot be opened: \(errnoText(code)).")
        }
        defer { close(directory) }

        for component in components.dropLast() {
            let next = openat(directory, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 {
                let code = errno
                throw classifyOpenFailure(code, parent: directory, component: component, relativePath: relativePath, isLast: false)
            }
            close(directory)
            directory = next
        }

        let name = components[components.count - 1]
        // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOCTTY: a terminal must not
        // become the worker's controlling terminal.
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd < 0 {
            let code = errno
            throw classifyOpenFailure(code, parent: directory, component: name, relativePath: relativePath, isLast: true)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw JobError(.ioError, "The file \(relativePath) cannot be examined: \(errnoText(code)).")
        }
        return (fd, info)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    /// - Parameters:
    ///   - offset: Byte offset from the start of the file.
    ///   - count: Maximum number of bytes to read.
    /// - Returns: The bytes read.
    /// - Throws: ``JobError`` with code `io_error`.
    public func read(at offset: Int64, count: Int) throws(JobError) -> [UInt8] {
        guard count > 0 else { return [] }
        var result = [UInt8](repeating: 0, count: count)
        let got = result.withUnsafeMutableBytes { readFully(into: $0, at: offset) }
        switch got {
        case .success(let n):
            result.removeSubrange(n...)
            return result
        case .failure(let code):
            throw JobError(.ioError, "Reading \(relativePath) at byte \(offset) failed: \(errnoText(code)).")
        }
    }

    /// Fills `buffer` from `offset` until it is full or the file ends; retries short reads and EINTR.
    /// What was read, also before a failure, is added to ``readCounter``.
    func readFully(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        var done = 0
        defer { readCounter?.add(done) }
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            return .failure(Errno(errno))
        }
        return .success(done)
    }

    /// Splits a storage path into components, refusing absolute paths and `..`.
    static func validatedComponents(_ relativePath: String) throws(JobError) -> [String] {
        if relativePath.isEmpty {
            throw JobError(.pathOutsideStorage, "The storage path is empty; it must name a file under the storage root.")
        }
        if relativePath.utf8.contains(0) {
            throw JobError(.pathOutsideStorage, "The storage path \(relativePath.debugDescription) contains a NUL byte.")
        }
        if relativePath.hasPrefix("/") {
            throw JobError(.pathOutsideStorage, "The storage path \(relativePath) is absolute; it must be relative to the storage root.")
        }
        let parts = relativePath.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts.contains("..") {
            throw JobError(.pathOutsideStorage, "The storage path \(relativePath) contains a '..' component, which could leave the storage root.")
        }
        let components = parts.filter { $0 != "." }
        if components.isEmpty {
            throw JobError(.pathOutsideStorage, "The storage path \(relativePath) names the storage root itself, not a file.")
        }
        return components
    }

    private static func classifyOpenFailure(_ code: Int32, parent: Int32, component: String, relativePath: String, isLast: Bool) -> JobError {
        // Tell a symlink apart from a non-directory without following anything.
        var info = stat()
        let isLink = fstatat(parent, component, &info, AT_SYMLINK_NOFOLLOW) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
        if code == ELOOP || isLink {
            return JobError(.pathOutsideStorage, "The storage path \(relativePath) goes through the symbolic link '\(component)'; links are refused so that no path can leave the storage root.")
        }
        switch code {
        case ENOENT:
            return JobError(.fileMissing, "The file \(relativePath) does not exist under the storage root ('\(component)' is missing).")
        case ENOTDIR:
            return JobError(.fileMissing, "The file \(relativePath) does not exist: '\(component)' is not a directory.")
        case ENXIO, ENODEV:
            return JobError(.notARegularFile, "The storage path \(relativePath) names a socket or device, not a regular file.")
        case EACCES, EPERM:
            return JobError(.ioError, "The file \(relativePath) cannot be opened: permission denied on '\(component)'.", retryable: false)
        default:
            return JobError(.ioError, "The file \(relativePath) cannot be opened at '\(component)': \(errnoText(code)).")
        }
    }

    private static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        default: "a special file"
        }
    }
}

/// The `fstat` fields that change when a file is written, truncated or replaced.
struct FileIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int64
    var modifiedNanoseconds: Int64

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int64(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int64(info.st_mtim.tv_nsec)
    }

    /// What differs in `later`, for a message, or `nil` when nothing does.
    func change(to later: FileIdentity) -> String? {
        var changes: [String] = []
        if later.size != size { changes.append("size \(size) → \(later.size) bytes") }
        if later.modifiedSeconds != modifiedSeconds || later.modifiedNanoseconds != modifiedNanoseconds {
            changes.append("modification time changed")
        }
        if later.inode != inode || later.device != device { changes.append("inode changed") }
        return changes.isEmpty ? nil : changes.joined(separator: ", ")
    }
}

/// An `errno` value.
struct Errno: Error, Sendable {
    let code: Int32
    init(_ code: Int32) { self.code = code }
}

/// The text of an `errno` value.
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

func errnoText(_ error: Errno) -> String { errnoText(error.code) }
