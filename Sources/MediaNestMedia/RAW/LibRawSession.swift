import CLibRaw
import MediaNestCore

/// One RAW file opened in libraw: the file's bytes in a buffer libraw keeps a pointer to, and
/// libraw's state for it. Both live exactly as long as this object (or until ``close()``).
///
/// libraw's C API has no custom-stream hook, so the file is read through the job's `SafeFile`
/// into memory (capped by ``RawPreview/maxFileBytes``) and handed over with `libraw_open_buffer`;
/// libraw never gets a path. libraw's own data-error and memory-error callbacks, which print to
/// stderr, are replaced by ones that only count.
final class LibRawSession {
    /// libraw's state; `nil` once closed.
    private(set) var raw: UnsafeMutablePointer<libraw_data_t>?
    private var buffer: UnsafeMutableRawBufferPointer?
    /// The job's stop condition, polled by libraw's progress callback while it develops.
    let stop: StopGuard
    /// The file's storage path, for messages.
    let name: String
    /// Data errors libraw reported while reading (it carries on, filling with zeros).
    fileprivate(set) var dataErrors = 0

    /// Reads `file` and opens it in libraw (identification only: no pixel is unpacked).
    /// - Throws: ``JobError`` `too_large`, `io_error`, `unsupported_format` (not a RAW format
    ///   libraw can read, naming its libmagic type), `corrupt_media` (starts like a RAW container
    ///   but libraw cannot identify it), or a stop's code.
    init(file: SafeFile, stop: StopGuard) throws(JobError) {
        self.stop = stop
        self.name = file.relativePath
        guard file.size <= RawPreview.maxFileBytes else {
            throw JobError(.tooLarge, "The RAW file \(name) is \(file.size) bytes; at most \(RawPreview.maxFileBytes) bytes are read for its picture.")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, Int(file.size)), alignment: 16)
        self.buffer = buffer
        // From here on, deinit releases whatever has been set up.
        switch file.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer.prefix(Int(file.size))), at: 0) {
        case .success(let n) where n == Int(file.size): break
        case .success(let n): throw JobError(.ioError, "The file \(name) shrank while being read (\(n) of \(file.size) bytes).")
        case .failure(let error): throw JobError(.ioError, "Reading \(name) failed: \(errnoText(error)).")
        }
        try stop.check()
        guard let raw = libraw_init(0) else { throw JobError(.internalError, "libraw could not be initialised.") }
        self.raw = raw
        let context = Unmanaged.passUnretained(self).toOpaque()
        libraw_set_dataerror_handler(raw, { context, _, _ in
            guard let context else { return }
            Unmanaged<LibRawSession>.fromOpaque(context).takeUnretainedValue().dataErrors += 1
        }, context)
        libraw_set_memerror_handler(raw, { _, _, _ in }, nil)
        let opened = libraw_open_buffer(raw, buffer.baseAddress, Int(file.size))
        if opened != CLibRaw_LIBRAW_SUCCESS {
            let header = [UInt8](UnsafeRawBufferPointer(rebasing: buffer.prefix(min(Int(file.size), MimeSniffer.headerSize))))
            // libraw reports a file it cannot place as unsupported, or as an I/O error when its
            // format guesses run off the end of the buffer: either way, unless the bytes start like
            // a RAW container, this is simply another format.
            if opened == CLibRaw_LIBRAW_FILE_UNSUPPORTED || !RawPreview.looksLikeRaw(header) {
                let kind = (try? MimeSniffer.sniff(header)) ?? "unknown"
                throw JobError(.unsupportedFormat, "The file \(name) (\(kind)) is not a camera RAW format libraw can read, and no other decoder handles it.")
            }
            throw JobError(.corruptMedia, "The RAW file \(name) cannot be read: \(LibRawSession.errorText(opened)).")
        }
        try stop.check()
    }

    deinit { close() }

    /// Frees libraw's state and the file's bytes (idempotent).
    func close() {
        if let raw { libraw_close(raw) }
        raw = nil
        buffer?.deallocate()
        buffer = nil
    }

    /// The open libraw state. Only valid before ``close()``.
    var data: UnsafeMutablePointer<libraw_data_t> {
        guard let raw else { preconditionFailure("LibRawSession used after close()") }
        return raw
    }

    /// Camera make and model as libraw names them ("Canon EOS R5"), or `nil`.
    var cameraName: String? {
        let make = LibRawSession.text(data.pointee.idata.make)
        let model = LibRawSession.text(data.pointee.idata.model)
        let name = model.hasPrefix(make) ? model : [make, model].filter { !$0.isEmpty }.joined(separator: " ")
        return name.isEmpty ? nil : name
    }

    /// The orientation the camera recorded, as an EXIF value (from libraw's `sizes.flip`, read
    /// before any processing can override it).
    var exifOrientation: Int { RawPreview.exifOrientation(fromFlip: data.pointee.sizes.flip) }

    /// A fixed-size C `char` array (imported as a tuple) as trimmed UTF-8, up to its first NUL.
    static func text<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }.trimmingSpaces()
    }

    /// libraw's sentence for an error code.
    static func errorText(_ code: Int32) -> String {
        libraw_strerror(code).map { String(cString: $0) } ?? "libraw error \(code)"
    }
}
