import Foundation
public import MediaNestCore
public import MediaNestDB
import MediaNestMedia

/// One media item as the gallery shows it.
public struct GalleryItem: Sendable, Hashable {
    /// The latest job of one type for the item.
    public struct Job: Sendable, Hashable {
        /// The job type.
        public var type: String
        /// `pending`, `running`, `completed`, `failed` or `cancelled`.
        public var status: String
        /// `output_data.error.code` of a failed job.
        public var errorCode: String?
        /// `output_data.error.message`, else `error_message`.
        public var errorMessage: String?
        public init(type: String, status: String, errorCode: String? = nil, errorMessage: String? = nil) {
            self.type = type
            self.status = status
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }
    }

    /// `media_items.id`.
    public var id: String
    /// `original_filename`.
    public var name: String
    /// `mime_type`.
    public var mimeType: String
    /// `file_size`.
    public var size: Int64?
    /// `status`: `uploading`, `processing`, `ready` or `error`.
    public var status: String
    /// `storage_path`, relative to the storage root.
    public var storagePath: String
    /// `thumbnail_path`, relative to the storage root.
    public var thumbnailPath: String?
    /// `preview_path`, relative to the storage root.
    public var previewPath: String?
    /// The metadata job's summary (docs/METADATA.md).
    public var metadata: JSONValue
    /// `processing_info`: trickplay, renditions, errors.
    public var processingInfo: JSONValue
    /// `checksum_sha256`.
    public var sha256: String?
    /// The latest job of each type.
    public var jobs: [Job]
    /// The other items of its duplicate group, if it is in one (``DuplicateFinder``).
    public var duplicates: Duplicates?

    /// The item's duplicate group as the gallery shows it.
    public struct Duplicates: Sendable, Hashable {
        /// `exact` (same bytes) or `similar` (perceptual hash).
        public var kind: DuplicateGroup.Kind
        /// The other members' ids, the earliest first.
        public var others: [String]
        public init(kind: DuplicateGroup.Kind, others: [String]) {
            self.kind = kind
            self.others = others
        }
    }

    public init(id: String, name: String, mimeType: String, size: Int64?, status: String, storagePath: String,
                thumbnailPath: String? = nil, previewPath: String? = nil, metadata: JSONValue = [:], processingInfo: JSONValue = [:],
                sha256: String? = nil, jobs: [Job] = []) {
        self.id = id
        self.name = name
        self.mimeType = mimeType
        self.size = size
        self.status = status
        self.storagePath = storagePath
        self.thumbnailPath = thumbnailPath
        self.previewPath = previewPath
        self.metadata = metadata
        self.processingInfo = processingInfo
        self.sha256 = sha256
        self.jobs = jobs
    }

    /// `image`, `video`, `audio` or `other`: the metadata job's `kind`, else the MIME type's.
    public var kind: String {
        if let kind = metadata["kind"]?.stringValue, ["image", "video", "audio"].contains(kind) { return kind }
        for prefix in ["image", "video", "audio"] where mimeType.hasPrefix(prefix + "/") { return prefix }
        return "other"
    }

    /// Every item, oldest first, with the latest job of each type.
    /// - Throws: ``DatabaseError``.
    public static func loadAll(on connection: PGConnection) throws -> [GalleryItem] {
        let rows = try connection.query("""
            SELECT m.id::text AS id, m.original_filename, m.mime_type, m.file_size, m.status::text AS status, m.storage_path,
                   m.thumbnail_path, m.preview_path, m.metadata, m.processing_info, m.checksum_sha256,
                   coalesce((SELECT jsonb_agg(jsonb_build_object(
                                 'type', j.job_type, 'status', j.status::text,
                                 'code', j.output_data #>> '{error,code}',
                                 'message', coalesce(j.output_data #>> '{error,message}', j.error_message)) ORDER BY j.job_type)
                               FROM (SELECT DISTINCT ON (job_type) * FROM processing_jobs
                                      WHERE media_item_id = m.id ORDER BY job_type, created_at DESC, id) j), '[]') AS jobs
              FROM media_items m ORDER BY m.created_at, m.original_filename, m.id
            """)
        var groups: [String: Duplicates] = [:]
        for group in try DuplicateFinder.groups(ownerID: nil, on: connection) {
            for id in group.items where groups[id] == nil { groups[id] = Duplicates(kind: group.kind, others: group.items.filter { $0 != id }) }
        }
        return try rows.map { row throws(DatabaseError) in
            let jobs = (try row.decode("jobs", as: JSONValue.self).arrayValue ?? []).map { job in
                Job(type: job["type"]?.stringValue ?? "?", status: job["status"]?.stringValue ?? "?",
                    errorCode: job["code"]?.stringValue, errorMessage: job["message"]?.stringValue)
            }
            var item = GalleryItem(id: try row.decode("id"), name: try row.decode("original_filename"), mimeType: try row.decode("mime_type"),
                               size: try row.decode("file_size"), status: try row.decode("status"), storagePath: try row.decode("storage_path"),
                               thumbnailPath: try row.decode("thumbnail_path"), previewPath: try row.decode("preview_path"),
                               metadata: try row.decode("metadata"), processingInfo: try row.decode("processing_info"),
                               sha256: try row.decode("checksum_sha256"), jobs: jobs)
            item.duplicates = groups[item.id]
            return item
        }
    }
}

/// The trickplay sheet description in `processing_info.trickplay`, read tolerantly.
public struct TrickplayInfo: Sendable, Hashable {
    /// Seconds between frames (0 when unknown).
    public var interval: Double
    /// One tile's size in pixels.
    public var tileWidth: Int
    public var tileHeight: Int
    /// Tiles per row and rows per sheet.
    public var columns: Int
    public var rows: Int
    /// Frames in all sheets.
    public var count: Int
    /// Sheet paths as stored (relative to the derived root or to the storage root).
    public var sheets: [String]

    /// Reads snake_case or camelCase keys; `nil` when the description is unusable.
    public init?(_ json: JSONValue?) {
        guard let json, json.objectValue != nil else { return nil }
        func number(_ keys: String...) -> Double? {
            for key in keys { if let value = json[key]?.doubleValue { return value } }
            return nil
        }
        let sheets = (json["sheets"]?.arrayValue ?? json["paths"]?.arrayValue ?? []).compactMap { $0.stringValue ?? $0["path"]?.stringValue }
        guard let width = number("tile_width", "tileWidth", "width"), let height = number("tile_height", "tileHeight", "height"),
              let columns = number("columns", "cols"), let rows = number("rows"), width > 0, height > 0, columns >= 1, rows >= 1,
              width <= 4096, height <= 4096, columns <= 1000, rows <= 1000, !sheets.isEmpty else { return nil }
        self.tileWidth = Int(width)
        self.tileHeight = Int(height)
        self.columns = Int(columns)
        self.rows = Int(rows)
        self.sheets = sheets
        self.count = Int(min(number("count", "tiles", "frames") ?? Double(self.columns * self.rows * sheets.count), 1_000_000))
        self.interval = number("interval", "interval_seconds", "intervalSeconds") ?? 0
    }
}

/// Writes the static gallery: `index.html` plus the item's files copied under `media/<item id>/`.
///
/// Files are copied (not linked) so the page keeps working from `file://` after the storage root
/// or a demo's throwaway directory is gone, and every path from the database is opened through
/// ``SafeFile``: a row cannot make the gallery copy a file from outside the storage root.
public struct GalleryWriter: Sendable {
    /// Absolute storage root; every copied file is opened under it with ``SafeFile``.
    public var storageRoot: String
    /// Absolute derived root, to resolve trickplay sheet paths given relative to it.
    public var derivedRoot: String
    /// Originals larger than this are not copied for playback (renditions always are).
    public var maxOriginalBytes: Int64 = 512 << 20

    /// Creates a writer.
    /// - Parameters:
    ///   - storageRoot: Absolute storage root.
    ///   - derivedRoot: Absolute derived root (default `<storageRoot>/.derived`).
    public init(storageRoot: String, derivedRoot: String? = nil) {
        self.storageRoot = storageRoot
        self.derivedRoot = derivedRoot ?? storageRoot + "/.derived"
    }

    /// Writes the gallery for `items` into `output` and returns the path of `index.html`.
    /// - Throws: `CocoaError` when `output` cannot be written.
    public func write(_ items: [GalleryItem], to output: String, generatedAt: Date = Date()) throws -> String {
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        // A Live Photo is one tile: its still's card carries the motion video, and the video's
        // own card is left out. The still's cards are made first, so that a motion item whose
        // video cannot be attached (no picture for the still, nothing a browser plays) keeps its
        // own card wherever it stands in the list.
        var stillCards: [String: GalleryHTML.Card] = [:]
        var attached: Set<String> = []
        for (still, motion) in Self.livePhotoPairs(items) {
            var card = makeCard(still, output: output)
            if card.preview ?? card.thumbnail != nil,
               let playable = copyPlayable(motion, to: output, directory: Self.directory(of: still), prefix: "motion-") {
                card.motion = GalleryHTML.Motion(item: motion, url: playable.url, mime: playable.mime, isRendition: playable.isRendition)
                attached.insert(motion.id)
            }
            stillCards[still.id] = card
        }
        let pages = items.compactMap { item in
            attached.contains(item.id) ? nil : stillCards[item.id] ?? makeCard(item, output: output)
        }
        let html = GalleryHTML.render(pages, generatedAt: generatedAt)
        let index = (output as NSString).appendingPathComponent("index.html")
        try Data(html.utf8).write(to: URL(fileURLWithPath: index), options: .atomic)
        return index
    }

    /// `media/<item id>`: where an item's copies go.
    static func directory(of item: GalleryItem) -> String { "media/\(safeComponent(item.id))" }

    /// The card of one item, with its files copied under ``directory(of:)``.
    func makeCard(_ item: GalleryItem, output: String) -> GalleryHTML.Card {
        var card = GalleryHTML.Card(item: item)
        let directory = Self.directory(of: item)
        func bring(_ storagePath: String?, as role: String) -> String? {
            guard let storagePath, !storagePath.isEmpty else { return nil }
            return copy(storagePath, to: output, relative: "\(directory)/\(role)\(Self.extensionOf(storagePath))")
        }
        // Derived files are stored relative to the storage root; a path relative to the derived
        // root is accepted too.
        func bringDerived(_ path: String?, as role: String) -> String? {
            bring(path.flatMap { resolveDerived($0) }, as: role)
        }
        card.thumbnail = bringDerived(item.thumbnailPath, as: "thumbnail")
        card.preview = bringDerived(item.previewPath, as: "preview")
        if let trickplay = TrickplayInfo(item.processingInfo["trickplay"]) {
            var sheets: [String] = []
            for (index, sheet) in trickplay.sheets.prefix(200).enumerated() {
                guard let storagePath = resolveDerived(sheet),
                      let copied = copy(storagePath, to: output, relative: "\(directory)/trickplay-\(index)\(Self.extensionOf(sheet))") else {
                    sheets = []
                    break
                }
                sheets.append(copied)
            }
            if !sheets.isEmpty { card.trickplay = (trickplay, sheets) }
        }
        card.playable = copyPlayable(item, to: output, directory: directory)
        if item.kind == "image", card.preview ?? card.thumbnail != nil, let clip = Self.playableMotionPhotoClip(item) {
            card.embeddedClip = copy(clip, to: output, relative: "\(directory)/motion-photo.mp4").map { ($0, "video/mp4") }
        }
        if card.preview == nil, card.thumbnail == nil, item.kind == "image", Self.browserShowsImage(item), (item.size ?? 0) <= 64 << 20 {
            card.preview = bring(item.storagePath, as: "original")
        }
        return card
    }

    /// The storage path of the clip the metadata job extracted from a motion photo, when there is
    /// one and Chromium plays it as is (H.264 in MP4); `nil` for any other photo.
    static func playableMotionPhotoClip(_ item: GalleryItem) -> String? {
        guard let clip = item.metadata["motion_photo"]?.objectValue, clip["error"] == nil,
              clip["codec"]?.stringValue == "h264", let file = clip["file"]?.stringValue, !file.isEmpty else { return nil }
        return file
    }

    /// Copies what a browser plays of `item` into `directory` as `<prefix>rendition.<ext>` (its
    /// first web rendition) or else `<prefix>original.<ext>` (the original, when Chromium plays it
    /// as is and it is not too large).
    func copyPlayable(_ item: GalleryItem, to output: String, directory: String,
                      prefix: String = "") -> (url: String, mime: String, isRendition: Bool)? {
        if let (path, mime) = playableRendition(item), let storagePath = resolveDerived(path),
           let url = copy(storagePath, to: output, relative: "\(directory)/\(prefix)rendition\(Self.extensionOf(storagePath))") {
            return (url, mime, true)
        }
        if let mime = Self.playableOriginalMIME(item), (item.size ?? 0) <= maxOriginalBytes, !item.storagePath.isEmpty,
           let url = copy(item.storagePath, to: output, relative: "\(directory)/\(prefix)original\(Self.extensionOf(item.storagePath))") {
            return (url, mime, false)
        }
        return nil
    }

    /// The Live Photos of `items` as (still, motion video) pairs, in the still's order: the
    /// metadata job's links (``JobStore`` in MediaNestQueue) agree both ways, the still is an
    /// image, and the video is a `motion` video that did not fail (a failed one keeps its own
    /// card, so its error stays in sight).
    public static func livePhotoPairs(_ items: [GalleryItem]) -> [(still: GalleryItem, motion: GalleryItem)] {
        let byID = Dictionary(items.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var taken: Set<String> = []
        return items.compactMap { still in
            guard still.kind == "image", let videoID = still.metadata["live_photo"]?["video_id"]?.stringValue,
                  let motion = byID[videoID], motion.kind == "video", motion.status != "error",
                  motion.metadata["live_photo"]?["role"]?.stringValue == "motion",
                  motion.metadata["live_photo"]?["still_id"]?.stringValue == still.id,
                  taken.insert(motion.id).inserted else { return nil }
            return (still, motion)
        }
    }

    /// A sheet path relative to the derived root (`3f/<uuid>/trickplay/sheet-000.jpg`) or to the
    /// storage root (`.derived/3f/...`), as a storage-relative path that exists.
    func resolveDerived(_ path: String) -> String? {
        guard !path.isEmpty else { return nil }
        let layoutPrefix: String? = {
            let base = storageRoot.hasSuffix("/") ? String(storageRoot.dropLast()) : storageRoot
            return derivedRoot.hasPrefix(base + "/") ? String(derivedRoot.dropFirst(base.count + 1)) : nil
        }()
        var candidates: [String] = []
        if let layoutPrefix, !path.hasPrefix(layoutPrefix + "/") { candidates.append(layoutPrefix + "/" + path) }
        candidates.append(path)
        return candidates.first { (try? SafeFile.open(relativePath: $0, in: storageRoot, limits: PlacementContext.unlimited)) != nil }
    }

    /// The first rendition a browser plays, from `processing_info.renditions[]`.
    func playableRendition(_ item: GalleryItem) -> (String, String)? {
        for rendition in item.processingInfo["renditions"]?.arrayValue ?? [] {
            guard let path = rendition["path"]?.stringValue else { continue }
            let container = (rendition["container"]?.stringValue ?? "").lowercased()
            let ext = Self.extensionOf(path).lowercased()
            if container.contains("webm") || ext == ".webm" { return (path, "video/webm") }
            if ext == ".m4a" || container == "m4a" { return (path, "audio/mp4") }
            if container.contains("mp4") || container.contains("mov") || ext == ".mp4" || ext == ".m4v" {
                return (path, item.kind == "audio" ? "audio/mp4" : "video/mp4")
            }
        }
        return nil
    }

    /// The original's type for a `<video>`/`<audio>` source when Chromium plays it as is.
    static func playableOriginalMIME(_ item: GalleryItem) -> String? {
        let video = item.metadata["video_codec"]?.stringValue ?? ""
        let audio = item.metadata["audio_codec"]?.stringValue ?? ""
        let container = item.metadata["container"]?.stringValue ?? ""
        switch item.kind {
        case "video":
            guard ["h264", "vp8", "vp9", "av1"].contains(video), ["", "aac", "mp3", "opus", "vorbis", "flac"].contains(audio) else { return nil }
            if container == "webm" || container == "matroska" { return "video/webm" }
            if ["mp4", "mov", "m4v", "3gp"].contains(container) || item.mimeType == "video/mp4" || item.mimeType == "video/quicktime" { return "video/mp4" }
            return nil
        case "audio":
            guard ["mp3", "aac", "flac", "opus", "vorbis"].contains(audio) || audio.hasPrefix("pcm_") else { return nil }
            return item.mimeType.hasPrefix("audio/") ? item.mimeType : "audio/mpeg"
        default:
            return nil
        }
    }

    static func browserShowsImage(_ item: GalleryItem) -> Bool {
        ["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp"].contains(item.mimeType)
    }

    /// Copies a storage-relative file into the gallery; `nil` when it cannot be opened safely.
    func copy(_ storagePath: String, to output: String, relative: String) -> String? {
        guard let file = try? SafeFile.open(relativePath: storagePath, in: storageRoot, limits: PlacementContext.unlimited) else { return nil }
        let destination = (output as NSString).appendingPathComponent(relative)
        do {
            try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: destination, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: destination))
            defer { try? handle.close() }
            try handle.truncate(atOffset: 0)
            var offset: Int64 = 0
            while true {
                let chunk = try file.read(at: offset, count: 1 << 20)
                if chunk.isEmpty { break }
                try handle.write(contentsOf: chunk)
                offset += Int64(chunk.count)
            }
            return relative
        } catch {
            return nil
        }
    }

    /// `.webp` from `…/thumbnail.webp`; only short alphanumeric extensions, else none.
    static func extensionOf(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        let ext = name[name.index(after: dot)...].lowercased()
        guard (1...5).contains(ext.count), ext.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return "" }
        return "." + ext
    }

    static func safeComponent(_ text: String) -> String {
        let cleaned = text.filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        return cleaned.isEmpty ? "item" : String(cleaned.prefix(64))
    }
}
