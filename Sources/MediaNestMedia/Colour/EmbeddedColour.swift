import CZlib
public import MediaNestCore

/// The colour code points of ITU-T H.273, as HEIF's `nclx` box and PNG's `cICP` chunk carry them.
public struct ColourCodePoints: Sendable, Hashable {
    /// Colour primaries (1 BT.709, 9 BT.2020, 11 DCI-P3, 12 Display P3 …).
    public var primaries: Int
    /// Transfer characteristics (13 sRGB, 1 BT.709, 16 PQ, 18 HLG …).
    public var transfer: Int
    /// Matrix coefficients (0 identity/RGB, 1 BT.709, 6 BT.601 …).
    public var matrix: Int
    /// Whether the samples use the full range.
    public var fullRange: Bool

    /// Creates code points.
    public init(primaries: Int, transfer: Int, matrix: Int, fullRange: Bool) {
        self.primaries = primaries
        self.transfer = transfer
        self.matrix = matrix
        self.fullRange = fullRange
    }
}

/// What a file says about the colour space of its pixels.
public enum SourceColour: Sendable, Hashable {
    /// Nothing: the pixels are read as sRGB, as browsers and libvips read them.
    case unspecified
    /// sRGB said outright, without a profile (a PNG `sRGB` chunk).
    case srgb
    /// An embedded ICC profile, exactly as stored (at most ``EmbeddedColour/maxProfileBytes``).
    case icc([UInt8])
    /// H.273 code points (HEIF `nclx`, PNG `cICP`).
    case codePoints(ColourCodePoints)
}

/// The colour facts of an image file's header, read without decoding any pixel.
///
/// Every reader here walks bytes a stranger chose, so each one is bounded: at most
/// ``maxSegments`` markers, chunks or IFD entries are looked at, a profile larger than
/// ``maxProfileBytes`` (assembled, or inflated from a PNG's `iCCP`) is ignored, every length is
/// checked against what is left, and a damaged structure ends the walk with what was found so far.
/// A profile that cannot be used is simply not one: the picture is then read as sRGB, as before.
public struct EmbeddedColour: Sendable, Hashable {
    /// The largest ICC profile taken (4 MiB; real RGB profiles are under 4 KiB, CMYK ones a few
    /// hundred KiB).
    public static let maxProfileBytes = 4 << 20
    /// The most JPEG markers, PNG/WebP chunks or TIFF IFD entries looked at.
    public static let maxSegments = 4096

    /// What the file says about its colours.
    public var colour: SourceColour = .unspecified
    /// Bits per sample, when the header says (JPEG SOF, PNG IHDR, TIFF BitsPerSample; WebP is 8).
    public var bitDepth: Int?
    /// How the pixels are stored: `rgb`, `gray`, `cmyk` or `ycck`, when the header says.
    public var model: String?
    /// A JPEG with Adobe's APP14 marker: its CMYK is stored inverted (as Photoshop writes it).
    public var adobeInverted = false

    /// Creates an empty description (nothing known).
    public init() {}

    /// Reads the colour facts of an image whose bytes `reader` gives, recognised by `codec`.
    /// GIF and BMP carry none that is used: they are sRGB.
    /// - Throws: ``JobError`` `io_error` when the file cannot be read.
    static func read(codec: PacketImageDecoder.Codec, from reader: ByteReader) throws(JobError) -> EmbeddedColour {
        switch codec {
        case .jpeg: return try jpeg(reader)
        case .png: return try png(reader)
        case .webp: return try webp(reader)
        case .tiff: return try tiff(reader)
        case .gif, .bmp:
            var found = EmbeddedColour()
            found.bitDepth = 8
            found.model = "rgb"
            return found
        }
    }

    /// Reads the colour facts of the image in `bytes` (the whole file, or its first bytes when the
    /// rest is not needed); nothing found when it is not a JPEG, PNG, WebP or TIFF.
    public static func read(_ bytes: [UInt8]) -> EmbeddedColour {
        guard let codec = PacketImageDecoder.Codec.sniff(bytes) else { return EmbeddedColour() }
        return (try? read(codec: codec, from: ByteReader(bytes))) ?? EmbeddedColour()
    }

    /// Reads the colour facts of the image file `file` (a few small reads near its start).
    /// - Throws: ``JobError`` `io_error`.
    public static func read(_ file: SafeFile) throws(JobError) -> EmbeddedColour {
        let header = try file.read(at: 0, count: 64)
        guard let codec = PacketImageDecoder.Codec.sniff(header) else { return EmbeddedColour() }
        return try read(codec: codec, from: ByteReader(file))
    }

    // MARK: JPEG

    /// APP2 `ICC_PROFILE` segments (sequence number, count, data), reassembled in sequence order;
    /// APP14 `Adobe`; the frame header's precision and components. Stops at the first scan.
    static func jpeg(_ r: ByteReader) throws(JobError) -> EmbeddedColour {
        var found = EmbeddedColour()
        var chunks: [Int: [UInt8]] = [:]
        var declaredCount: Int?
        var total = 0
        var usable = true
        var offset: Int64 = 2
        var segments = 0
        let iccSignature = Array("ICC_PROFILE".utf8) + [0]
        while segments < maxSegments {
            segments += 1
            let head = try r.read(offset, 4)
            guard head.count >= 2, head[0] == 0xFF else { break }
            let marker = head[1]
            if marker == 0xFF { offset += 1; continue }
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { offset += 2; continue }
            if marker == 0xD9 || marker == 0xDA || head.count < 4 { break }
            let length = Int(head[2]) << 8 | Int(head[3])
            guard length >= 2 else { break }
            let dataStart = offset + 4
            let dataLength = length - 2
            switch marker {
            case 0xE2 where dataLength > iccSignature.count + 2:
                let data = try r.read(dataStart, dataLength)
                guard data.count == dataLength, data.starts(with: iccSignature) else { break }
                let sequence = Int(data[12]), count = Int(data[13])
                if declaredCount == nil { declaredCount = count }
                guard declaredCount == count, sequence >= 1, sequence <= count, chunks[sequence] == nil,
                      total + dataLength - 14 <= maxProfileBytes else { usable = false; break }
                chunks[sequence] = Array(data[14...])
                total += dataLength - 14
            case 0xEE where dataLength >= 12:
                let data = try r.read(dataStart, 12)
                if data.starts(with: Array("Adobe".utf8)) { found.adobeInverted = true }
            case 0xC0...0xCF where marker != 0xC4 && marker != 0xC8 && marker != 0xCC && dataLength >= 6:
                let data = try r.read(dataStart, 6)
                guard data.count == 6 else { break }
                found.bitDepth = Int(data[0])
                switch data[5] {
                case 1: found.model = "gray"
                case 3: found.model = "rgb"
                case 4: found.model = "cmyk"
                default: break
                }
            default:
                break
            }
            offset = dataStart + Int64(dataLength)
        }
        if usable, let count = declaredCount, count > 0, chunks.count == count {
            var profile: [UInt8] = []
            profile.reserveCapacity(total)
            for sequence in 1...count { profile += chunks[sequence]! }
            found.colour = .icc(profile)
        }
        return found
    }

    // MARK: PNG

    /// `IHDR`, then `cICP`, `iCCP` (zlib, inflated to at most ``maxProfileBytes``) and `sRGB`
    /// before the first `IDAT`; when several are present `cICP` wins, then `iCCP`, then `sRGB`
    /// (the order of the PNG specification, third edition).
    static func png(_ r: ByteReader) throws(JobError) -> EmbeddedColour {
        var found = EmbeddedColour()
        var offset: Int64 = 8
        var segments = 0
        var icc: [UInt8]?
        var cicp: ColourCodePoints?
        var srgb = false
        while segments < maxSegments {
            segments += 1
            let head = try r.read(offset, 8)
            guard head.count == 8 else { break }
            let length = Int(head[0]) << 24 | Int(head[1]) << 16 | Int(head[2]) << 8 | Int(head[3])
            let type = String(decoding: head[4..<8], as: UTF8.self)
            guard length >= 0, length <= 0x7FFF_FFFF, offset + 12 + Int64(length) <= r.size else { break }
            if type == "IDAT" || type == "IEND" { break }
            switch type {
            case "IHDR" where length >= 13:
                let data = try r.read(offset + 8, 13)
                guard data.count == 13 else { break }
                found.bitDepth = Int(data[8])
                found.model = data[9] == 0 || data[9] == 4 ? "gray" : "rgb"
            case "iCCP" where length <= maxProfileBytes && icc == nil:
                let data = try r.read(offset + 8, length)
                // Name (1–79 bytes), NUL, compression method 0, zlib stream.
                guard let nul = data.prefix(80).firstIndex(of: 0), nul >= 1, nul + 2 < data.count, data[nul + 1] == 0 else { break }
                icc = Zlib.inflate(Array(data[(nul + 2)...]), limit: maxProfileBytes)
            case "cICP" where length == 4:
                let data = try r.read(offset + 8, 4)
                guard data.count == 4 else { break }
                cicp = ColourCodePoints(primaries: Int(data[0]), transfer: Int(data[1]), matrix: Int(data[2]), fullRange: data[3] != 0)
            case "sRGB":
                srgb = true
            default:
                break
            }
            offset += 12 + Int64(length)
        }
        if let cicp {
            found.colour = .codePoints(cicp)
        } else if let icc {
            found.colour = .icc(icc)
        } else if srgb {
            found.colour = .srgb
        }
        return found
    }

    // MARK: WebP

    /// The RIFF `ICCP` chunk (which follows `VP8X`); WebP is always 8 bits.
    static func webp(_ r: ByteReader) throws(JobError) -> EmbeddedColour {
        var found = EmbeddedColour()
        found.bitDepth = 8
        found.model = "rgb"
        let riff = try r.read(0, 12)
        guard riff.count == 12, riff.starts(with: Array("RIFF".utf8)), riff[8..<12].elementsEqual(Array("WEBP".utf8)) else { return found }
        var offset: Int64 = 12
        var segments = 0
        while segments < maxSegments {
            segments += 1
            let head = try r.read(offset, 8)
            guard head.count == 8 else { break }
            let type = String(decoding: head[0..<4], as: UTF8.self)
            let length = Int(head[4]) | Int(head[5]) << 8 | Int(head[6]) << 16 | Int(head[7]) << 24
            guard offset + 8 + Int64(length) <= r.size else { break }
            if type == "ICCP" {
                if length > 0, length <= maxProfileBytes {
                    let data = try r.read(offset + 8, length)
                    if data.count == length { found.colour = .icc(data) }
                }
                break
            }
            // The profile comes before the picture: nothing more to find past it.
            if type == "VP8 " || type == "VP8L" || type == "ANIM" || type == "ANMF" || type == "ALPH" { break }
            offset += 8 + Int64(length) + Int64(length & 1)
        }
        return found
    }

    // MARK: TIFF

    /// IFD0's `ICCProfile` (34675), `BitsPerSample` (258) and `PhotometricInterpretation` (262).
    static func tiff(_ r: ByteReader) throws(JobError) -> EmbeddedColour {
        var found = EmbeddedColour()
        let header = try r.read(0, 8)
        guard header.count == 8 else { return found }
        let little: Bool
        if header.starts(with: [0x49, 0x49, 0x2A, 0x00]) { little = true }
        else if header.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { little = false }
        else { return found }
        func u16(_ b: [UInt8], _ i: Int) -> Int { little ? Int(b[i]) | Int(b[i + 1]) << 8 : Int(b[i]) << 8 | Int(b[i + 1]) }
        func u32(_ b: [UInt8], _ i: Int) -> Int64 {
            let v = little ? UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
                           : UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
            return Int64(v)
        }
        let ifd = u32(header, 4)
        let countBytes = try r.read(ifd, 2)
        guard countBytes.count == 2 else { return found }
        let count = min(u16(countBytes, 0), maxSegments)
        let entries = try r.read(ifd + 2, count * 12)
        var samples = 1
        for index in 0..<(entries.count / 12) {
            let e = index * 12
            let tag = u16(entries, e), type = u16(entries, e + 2)
            let valueCount = u32(entries, e + 4)
            switch tag {
            case 258 where type == 3:
                // One SHORT per sample; inline when there are at most two.
                if valueCount <= 2 { found.bitDepth = u16(entries, e + 8) }
                else {
                    let first = try r.read(u32(entries, e + 8), 2)
                    if first.count == 2 { found.bitDepth = u16(first, 0) }
                }
            case 262 where type == 3:
                switch u16(entries, e + 8) {
                case 0, 1: found.model = "gray"
                case 2, 3, 6: found.model = "rgb"
                case 5: found.model = "cmyk"
                default: break
                }
            case 277 where type == 3:
                samples = u16(entries, e + 8)
            case 34675 where (type == 7 || type == 1) && valueCount > 4 && valueCount <= Int64(maxProfileBytes):
                let data = try r.read(u32(entries, e + 8), Int(valueCount))
                if data.count == Int(valueCount) { found.colour = .icc(data) }
            default:
                break
            }
        }
        if found.model == "cmyk" && samples < 4 { found.model = nil }
        return found
    }
}

/// Random access to the bytes of a file or a buffer, for the header readers above: a read past
/// the end gives what is there (possibly nothing).
struct ByteReader {
    /// The total size in bytes.
    let size: Int64
    private let source: Source

    private enum Source {
        case bytes([UInt8])
        case file(SafeFile)
    }

    init(_ bytes: [UInt8]) {
        size = Int64(bytes.count)
        source = .bytes(bytes)
    }

    init(_ file: SafeFile) {
        size = file.size
        source = .file(file)
    }

    /// Up to `count` bytes at `offset`; fewer at the end, none past it or for a negative offset.
    func read(_ offset: Int64, _ count: Int) throws(JobError) -> [UInt8] {
        guard offset >= 0, count > 0, offset < size else { return [] }
        let available = Int(min(Int64(count), size - offset))
        switch source {
        case .bytes(let bytes):
            let start = Int(offset)
            return Array(bytes[start..<(start + available)])
        case .file(let file):
            return try file.read(at: offset, count: available)
        }
    }
}

/// zlib, for a PNG's `iCCP` profile and the one a `p3` PNG output carries.
enum Zlib {
    /// Inflates a zlib stream, giving up (nil) when it is damaged or would exceed `limit` bytes.
    static func inflate(_ input: [UInt8], limit: Int) -> [UInt8]? {
        var stream = z_stream()
        guard inflateInit_(&stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var input = input
        return input.withUnsafeMutableBufferPointer { source -> [UInt8]? in
            stream.next_in = source.baseAddress
            stream.avail_in = UInt32(source.count)
            while true {
                let status: Int32 = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                guard output.count + produced <= limit else { return nil }
                output += chunk[0..<produced]
                if status == Z_STREAM_END { return output }
                // No progress possible: truncated or damaged.
                guard status == Z_OK, produced > 0 || stream.avail_in > 0 else { return nil }
            }
        }
    }

    /// Deflates `input` into a zlib stream.
    static func deflate(_ input: [UInt8]) -> [UInt8]? {
        var length = compressBound(UInt(input.count))
        var output = [UInt8](repeating: 0, count: Int(length))
        let status = output.withUnsafeMutableBufferPointer { out in
            input.withUnsafeBufferPointer { compress2(out.baseAddress, &length, $0.baseAddress, UInt(input.count), 9) }
        }
        guard status == Z_OK else { return nil }
        return Array(output[0..<Int(length)])
    }
}
