import Foundation

/// A regular file found by ``ImportWalker``.
struct ImportSource: Sendable {
    /// The path as the kernel knows it: raw bytes, NUL-terminated, so names that are not valid
    /// UTF-8 still open.
    var rawPath: [CChar]
    /// The path for people (invalid UTF-8 replaced by U+FFFD).
    var displayPath: String
    /// The last component, for the person (`original_filename`).
    var name: String
    /// Whether the walk reached the file through a symbolic link (then it is linked with
    /// `AT_SYMLINK_FOLLOW`, so the target is imported, not the link).
    var throughSymlink: Bool
    var size: Int64
}

/// Something `import` did not bring in, with the reason a person reads.
public struct ImportSkip: Sendable, Hashable {
    /// The path as given on the command line, joined with the names below it.
    public var path: String
    /// Why, in words.
    public var reason: String
}

/// Walks the paths given to `import` without ever looping: directories are identified by device
/// and inode, so a symbolic link back to an ancestor (or a hard-linked directory cycle on odd file
/// systems) is reported once and not entered. Symbolic links to files and to directories outside
/// the walk are followed; the kernel's own `ELOOP` is reported as a loop.
///
/// Hidden entries (names starting with `.`) are skipped and only counted: they are `.DS_Store`,
/// `.thumbnails` and version-control directories far more often than photos.
struct ImportWalker {
    private(set) var files: [ImportSource] = []
    private(set) var skipped: [ImportSkip] = []
    private(set) var hiddenSkipped = 0
    private var visited = Set<DeviceInode>()
    /// The storage root's identity: walking into it would import the library into itself.
    private let storageRoot: DeviceInode?

    struct DeviceInode: Hashable { var device: UInt64; var inode: UInt64 }

    init(storageRoot: String) {
        var info = stat()
        storageRoot.withCString { if stat($0, &info) != 0 { info.st_ino = 0 } }
        self.storageRoot = info.st_ino == 0 ? nil : DeviceInode(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Walks one command-line argument.
    mutating func walk(argument: String) {
        let raw = Array(argument.utf8CString)
        visit(raw: raw, display: argument, name: (argument as NSString).lastPathComponent, ancestors: [])
    }

    private mutating func visit(raw: [CChar], display: String, name: String, ancestors: [DeviceInode]) {
        var info = stat()
        guard lstat(raw, &info) == 0 else {
            skipped.append(ImportSkip(path: display, reason: Self.describe(errno: errno, doing: "cannot be examined")))
            return
        }
        var throughSymlink = false
        if (info.st_mode & S_IFMT) == S_IFLNK {
            throughSymlink = true
            var target = stat()
            guard stat(raw, &target) == 0 else {
                let code = errno
                switch code {
                case ELOOP: skipped.append(ImportSkip(path: display, reason: "symbolic link loop: the link resolves to itself"))
                case ENOENT: skipped.append(ImportSkip(path: display, reason: "broken symbolic link: its target does not exist"))
                default: skipped.append(ImportSkip(path: display, reason: Self.describe(errno: code, doing: "symbolic link cannot be followed")))
                }
                return
            }
            info = target
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            if info.st_size == 0 {
                skipped.append(ImportSkip(path: display, reason: "empty file (0 bytes)"))
            } else {
                files.append(ImportSource(rawPath: raw, displayPath: display, name: name, throughSymlink: throughSymlink, size: Int64(info.st_size)))
            }
        case S_IFDIR:
            let id = DeviceInode(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
            if ancestors.contains(id) {
                skipped.append(ImportSkip(path: display, reason: "symbolic link loop: it leads back to a directory above it; not followed"))
                return
            }
            if id == storageRoot {
                skipped.append(ImportSkip(path: display, reason: "this is the storage root itself; not imported into itself"))
                return
            }
            // Reached before through another link: its files are already on the list.
            guard visited.insert(id).inserted else { return }
            walkDirectory(raw: raw, display: display, ancestors: ancestors + [id])
        case S_IFIFO: skipped.append(ImportSkip(path: display, reason: "a FIFO (named pipe), not a regular file"))
        case S_IFSOCK: skipped.append(ImportSkip(path: display, reason: "a socket, not a regular file"))
        case S_IFCHR: skipped.append(ImportSkip(path: display, reason: "a character device, not a regular file"))
        case S_IFBLK: skipped.append(ImportSkip(path: display, reason: "a block device, not a regular file"))
        default: skipped.append(ImportSkip(path: display, reason: "not a regular file"))
        }
    }

    private mutating func walkDirectory(raw: [CChar], display: String, ancestors: [DeviceInode]) {
        guard let directory = opendir(raw) else {
            skipped.append(ImportSkip(path: display, reason: Self.describe(errno: errno, doing: "directory cannot be read")))
            return
        }
        var names: [[CChar]] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                Array(bytes.bindMemory(to: CChar.self).prefix { $0 != 0 })
            }
            if name == [46] || name == [46, 46] { continue }
            if name.first == 46 {
                hiddenSkipped += 1
                continue
            }
            names.append(name)
        }
        closedir(directory)
        // Sorted by bytes: the same folder imports in the same order every time.
        names.sort { $0.lexicographicallyPrecedes($1) { UInt8(bitPattern: $0) < UInt8(bitPattern: $1) } }
        var base = Array(raw.dropLast())  // without the NUL
        if base.last != 47 { base.append(47) }
        let displayBase = display.hasSuffix("/") ? display : display + "/"
        for name in names {
            let childName = String(decoding: name.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            visit(raw: base + name + [0], display: displayBase + childName, name: childName, ancestors: ancestors)
        }
    }

    static func describe(errno code: Int32, doing what: String) -> String {
        switch code {
        case EACCES, EPERM: return "\(what): permission denied"
        case ENOENT: return "\(what): it does not exist"
        case ELOOP: return "\(what): too many levels of symbolic links (a loop)"
        case ENAMETOOLONG: return "\(what): the path is too long"
        default: return "\(what): \(String(cString: strerror(code)))"
        }
    }
}
