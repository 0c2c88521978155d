/// The EXIF fields the media library uses, parsed from a JPEG, PNG or WebP file's own bytes
/// (and from the Exif item of a HEIF file).
public struct ExifData: Sendable, Hashable {
    /// EXIF Orientation, 1 to 8 (1 = as stored; 5 to 8 swap width and height for display).
    public var orientation: Int?
    /// DateTimeOriginal (0x9003) as written (`YYYY:MM:DD HH:MM:SS`).
    public var dateTimeOriginal: String?
    /// SubSecTimeOriginal (0x9291): digits of a second's fraction for DateTimeOriginal.
    public var subSecTimeOriginal: String?
    /// OffsetTimeOriginal (0x9011, `+HH:MM`), when present.
    public var offsetTimeOriginal: String?
    /// DateTimeDigitized (0x9004; exiftool's `CreateDate`), as written.
    public var dateTimeDigitized: String?
    /// SubSecTimeDigitized (0x9292).
    public var subSecTimeDigitized: String?
    /// OffsetTimeDigitized (0x9012).
    public var offsetTimeDigitized: String?
    /// OffsetTime (0x9010): the zone of DateTime (0x0132), and the camera's zone when the two
    /// specific offsets are missing.
    public var offsetTime: String?
    /// GPSDateStamp (GPS 0x1D, `YYYY:MM:DD`, UTC).
    public var gpsDateStamp: String?
    /// GPSTimeStamp (GPS 0x07: hours, minutes, seconds, UTC).
    public var gpsTimeStamp: [Double]?
    /// Camera make.
    public var make: String?
    /// Camera model.
    public var model: String?
    /// Latitude in signed decimal degrees (south negative).
    public var latitude: Double?
    /// Longitude in signed decimal degrees (west negative).
    public var longitude: Double?
    /// The Apple MakerNote's ContentIdentifier (tag 0x0011): the identifier an iPhone also
    /// writes in the Live Photo's video (QuickTime `com.apple.quicktime.content.identifier`).
    public var appleContentIdentifier: String?

    /// Creates an empty record.
    public init() {}

    /// The capture time in ISO 8601 (``CaptureTime``), or `nil` when the EXIF has none.
    public var takenAt: String? { (creationTime ?? gpsTime)?.value }

    /// The capture time from the creation tags, in Immich's order: DateTimeOriginal (with
    /// SubSecTimeOriginal and OffsetTimeOriginal), then DateTimeDigitized (with its own sub-seconds
    /// and OffsetTimeDigitized). OffsetTime stands in for a missing specific offset. A time without
    /// any offset is written without a zone (local time of the camera, zone unknown).
    public var creationTime: CaptureTime? {
        if let value = Self.isoDateTime(dateTimeOriginal, subSeconds: subSecTimeOriginal, offset: offsetTimeOriginal ?? offsetTime) {
            return CaptureTime(value: value, source: "DateTimeOriginal")
        }
        if let value = Self.isoDateTime(dateTimeDigitized, subSeconds: subSecTimeDigitized, offset: offsetTimeDigitized ?? offsetTime) {
            return CaptureTime(value: value, source: "DateTimeDigitized")
        }
        return nil
    }

    /// GPSDateStamp + GPSTimeStamp as a UTC time (`2024-05-01T10:34:56Z`): the last resort, when
    /// nothing else dates the picture.
    public var gpsTime: CaptureTime? {
        guard let date = gpsDateStamp, let time = gpsTimeStamp, time.count == 3,
              let day = Self.isoDate(date), time.allSatisfy({ $0.isFinite && $0 >= 0 }),
              time[0] < 24, time[1] < 60, time[2] < 61,
              time[0] == time[0].rounded(), time[1] == time[1].rounded() else { return nil }
        let whole = Int(time[2])
        var seconds = whole < 10 ? "0\(whole)" : "\(whole)"
        let milliseconds = Int(((time[2] - Double(whole)) * 1000).rounded())
        if milliseconds > 0, milliseconds < 1000 {
            seconds += "." + String(String(milliseconds + 1000).dropFirst())
        }
        func two(_ value: Double) -> String { value < 10 ? "0\(Int(value))" : "\(Int(value))" }
        return CaptureTime(value: "\(day)T\(two(time[0])):\(two(time[1])):\(seconds)Z", source: "GPSDateStamp+GPSTimeStamp")
    }

    /// `YYYY:MM:DD HH:MM:SS` with optional sub-second digits and offset, as ISO 8601; `nil` when
    /// malformed or blank (`0000:00:00 00:00:00`, spaces).
    static func isoDateTime(_ raw: String?, subSeconds: String?, offset: String?) -> String? {
        guard let raw else { return nil }
        let chars = Array(raw.utf8)
        guard chars.count >= 19, chars[10] == UInt8(ascii: " ") || chars[10] == UInt8(ascii: "T"),
              let date = isoDate(String(decoding: chars[0..<10], as: UTF8.self)) else { return nil }
        let time = chars[11..<19]
        guard [0, 1, 3, 4, 6, 7].allSatisfy({ isDigit(time[11 + $0]) }), time[13] == UInt8(ascii: ":"), time[16] == UInt8(ascii: ":") else { return nil }
        let hours = Int(String(decoding: time.prefix(2), as: UTF8.self)) ?? 99
        let minutes = Int(String(decoding: time.dropFirst(3).prefix(2), as: UTF8.self)) ?? 99
        let secs = Int(String(decoding: time.dropFirst(6).prefix(2), as: UTF8.self)) ?? 99
        guard hours < 24, minutes < 60, secs < 61 else { return nil }
        var iso = "\(date)T\(String(decoding: time, as: UTF8.self))"
        if let digits = subSeconds?.trimmingSpaces(), !digits.isEmpty, digits.utf8.allSatisfy(isDigit) {
            iso += "." + digits.prefix(9)
        }
        if let offset = offset?.trimmingSpaces(), isValidOffset(offset) { iso += offset }
        return iso
    }

    /// `YYYY:MM:DD` (or with dashes) as `YYYY-MM-DD`, when it is a plausible date.
    static func isoDate(_ raw: String) -> String? {
        let chars = Array(raw.utf8)
        guard chars.count >= 10, [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy({ isDigit(chars[$0]) }),
              [4, 7].allSatisfy({ chars[$0] == UInt8(ascii: ":") || chars[$0] == UInt8(ascii: "-") }) else { return nil }
        let text = String(decoding: chars[0..<10], as: UTF8.self)
        let year = Int(text.prefix(4)) ?? 0
        let month = Int(text.dropFirst(5).prefix(2)) ?? 0
        let day = Int(text.dropFirst(8).prefix(2)) ?? 0
        guard year > 0, (1...12).contains(month), (1...31).contains(day) else { return nil }
        return "\(text.prefix(4))-\(text.dropFirst(5).prefix(2))-\(text.dropFirst(8).prefix(2))"
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// `Z`, or `±HH:MM` with hours up to 14 and minutes under 60.
    static func isValidOffset(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        if text == "Z" { return true }
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "+") || bytes[0] == UInt8(ascii: "-"), bytes[3] == UInt8(ascii: ":"),
              [1, 2, 4, 5].allSatisfy({ isDigit(bytes[$0]) }) else { return false }
        let hours = Int(bytes[1] - 0x30) * 10 + Int(bytes[2] - 0x30)
        let minutes = Int(bytes[4] - 0x30) * 10 + Int(bytes[5] - 0x30)
        return hours <= 14 && minutes < 60
    }

    var isEmpty: Bool { self == ExifData() }
}

/// A capture time and the tag it was read from.
public struct CaptureTime: Sendable, Hashable {
    /// ISO 8601: `2024-05-01T12:34:56.120+02:00`; no zone when the file gives none; `Z` for GPS time.
    public var value: String
    /// The tag: `DateTimeOriginal`, `DateTimeDigitized`, `GPSDateStamp+GPSTimeStamp`,
    /// `com.apple.quicktime.creationdate` or `creation_time`.
    public var source: String

    /// Creates a capture time.
    public init(value: String, source: String) {
        self.value = value
        self.source = source
    }
}

/// Dimensions and EXIF read from an image's header bytes, without FFmpeg.
public struct ImageHeader: Sendable, Hashable {
    /// `jpeg`, `png` or `webp`.
    public var format: String
    /// Stored width, when the header says.
    public var width: Int?
    /// Stored height, when the header says.
    public var height: Int?
    /// EXIF, when present and well formed.
    public var exif: ExifData?
    /// Why EXIF was present but ignored, for the log.
    public var exifProblem: String?
}

/// A bounded parser of image headers and EXIF (TIFF/IFD) blocks over bytes already in memory.
///
/// Every offset is checked against the buffer; loops are bounded; malformed data makes a field
/// absent (and ``ImageHeader/exifProblem`` say why), never a crash.
public enum ImageHeaderParser {
    /// Parses the header of a JPEG, PNG or WebP file.
    /// - Parameter bytes: The file's first bytes (the MIME sniffing header is enough).
    /// - Returns: The header, or `nil` when the bytes are none of those formats.
    public static func parse(_ bytes: [UInt8]) -> ImageHeader? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return parseJPEG(bytes) }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return parsePNG(bytes) }
        if bytes.count >= 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) { return parseWebP(bytes) }
        return nil
    }

    /// Parses a TIFF-structured EXIF block (starting at the `II`/`MM` byte order mark).
    /// - Parameter tiff: The block.
    /// - Returns: The fields found, or `nil` when the block is malformed.
    public static func parseExif(_ tiff: ArraySlice<UInt8>) -> ExifData? {
        TIFFReader(Array(tiff))?.read()
    }

    static func parseJPEG(_ b: [UInt8]) -> ImageHeader {
        var header = ImageHeader(format: "jpeg")
        var i = 2
        var segments = 0
        while i + 4 <= b.count, segments < 512 {
            segments += 1
            guard b[i] == 0xFF else { break }
            var markerAt = i + 1
            while markerAt < b.count, b[markerAt] == 0xFF { markerAt += 1 }  // fill bytes
            guard markerAt + 2 < b.count else { break }
            let marker = b[markerAt]
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { i = markerAt + 1; continue }
            if marker == 0xDA || marker == 0xD9 { break }  // image data starts: no more headers
            let length = Int(b[markerAt + 1]) << 8 | Int(b[markerAt + 2])
            guard length >= 2 else { break }
            let start = markerAt + 3
            let end = markerAt + 1 + length
            guard end <= b.count else { break }
            if marker == 0xE1, header.exif == nil, end - start >= 6, Array(b[start..<start + 6]) == [0x45, 0x78, 0x69, 0x66, 0, 0] {
                applyExif(b[(start + 6)..<end], to: &header)
            } else if (0xC0...0xCF).contains(marker), marker != 0xC4, marker != 0xC8, marker != 0xCC, end - start >= 5, header.width == nil {
                header.height = Int(b[start + 1]) << 8 | Int(b[start + 2])
                header.width = Int(b[start + 3]) << 8 | Int(b[start + 4])
            }
            i = end
        }
        return header
    }

    static func parsePNG(_ b: [UInt8]) -> ImageHeader {
        var header = ImageHeader(format: "png")
        var i = 8
        var chunks = 0
        while i + 8 <= b.count, chunks < 4096 {
            chunks += 1
            let length = Int(be32(b, i))
            let type = String(decoding: b[(i + 4)..<(i + 8)], as: UTF8.self)
            let start = i + 8
            guard length >= 0, length <= b.count - start else { break }
            let end = start + length
            switch type {
            case "IHDR" where length >= 8:
                header.width = Int(be32(b, start))
                header.height = Int(be32(b, start + 4))
            case "eXIf":
                applyExif(b[start..<end], to: &header)
            case "IEND":
                return header
            default: break
            }
            i = end + 4  // CRC
        }
        return header
    }

    static func parseWebP(_ b: [UInt8]) -> ImageHeader {
        var header = ImageHeader(format: "webp")
        var i = 12
        var chunks = 0
        while i + 8 <= b.count, chunks < 4096 {
            chunks += 1
            let type = String(decoding: b[i..<(i + 4)], as: UTF8.self)
            let length = Int(le32(b, i + 4))
            let start = i + 8
            guard length <= b.count - start else { break }
            let end = start + length
            switch type {
            case "VP8X" where length >= 10:
                header.width = (Int(b[start + 4]) | Int(b[start + 5]) << 8 | Int(b[start + 6]) << 16) + 1
                header.height = (Int(b[start + 7]) | Int(b[start + 8]) << 8 | Int(b[start + 9]) << 16) + 1
            case "VP8 " where length >= 10 && header.width == nil:
                if b[start + 3] == 0x9D, b[start + 4] == 0x01, b[start + 5] == 0x2A {
                    header.width = (Int(b[start + 6]) | Int(b[start + 7]) << 8) & 0x3FFF
                    header.height = (Int(b[start + 8]) | Int(b[start + 9]) << 8) & 0x3FFF
                }
            case "VP8L" where length >= 5 && header.width == nil:
                if b[start] == 0x2F {
                    let bits = UInt32(b[start + 1]) | UInt32(b[start + 2]) << 8 | UInt32(b[start + 3]) << 16 | UInt32(b[start + 4]) << 24
                    header.width = Int(bits & 0x3FFF) + 1
                    header.height = Int((bits >> 14) & 0x3FFF) + 1
                }
            case "EXIF":
                var block = b[start..<end]
                if block.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]) { block = block.dropFirst(6) }
                applyExif(block, to: &header)
            default: break
            }
            i = end + (length & 1)  // chunks are padded to even sizes
        }
        return header
    }

    private static func applyExif(_ block: ArraySlice<UInt8>, to header: inout ImageHeader) {
        if let exif = parseExif(block) {
            header.exif = exif
        } else {
            header.exifProblem = "EXIF block of \(block.count) bytes is malformed; ignored"
        }
    }

    static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}

/// Reads the few tags we need from a TIFF structure; all reads are bounds-checked.
private struct TIFFReader {
    let data: [UInt8]
    let littleEndian: Bool

    struct Entry {
        let tag: UInt16
        let type: UInt16
        let count: Int
        let valueOffset: Int  // absolute offset of the value bytes within `data`
    }

    init?(_ data: [UInt8]) {
        guard data.count >= 8 else { return nil }
        if data[0] == 0x49, data[1] == 0x49 { littleEndian = true }
        else if data[0] == 0x4D, data[1] == 0x4D { littleEndian = false }
        else { return nil }
        self.data = data
        guard u16(2) == 42 else { return nil }
    }

    /// A reader over bytes whose offsets are relative to their own start, without a TIFF header
    /// (a MakerNote's IFD).
    init(raw data: [UInt8], littleEndian: Bool) {
        self.data = data
        self.littleEndian = littleEndian
    }

    func u16(_ o: Int) -> UInt16? {
        guard o >= 0, o + 2 <= data.count else { return nil }
        return littleEndian ? UInt16(data[o]) | UInt16(data[o + 1]) << 8 : UInt16(data[o]) << 8 | UInt16(data[o + 1])
    }

    func u32(_ o: Int) -> UInt32? {
        guard o >= 0, o + 4 <= data.count else { return nil }
        let b = (UInt32(data[o]), UInt32(data[o + 1]), UInt32(data[o + 2]), UInt32(data[o + 3]))
        return littleEndian ? b.0 | b.1 << 8 | b.2 << 16 | b.3 << 24 : b.0 << 24 | b.1 << 16 | b.2 << 8 | b.3
    }

    static func typeSize(_ type: UInt16) -> Int? {
        switch type {
        case 1, 2, 6, 7: 1
        case 3, 8: 2
        case 4, 9, 11: 4
        case 5, 10, 12: 8
        default: nil
        }
    }

    func entries(at offset: Int) -> [Entry]? {
        guard let count = u16(offset), count <= 1000 else { return nil }
        var result: [Entry] = []
        for n in 0..<Int(count) {
            let at = offset + 2 + n * 12
            guard let tag = u16(at), let type = u16(at + 2), let count = u32(at + 4) else { return nil }
            guard let size = TIFFReader.typeSize(type), count > 0, count <= 1 << 20 else { continue }
            let total = size * Int(count)
            let valueOffset: Int
            if total <= 4 {
                valueOffset = at + 8
            } else {
                guard let pointer = u32(at + 8) else { continue }
                valueOffset = Int(pointer)
            }
            guard valueOffset >= 0, valueOffset + total <= data.count else { continue }
            result.append(Entry(tag: tag, type: type, count: Int(count), valueOffset: valueOffset))
        }
        return result
    }

    func ascii(_ e: Entry) -> String? {
        guard e.type == 2 || e.type == 7 else { return nil }
        let bytes = data[e.valueOffset..<(e.valueOffset + e.count)].prefix { $0 != 0 }
        let text = String(decoding: bytes, as: UTF8.self).trimmingSpaces()
        return text.isEmpty ? nil : text
    }

    func integer(_ e: Entry) -> Int? {
        switch e.type {
        case 3: u16(e.valueOffset).map(Int.init)
        case 4: u32(e.valueOffset).map(Int.init)
        case 1: Int(data[e.valueOffset])
        default: nil
        }
    }

    func rationals(_ e: Entry) -> [Double]? {
        guard e.type == 5 || e.type == 10 else { return nil }
        var values: [Double] = []
        for n in 0..<e.count {
            guard let num = u32(e.valueOffset + n * 8), let den = u32(e.valueOffset + n * 8 + 4), den != 0 else { return nil }
            values.append(e.type == 10 ? Double(Int32(bitPattern: num)) / Double(Int32(bitPattern: den)) : Double(num) / Double(den))
        }
        return values
    }

    func read() -> ExifData? {
        guard let first = u32(4), let ifd0 = entries(at: Int(first)) else { return nil }
        var exif = ExifData()
        var exifPointer: Int?
        var gpsPointer: Int?
        for e in ifd0 {
            switch e.tag {
            case 0x010F: exif.make = ascii(e)
            case 0x0110: exif.model = ascii(e)
            case 0x0112: if let v = integer(e), (1...8).contains(v) { exif.orientation = v }
            case 0x8769: exifPointer = integer(e)
            case 0x8825: gpsPointer = integer(e)
            default: break
            }
        }
        if let exifPointer, exifPointer != Int(first), let sub = entries(at: exifPointer) {
            for e in sub {
                switch e.tag {
                case 0x9003: exif.dateTimeOriginal = ascii(e)
                case 0x9004: exif.dateTimeDigitized = ascii(e)
                case 0x9010: exif.offsetTime = ascii(e)
                case 0x9011: exif.offsetTimeOriginal = ascii(e)
                case 0x9012: exif.offsetTimeDigitized = ascii(e)
                case 0x9291: exif.subSecTimeOriginal = ascii(e)
                case 0x9292: exif.subSecTimeDigitized = ascii(e)
                case 0x927C: exif.appleContentIdentifier = appleContentIdentifier(makerNote: e)
                default: break
                }
            }
        }
        if let gpsPointer, gpsPointer != Int(first), let gps = entries(at: gpsPointer) {
            var latRef: String?, lonRef: String?, lat: [Double]?, lon: [Double]?
            for e in gps {
                switch e.tag {
                case 1: latRef = ascii(e)
                case 2: lat = rationals(e)
                case 3: lonRef = ascii(e)
                case 4: lon = rationals(e)
                case 7: exif.gpsTimeStamp = rationals(e)
                case 0x1D: exif.gpsDateStamp = ascii(e)
                default: break
                }
            }
            if let value = degrees(lat, negative: latRef?.uppercased() == "S"), abs(value) <= 90,
               let other = degrees(lon, negative: lonRef?.uppercased() == "W"), abs(other) <= 180 {
                exif.latitude = value
                exif.longitude = other
            }
        }
        return exif
    }

    /// The ContentIdentifier (tag 0x0011) of an Apple MakerNote: `Apple iOS\0`, two version bytes,
    /// a byte order mark, then an IFD at offset 14 whose value offsets count from the MakerNote's
    /// first byte (as exiftool's Apple.pm reads it). Other makers' notes give `nil`.
    private func appleContentIdentifier(makerNote e: Entry) -> String? {
        guard e.type == 7, e.count > 16 else { return nil }
        let note = Array(data[e.valueOffset..<(e.valueOffset + e.count)])
        guard note.starts(with: Array("Apple iOS".utf8) + [0]) else { return nil }
        let order = note[12..<14]
        guard order.elementsEqual("MM".utf8) || order.elementsEqual("II".utf8) else { return nil }
        let reader = TIFFReader(raw: note, littleEndian: order.first == UInt8(ascii: "I"))
        guard let entries = reader.entries(at: 14), let entry = entries.first(where: { $0.tag == 0x0011 }),
              let identifier = reader.ascii(entry), identifier.utf8.count <= 128 else { return nil }
        return identifier
    }

    private func degrees(_ parts: [Double]?, negative: Bool) -> Double? {
        guard let parts, !parts.isEmpty, parts.allSatisfy({ $0.isFinite && $0 >= 0 }) else { return nil }
        var value = parts[0]
        if parts.count > 1 { value += parts[1] / 60 }
        if parts.count > 2 { value += parts[2] / 3600 }
        return negative ? -value : value
    }
}

// MARK: TIFF dimensions (for the thumbnail decoder's header-first pixel limit)

extension ImageHeaderParser {
    /// The width and height in the first IFD of a TIFF file (tags 256 and 257), or `nil`.
    /// - Parameter bytes: The file's first bytes; the first IFD must lie inside them.
    static func tiffDimensions(_ bytes: [UInt8]) -> (width: Int, height: Int)? {
        guard let reader = TIFFReader(bytes), let first = reader.u32(4), let ifd0 = reader.entries(at: Int(first)) else { return nil }
        var width: Int?, height: Int?
        for e in ifd0 {
            if e.tag == 256 { width = reader.integer(e) }
            if e.tag == 257 { height = reader.integer(e) }
        }
        guard let width, let height else { return nil }
        return (width, height)
    }
}
