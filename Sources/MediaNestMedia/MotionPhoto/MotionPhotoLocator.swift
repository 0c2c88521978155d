import Foundation
import Glibc

/// Finds the video a phone hid inside a photo, from the photo's bytes alone.
///
/// Four layouts are known:
/// - **Samsung HEIC**: a top-level ISO BMFF box of type `mpvd` whose payload is the MP4.
/// - **Samsung JPEG**: after the JPEG, the marker `MotionPhoto_Data` and then the MP4, up to the
///   Samsung trailer directory (`SEFH` … length, `SEFT` at the very end) or the end of the file.
/// - **Google, Motion Photo 1.0**: XMP `Container:Directory` lists the file's items in order;
///   the one with `Item:Semantic="MotionPhoto"` has an `Item:Length`, and the items after the
///   primary image are appended at the end of the file in that order.
/// - **Google, older (`MicroVideo`)**: XMP `GCamera:MicroVideoOffset` is the video's distance
///   from the end of the file.
///
/// Everything read is bounded: at most ``maxSegments`` JPEG segments and ``maxBoxes`` boxes are
/// walked, XMP is read from one APP1 segment (≤ 64 KiB), the `MotionPhoto_Data` search reads at
/// most ``maxMarkerScanBytes``, and every offset and length is checked against the file size in
/// 64-bit arithmetic before it is used. The locator never allocates more than one read chunk.
public enum MotionPhotoLocator {
    /// Which layout a video was found through.
    public enum Layout: String, Sendable, Hashable {
        case samsungBox = "samsung_mpvd"
        case samsungTrailer = "samsung_trailer"
        case googleContainer = "google_container"
        case googleMicroVideo = "google_microvideo"
    }

    /// Where the video is: `length` bytes at `offset` of the photo.
    public struct Location: Sendable, Hashable {
        public var layout: Layout
        public var offset: Int64
        public var length: Int64
    }

    /// What the photo says about an embedded video.
    public enum Finding: Sendable, Hashable {
        /// Not a motion photo (no marker of any layout).
        case none
        /// A video at this place (not yet validated as MP4).
        case video(Location)
        /// The photo says it is a motion photo but its video cannot be located: a stable `code`
        /// (a `JobError` code) and a sentence.
        case unusable(layout: Layout, code: String, reason: String)
    }

    /// Most JPEG marker segments walked before the scan stops.
    public static let maxSegments = 512
    /// Most top-level boxes walked in a HEIC.
    public static let maxBoxes = 4096
    /// Most bytes searched for Samsung's `MotionPhoto_Data` marker.
    public static let maxMarkerScanBytes: Int64 = 256 << 20
    /// The bytes read per step of the marker search.
    static let scanChunk = 1 << 20

    static let samsungMarker = Array("MotionPhoto_Data".utf8)
    static let xmpNamespace = Array("http://ns.adobe.com/xap/1.0/\0".utf8)

    /// Locates the video.
    /// - Parameters:
    ///   - size: The file's size.
    ///   - read: Returns up to `count` bytes at `offset` (fewer at the end of the file), or throws.
    /// - Returns: What was found.
    public static func locate<E: Error>(size: Int64, read: (Int64, Int) throws(E) -> [UInt8]) throws(E) -> Finding {
        let head = try read(0, 16)
        if head.count >= 4, head[0] == 0xFF, head[1] == 0xD8 {
            return try locateInJPEG(size: size, read: read)
        }
        if head.count >= 12, head[4..<8].elementsEqual(Array("ftyp".utf8)) {
            return try locateInBoxes(size: size, read: read)
        }
        return .none
    }

    /// Convenience for an in-memory file (tests, fuzzing).
    public static func locate(in bytes: [UInt8]) -> Finding {
        locate(size: Int64(bytes.count)) { (offset: Int64, count: Int) -> [UInt8] in
            guard offset >= 0, offset < Int64(bytes.count), count > 0 else { return [] }
            let start = Int(offset)
            return Array(bytes[start..<min(bytes.count, start + count)])
        }
    }

    // MARK: HEIC: the `mpvd` box

    private static func locateInBoxes<E: Error>(size: Int64, read: (Int64, Int) throws(E) -> [UInt8]) throws(E) -> Finding {
        var offset: Int64 = 0
        for _ in 0..<maxBoxes {
            guard offset + 8 <= size else { return .none }
            let header = try read(offset, 16)
            guard header.count >= 8 else { return .none }
            var boxSize = Int64(be32(header, 0))
            let type = String(decoding: header[4..<8], as: UTF8.self)
            var headerSize: Int64 = 8
            if boxSize == 1 {
                guard header.count >= 16 else { return .none }
                let large = be64(header, 8)
                guard large <= UInt64(Int64.max) else { return broken(type == "mpvd", "its box size is impossible") }
                boxSize = Int64(large)
                headerSize = 16
            } else if boxSize == 0 {
                boxSize = size - offset
            }
            guard boxSize >= headerSize else {
                return type == "mpvd" ? .unusable(layout: .samsungBox, code: "corrupt_media", reason: "Its mpvd box has an impossible size (\(boxSize) bytes).") : .none
            }
            let (end, overflow) = offset.addingReportingOverflow(boxSize)
            if type == "mpvd" {
                guard !overflow, end <= size else {
                    return .unusable(layout: .samsungBox, code: "corrupt_media",
                                     reason: "Its mpvd box claims \(boxSize) bytes, but only \(size - offset) remain in the file: the video is truncated.")
                }
                return .video(Location(layout: .samsungBox, offset: offset + headerSize, length: boxSize - headerSize))
            }
            guard !overflow, end <= size else { return .none }
            offset = end
        }
        return .none
    }

    private static func broken(_ isMotion: Bool, _ what: String) -> Finding {
        isMotion ? .unusable(layout: .samsungBox, code: "corrupt_media", reason: "Its mpvd box is damaged: \(what).") : .none
    }

    // MARK: JPEG: XMP, then Samsung's marker

    private static func locateInJPEG<E: Error>(size: Int64, read: (Int64, Int) throws(E) -> [UInt8]) throws(E) -> Finding {
        // Walk the marker segments up to the start of scan, looking for the XMP APP1.
        var offset: Int64 = 2
        var scanStart: Int64 = 2
        var xmp: [UInt8]?
        for _ in 0..<maxSegments {
            let marker = try read(offset, 4)
            guard marker.count == 4, marker[0] == 0xFF else { break }
            if marker[1] == 0xFF { offset += 1; continue }  // fill byte
            let code = marker[1]
            if code == 0xD8 || (0xD0...0xD7).contains(code) || code == 0x01 { offset += 2; continue }
            if code == 0xD9 { break }
            let length = Int64(marker[2]) << 8 | Int64(marker[3])
            guard length >= 2 else { break }
            if code == 0xE1, xmp == nil, length > 2 + Int64(xmpNamespace.count) {
                let body = try read(offset + 4, Int(length - 2))
                if body.starts(with: xmpNamespace) { xmp = Array(body.dropFirst(xmpNamespace.count)) }
            }
            offset += 2 + length
            if code == 0xDA { break }  // entropy-coded data follows
        }
        scanStart = offset

        guard let xmp, let google = googleFinding(xmp: xmp, size: size) else {
            return try samsungTrailer(size: size, from: scanStart, read: read)
        }
        // Samsung JPEGs carry Google's XMP too, but keep their trailer directory after the video,
        // so "appended at the end" misses by the trailer's size: when Google's place holds no MP4,
        // Samsung's marker decides.
        if case .video(let location) = google, try !read(location.offset + 4, 4).elementsEqual(Array("ftyp".utf8)),
           case .video(let samsung) = try samsungTrailer(size: size, from: scanStart, read: read) {
            return .video(samsung)
        }
        return google
    }

    /// The Google layouts, from the XMP packet; `nil` when the XMP names no motion photo.
    static func googleFinding(xmp: [UInt8], size: Int64) -> Finding? {
        let text = String(decoding: xmp, as: UTF8.self)
        // Motion Photo 1.0: the container directory.
        let items = XMPScanner.containerItems(text)
        if let index = items.firstIndex(where: { $0.semantic?.caseInsensitiveCompare("MotionPhoto") == .orderedSame }) {
            var tail: Int64 = 0
            for item in items[index...] {
                guard let length = item.length, length > 0 else {
                    return .unusable(layout: .googleContainer, code: "corrupt_media",
                                     reason: "Its XMP container directory lists an item without a positive Item:Length.")
                }
                let (sum, overflow) = tail.addingReportingOverflow(length)
                guard !overflow, sum <= size else {
                    return .unusable(layout: .googleContainer, code: "corrupt_media",
                                     reason: "Its XMP container directory says the appended items take \(overflow ? "more than 2^63" : String(sum)) bytes, more than the file's \(size): the video is truncated.")
                }
                tail = sum
            }
            return .video(Location(layout: .googleContainer, offset: size - tail, length: items[index].length ?? 0))
        }
        // MicroVideo: the offset from the end.
        if let value = XMPScanner.value(of: "MicroVideoOffset", in: text) {
            guard let distance = Int64(value), distance > 0 else {
                return .unusable(layout: .googleMicroVideo, code: "corrupt_media", reason: "Its XMP GCamera:MicroVideoOffset (\(value.prefix(40))) is not a positive number.")
            }
            guard distance <= size else {
                return .unusable(layout: .googleMicroVideo, code: "corrupt_media",
                                 reason: "Its XMP GCamera:MicroVideoOffset says the video starts \(distance) bytes before the end, but the file has only \(size): the video is truncated.")
            }
            return .video(Location(layout: .googleMicroVideo, offset: size - distance, length: distance))
        }
        return nil
    }

    /// Samsung's `MotionPhoto_Data` marker after the picture; the video ends where Samsung's
    /// trailer directory (`SEFH`) starts, or at the end of the file.
    private static func samsungTrailer<E: Error>(size: Int64, from start: Int64, read: (Int64, Int) throws(E) -> [UInt8]) throws(E) -> Finding {
        guard let markerAt = try find(samsungMarker, size: size, from: start, read: read) else { return .none }
        let videoStart = markerAt + Int64(samsungMarker.count)
        var videoEnd = size
        if size >= 8 {
            let last = try read(size - 8, 8)
            if last.count == 8, last[4..<8].elementsEqual(Array("SEFT".utf8)) {
                let directoryLength = Int64(last[0]) | Int64(last[1]) << 8 | Int64(last[2]) << 16 | Int64(last[3]) << 24
                let directoryStart = size - 8 - directoryLength
                if directoryStart >= videoStart, try read(directoryStart, 4).elementsEqual(Array("SEFH".utf8)) {
                    videoEnd = directoryStart
                }
            }
        }
        guard videoEnd > videoStart else {
            return .unusable(layout: .samsungTrailer, code: "corrupt_media", reason: "Its MotionPhoto_Data marker is followed by no video: the video is truncated.")
        }
        return .video(Location(layout: .samsungTrailer, offset: videoStart, length: videoEnd - videoStart))
    }

    /// The offset of the first `needle` at or after `start`, reading at most ``maxMarkerScanBytes``.
    private static func find<E: Error>(_ needle: [UInt8], size: Int64, from start: Int64, read: (Int64, Int) throws(E) -> [UInt8]) throws(E) -> Int64? {
        var offset = max(0, start)
        let limit = min(size, offset + maxMarkerScanBytes)
        while offset < limit {
            let chunk = try read(offset, min(scanChunk + needle.count, Int(limit - offset)))
            guard chunk.count >= needle.count else { return nil }
            if let at = firstIndex(of: needle, in: chunk) { return offset + Int64(at) }
            offset += Int64(chunk.count - needle.count + 1)
        }
        return nil
    }

    /// Where `needle` first occurs in `haystack`: `memchr` for its first byte, then a compare
    /// (the search runs over every photo the metadata job reads).
    static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        return haystack.withUnsafeBytes { hay -> Int? in
            needle.withUnsafeBytes { pin -> Int? in
                let last = hay.count - pin.count
                var from = 0
                while from <= last {
                    guard let hit = memchr(hay.baseAddress! + from, Int32(first), last - from + 1) else { return nil }
                    let at = hay.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    if memcmp(hay.baseAddress! + at, pin.baseAddress!, pin.count) == 0 { return at }
                    from = at + 1
                }
                return nil
            }
        }
    }

    private static func be32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    private static func be64(_ b: [UInt8], _ at: Int) -> UInt64 {
        UInt64(be32(b, at)) << 32 | UInt64(be32(b, at + 4))
    }
}

/// The few XMP facts motion photos need, found by scanning the packet's text: attribute form
/// (`Item:Length="123"`) and element form (`<Item:Length>123</Item:Length>`), whatever the
/// namespace prefix. Not an XML parser: it reads a packet of at most 64 KiB, linearly.
enum XMPScanner {
    struct Item: Hashable {
        var mime: String?
        var semantic: String?
        var length: Int64?
        var padding: Int64?
    }

    /// The container directory's items, in order.
    static func containerItems(_ text: String) -> [Item] {
        guard let directory = text.range(of: "Directory") else { return [] }
        let rest = text[directory.upperBound...]
        // Each item starts at a `…:Item` element (`<Container:Item` or `<rdf:li …><Container:Item`).
        var items: [Item] = []
        var pieces = rest.components(separatedBy: ":Item ")
        if pieces.count <= 1 { pieces = rest.components(separatedBy: ":Item>") }
        for piece in pieces.dropFirst().prefix(64) {
            let item = Item(mime: value(of: "Mime", in: piece), semantic: value(of: "Semantic", in: piece),
                            length: value(of: "Length", in: piece).flatMap { Int64($0) },
                            padding: value(of: "Padding", in: piece).flatMap { Int64($0) })
            if item.mime != nil || item.semantic != nil || item.length != nil { items.append(item) }
        }
        return items
    }

    /// The value of the first property named `name` (any prefix), attribute or element form.
    static func value(of name: String, in text: some StringProtocol) -> String? {
        var searchFrom = text.startIndex
        while let found = text.range(of: ":" + name, range: searchFrom..<text.endIndex) {
            searchFrom = found.upperBound
            var cursor = found.upperBound
            // Attribute: optional spaces, '=', quote.
            while cursor < text.endIndex, text[cursor] == " " { cursor = text.index(after: cursor) }
            if cursor < text.endIndex, text[cursor] == "=" {
                cursor = text.index(after: cursor)
                while cursor < text.endIndex, text[cursor] == " " { cursor = text.index(after: cursor) }
                guard cursor < text.endIndex, text[cursor] == "\"" || text[cursor] == "'" else { continue }
                let quote = text[cursor]
                let start = text.index(after: cursor)
                guard let end = text[start...].firstIndex(of: quote) else { return nil }
                return String(text[start..<end]).trimmingSpaces()
            }
            // Element: '>' then text up to '<'.
            if cursor < text.endIndex, text[cursor] == ">" {
                let start = text.index(after: cursor)
                guard let end = text[start...].firstIndex(of: "<") else { return nil }
                return String(text[start..<end]).trimmingSpaces()
            }
        }
        return nil
    }
}
