import CMagic
public import MediaNestCore

/// What a sniffed MIME type means for a media job.
public enum MimeClass: String, Sendable, Hashable {
    /// A still or animated image (`image/*`).
    case image
    /// A video container (`video/*` and a few `application/*` containers).
    case video
    /// An audio file (`audio/*`, `application/ogg`).
    case audio
    /// libmagic does not know (`application/octet-stream`): FFmpeg decides. MPEG-TS and some raw
    /// streams land here.
    case unknown
    /// A playlist or manifest (M3U/HLS, PLS, DASH): never media, never followed.
    case playlist
    /// Anything else: text, archives, documents, executables.
    case notMedia
}

/// Identifies a file's content type with libmagic, from bytes already read from the open file.
///
/// The process has one libmagic handle, opened on first use (`magic_open` + `magic_load` of the
/// system database) and used by one thread at a time: handles are not thread-safe, and a sniff
/// of a 1 MiB header takes about a millisecond, next to decodes of tens or hundreds. One handle
/// maps the compiled database (`/usr/lib/file/magic.mgc`, about 4 MiB resident) once, where a
/// handle per pool thread mapped it once per thread and an idle worker kept every copy resident.
/// Every pool thread sniffs through it, so the lock is a ``ContendedLock`` (see there why not a
/// `Mutex`).
public enum MimeSniffer {
    /// How many leading bytes callers should pass to ``sniff(_:)``.
    public static let headerSize = 1 << 20

    /// The process's handle once loaded; `nil` until then, and again after a failed load so that
    /// the next sniff tries once more.
    private static let handle = ContendedLock<OpaquePointer?>(nil)

    private static func load() throws(JobError) -> OpaquePointer {
        let flags = CMagic_MAGIC_MIME_TYPE | CMagic_MAGIC_ERROR | CMagic_MAGIC_NO_CHECK_COMPRESS | CMagic_MAGIC_NO_CHECK_ELF
        guard let cookie = magic_open(flags) else {
            throw JobError(.internalError, "libmagic could not be initialised (magic_open failed).")
        }
        guard magic_load(cookie, nil) == 0 else {
            let reason = magic_error(cookie).map { String(cString: $0) } ?? "unknown error"
            magic_close(cookie)
            throw JobError(.internalError, "libmagic could not load its database: \(reason).")
        }
        var maxBytes = headerSize
        _ = magic_setparam(cookie, CMagic_MAGIC_PARAM_BYTES_MAX, &maxBytes)
        return cookie
    }

    /// The MIME type of content that starts with `header`.
    /// - Parameter header: The file's first bytes (up to ``headerSize``).
    /// - Returns: A MIME type such as `image/jpeg` or `application/octet-stream`.
    /// - Throws: ``JobError`` with code `empty_file` for no bytes, `internal_error` if libmagic fails.
    public static func sniff(_ header: [UInt8]) throws(JobError) -> String {
        guard !header.isEmpty else { throw JobError(.emptyFile, "The content is empty (0 bytes).") }
        return try handle.withLock { (loaded: inout OpaquePointer?) throws(JobError) -> String in
            let cookie: OpaquePointer
            if let loaded { cookie = loaded } else {
                cookie = try load()
                loaded = cookie
            }
            let result = header.withUnsafeBytes { magic_buffer(cookie, $0.baseAddress, $0.count) }
            guard let result else {
                let reason = magic_error(cookie).map { String(cString: $0) } ?? "unknown error"
                throw JobError(.internalError, "libmagic could not identify the content: \(reason).")
            }
            return String(cString: result)
        }
    }

    /// Whether `header` starts like a playlist, whatever libmagic thinks (HLS often sniffs as text).
    public static func looksLikePlaylist(_ header: [UInt8]) -> Bool {
        var bytes = header.prefix(64)[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        while let first = bytes.first, first == 0x20 || first == 0x09 || first == 0x0A || first == 0x0D { bytes = bytes.dropFirst() }
        let text = String(decoding: bytes.prefix(12), as: UTF8.self).uppercased()
        return text.hasPrefix("#EXTM3U") || text.hasPrefix("[PLAYLIST]") || text.hasPrefix("<?XML") && String(decoding: header.prefix(512), as: UTF8.self).contains("<MPD")
    }

    /// Classifies a MIME type for media jobs.
    /// - Parameter mime: A MIME type, any case, parameters allowed.
    /// - Returns: Its class.
    public static func classify(_ mime: String) -> MimeClass {
        let type = normalize(mime)
        switch type {
        case "application/octet-stream", "": return .unknown
        case "application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/x-mpegurl", "audio/mpegurl",
            "audio/x-scpls", "application/dash+xml", "application/vnd.ms-wpl", "video/x-ms-asx":
            return .playlist
        case "application/ogg", "application/x-ogg": return .audio
        case "application/vnd.rn-realmedia", "application/x-matroska", "application/mp4", "application/mxf",
            "application/x-shockwave-flash", "application/vnd.ms-asf", "application/x-flv":
            return .video
        default: break
        }
        if type.hasPrefix("image/") { return .image }
        if type.hasPrefix("video/") { return .video }
        if type.hasPrefix("audio/") { return .audio }
        return .notMedia
    }

    /// Lowercases a MIME type, drops parameters, and folds common aliases onto one name.
    /// - Parameter mime: A MIME type.
    /// - Returns: The canonical spelling (`image/jpg` → `image/jpeg`, `audio/mp3` → `audio/mpeg`).
    public static func normalize(_ mime: String) -> String {
        let bare = mime.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
        let type = bare.trimmingSpaces().lowercased()
        return aliases[type] ?? type
    }

    private static let aliases: [String: String] = [
        "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
        "image/x-png": "image/png",
        "audio/mp3": "audio/mpeg", "audio/x-mp3": "audio/mpeg", "audio/mpeg3": "audio/mpeg", "audio/x-mpeg": "audio/mpeg",
        "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
        "audio/x-flac": "audio/flac",
        "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4",
        "audio/x-hx-aac-adts": "audio/aac", "audio/x-aac": "audio/aac",
        "video/x-matroska": "video/x-matroska", "video/mkv": "video/x-matroska",
        "video/x-m4v": "video/mp4",
        "audio/x-aiff": "audio/aiff",
        "image/x-ms-bmp": "image/bmp",
        "video/x-msvideo": "video/x-msvideo", "video/avi": "video/x-msvideo",
        "image/heif": "image/heif", "image/heic": "image/heic",
    ]
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
