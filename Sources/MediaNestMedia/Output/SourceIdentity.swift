#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeFile {
    /// A short text that changes whenever the file is replaced or rewritten: its size,
    /// modification time (nanoseconds) and inode, from `fstat` of the open descriptor.
    ///
    /// Derived outputs record it, so a job can tell whether an output made earlier (for example
    /// by the sibling thumbnail or preview job, from the same decode) still belongs to this file.
    public var sourceIdentity: String {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return "size-\(size)" }
        let nanoseconds = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        return "\(info.st_size)-\(nanoseconds)-\(info.st_ino)"
    }
}

extension DerivedDirectory {
    /// Reads a small regular file of this directory (a manifest), or `nil` when it is missing,
    /// is not a regular file, is a symbolic link, or is larger than `maxBytes`.
    /// - Parameters:
    ///   - name: A plain file name.
    ///   - maxBytes: The largest size read.
    public func readSmallFile(named name: String, maxBytes: Int = 1 << 20) -> [UInt8]? {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { return nil }
        let fd = openat(descriptor, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= maxBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return Array(bytes.prefix(done))
    }

    /// The size of a regular file of this directory, or `nil` when there is none.
    public func fileSize(named name: String) -> Int64? {
        guard !name.isEmpty, !name.contains("/") else { return nil }
        var info = stat()
        guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_size)
    }
}
