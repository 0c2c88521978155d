import Foundation

/// Builds EXIF blocks with any tags, for capture-time and Live Photo tests: IFD0, the Exif
/// sub-IFD (with an optional Apple MakerNote) and the GPS IFD, big-endian like an iPhone's.
public enum ExifBlockBuilder {
    /// A tag value.
    public enum Value: Sendable {
        case ascii(String)
        case rationals([(UInt32, UInt32)])
        case undefined([UInt8])
    }

    /// One tag.
    public struct Tag: Sendable {
        public var id: UInt16
        public var value: Value
        public init(_ id: UInt16, _ value: Value) {
            self.id = id
            self.value = value
        }
    }

    private static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    private static func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    private static func encoded(_ value: Value) -> (type: UInt16, count: UInt32, bytes: [UInt8]) {
        switch value {
        case .ascii(let text):
            let bytes = Array(text.utf8) + [0]
            return (2, UInt32(bytes.count), bytes)
        case .rationals(let values):
            return (5, UInt32(values.count), values.flatMap { u32($0.0) + u32($0.1) })
        case .undefined(let bytes):
            return (7, UInt32(bytes.count), bytes)
        }
    }

    /// An IFD at `offset` (offsets of out-of-line values are `offset`-relative to `base`), with
    /// extra 4-byte LONG entries (sub-IFD pointers) given as `(tag, value)`.
    private static func ifd(_ tags: [Tag], pointers: [(UInt16, UInt32)] = [], at offset: Int) -> [UInt8] {
        var entries: [(UInt16, UInt16, UInt32, [UInt8])] = tags.map { tag in
            let e = encoded(tag.value)
            return (tag.id, e.type, e.count, e.bytes)
        }
        entries += pointers.map { ($0.0, 4, 1, u32($0.1)) }
        entries.sort { $0.0 < $1.0 }
        var out = u16(UInt16(entries.count))
        var extra: [UInt8] = []
        let dataStart = offset + 2 + 12 * entries.count + 4
        for (id, type, count, bytes) in entries {
            out += u16(id) + u16(type) + u32(count)
            if bytes.count <= 4 {
                out += bytes + [UInt8](repeating: 0, count: 4 - bytes.count)
            } else {
                out += u32(UInt32(dataStart + extra.count))
                extra += bytes
                if extra.count % 2 == 1 { extra.append(0) }
            }
        }
        return out + u32(0) + extra
    }

    /// The TIFF block (from the `MM` byte order mark).
    public static func tiff(ifd0: [Tag] = [], exif: [Tag] = [], gps: [Tag] = []) -> [UInt8] {
        // Lay out IFD0 with placeholder pointers to learn its size, then the sub-IFDs after it.
        var pointerTags: [(UInt16, UInt32)] = []
        if !exif.isEmpty { pointerTags.append((0x8769, 0)) }
        if !gps.isEmpty { pointerTags.append((0x8825, 0)) }
        let ifd0Size = ifd(ifd0, pointers: pointerTags, at: 8).count
        let exifOffset = 8 + ifd0Size
        let exifBlock = exif.isEmpty ? [] : ifd(exif, at: exifOffset)
        let gpsOffset = exifOffset + exifBlock.count
        let gpsBlock = gps.isEmpty ? [] : ifd(gps, at: gpsOffset)
        var pointers: [(UInt16, UInt32)] = []
        if !exif.isEmpty { pointers.append((0x8769, UInt32(exifOffset))) }
        if !gps.isEmpty { pointers.append((0x8825, UInt32(gpsOffset))) }
        return [0x4D, 0x4D] + u16(42) + u32(8) + ifd(ifd0, pointers: pointers, at: 8) + exifBlock + gpsBlock
    }

    /// An Apple MakerNote (tag 0x927C of the Exif IFD) as iPhones write it: `Apple iOS\0`, version
    /// 1, `MM`, then an IFD whose offsets count from the MakerNote's first byte, holding
    /// ContentIdentifier (0x0011).
    public static func appleMakerNote(contentIdentifier: String) -> Tag {
        let header = Array("Apple iOS".utf8) + [0, 0, 1] + Array("MM".utf8)
        let body = ifd([Tag(0x0011, .ascii(contentIdentifier))], at: header.count)
        return Tag(0x927C, .undefined(header + body))
    }

    /// `jpeg` with an APP1 Exif segment holding `tiff`, right after SOI (and its APP0, if any).
    public static func jpeg(_ jpeg: Data, withExif tiff: [UInt8]) throws -> Data {
        let length = 2 + 6 + tiff.count
        let app1 = [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + Array("Exif".utf8) + [0, 0] + tiff
        return try ExifBuilder.insert(app1: app1, into: jpeg)
    }
}
