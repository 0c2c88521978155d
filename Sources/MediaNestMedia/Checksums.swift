import CLibCrypto
import Dispatch
public import MediaNestCore

/// The MD5 and SHA-256 of a file, and how many bytes were actually hashed.
public struct FileChecksums: Sendable, Hashable {
    /// MD5, lowercase hex.
    public var md5: String
    /// SHA-256, lowercase hex.
    public var sha256: String
    /// Bytes read; differs from the recorded size when the file changed or the record was wrong.
    public var bytesRead: Int64

    /// Creates a result.
    /// - Parameters:
    ///   - md5: MD5, lowercase hex.
    ///   - sha256: SHA-256, lowercase hex.
    ///   - bytesRead: Bytes hashed.
    public init(md5: String, sha256: String, bytesRead: Int64) {
        self.md5 = md5
        self.sha256 = sha256
        self.bytesRead = bytesRead
    }
}

/// Computes MD5 and SHA-256 in one pass over a file, on two cores.
///
/// The file is read once, in large `pread` calls, into two alternating buffers. For each
/// buffer, one thread feeds MD5 (the slower digest) while the other feeds SHA-256 and then reads
/// the next buffer, so the whole run takes about as long as MD5 alone.
public enum Checksummer {
    /// The default read size: 4 MiB.
    public static let defaultBufferSize = 4 << 20

    /// Hashes the whole file.
    /// - Parameters:
    ///   - file: The open file; read from offset 0 to its end (which may differ from ``SafeFile/size``).
    ///   - progress: Receives stage `hashing` with `fraction` = bytes read / size.
    ///   - cancellation: Polled once per buffer.
    ///   - timeout: An extra wall-clock limit for this call, on top of the token's own deadline.
    ///   - bufferSize: Bytes per read.
    /// - Returns: Both digests and the byte count.
    /// - Throws: ``JobError`` with code `io_error`, or the stop's code (`timeout`, `cancelled`,
    ///   `shutdown`, `lease_lost`).
    public static func compute(
        _ file: SafeFile,
        progress: JobProgress? = nil,
        cancellation: JobCancellation? = nil,
        timeout: Duration? = nil,
        bufferSize: Int = defaultBufferSize
    ) throws(JobError) -> FileChecksums {
        let stop = StopGuard(cancellation: cancellation, timeout: timeout)
        return try compute(file, progress: progress, stop: stop, bufferSize: bufferSize)
    }

    static func compute(_ file: SafeFile, progress: JobProgress?, stop: StopGuard, bufferSize: Int) throws(JobError) -> FileChecksums {
        try stop.check()
        let md5 = try EVPDigest(EVP_md5(), name: "MD5")
        let sha256 = try EVPDigest(EVP_sha256(), name: "SHA-256")
        let buffers = [HashBuffer(size: max(bufferSize, 4096)), HashBuffer(size: max(bufferSize, 4096))]
        let state = PipelineState()

        var current = 0
        var length: Int
        switch file.readFully(into: buffers[0].bytes, at: 0) {
        case .success(let n): length = n
        case .failure(let error): throw readError(file, offset: 0, error)
        }
        var total = Int64(length)
        progress?.report(stage: "hashing", fraction: fraction(total, file.size), details: ["bytes_read": .int(total)])

        while length > 0 {
            try stop.check()
            let hashing = buffers[current]
            let next = buffers[1 - current]
            let count = length
            let offset = total
            // Iteration 0 runs MD5; iteration 1 runs SHA-256 and then reads ahead.
            DispatchQueue.concurrentPerform(iterations: 2) { lane in
                if lane == 0 {
                    md5.update(hashing.bytes.baseAddress!, count)
                } else {
                    sha256.update(hashing.bytes.baseAddress!, count)
                    state.nextResult = file.readFully(into: next.bytes, at: offset)
                }
            }
            switch state.nextResult {
            case .success(let n): length = n
            case .failure(let error): throw readError(file, offset: offset, error)
            case nil: throw JobError(.internalError, "The hashing pipeline lost a read result for \(file.relativePath).")
            }
            state.nextResult = nil
            total += Int64(length)
            current = 1 - current
            progress?.report(stage: "hashing", fraction: fraction(total, file.size), details: ["bytes_read": .int(total)])
        }
        return FileChecksums(md5: try md5.finish(), sha256: try sha256.finish(), bytesRead: total)
    }

    private static func fraction(_ done: Int64, _ size: Int64) -> Double? {
        size > 0 ? min(1, Double(done) / Double(size)) : nil
    }

    private static func readError(_ file: SafeFile, offset: Int64, _ error: Errno) -> JobError {
        JobError(.ioError, "Reading \(file.relativePath) for checksums failed at byte \(offset): \(errnoText(error)).")
    }
}

/// Hands the read-ahead result from the SHA-256 lane back to the loop; the lanes join before it is read.
private final class PipelineState: @unchecked Sendable {
    var nextResult: Result<Int, Errno>?
}

/// One page-aligned read buffer, owned here and freed in `deinit`.
private final class HashBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    init(size: Int) { bytes = .allocate(byteCount: size, alignment: 4096) }
    deinit { bytes.deallocate() }
}

/// An OpenSSL digest context; used by one thread at a time, freed in `deinit`.
private final class EVPDigest: @unchecked Sendable {
    private let context: OpaquePointer
    private let name: String

    init(_ type: OpaquePointer?, name: String) throws(JobError) {
        guard let context = EVP_MD_CTX_new() else {
            throw JobError(.internalError, "OpenSSL could not allocate a \(name) context.")
        }
        self.context = context
        self.name = name
        guard let type, EVP_DigestInit_ex(context, type, nil) == 1 else {
            throw JobError(.internalError, "OpenSSL could not initialise \(name).")
        }
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawPointer, _ count: Int) {
        // EVP_DigestUpdate only fails for a context that was never initialised.
        _ = EVP_DigestUpdate(context, bytes, count)
    }

    func finish() throws(JobError) -> String {
        var digest = [UInt8](repeating: 0, count: Int(CLibCrypto_EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1 else {
            throw JobError(.internalError, "OpenSSL could not finish \(name).")
        }
        return hex(digest.prefix(Int(length)))
    }
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
