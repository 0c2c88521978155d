import Foundation

/// Hostile media files, built byte by byte here (or patched from a small, valid file), for the
/// hostile-file suite: decompression and allocation bombs whose headers claim far more than the
/// file holds, and disguised playlists or references that point outside the storage root.
///
/// Nothing here is large: every claim is in a header, and the bytes behind it are a few hundred
/// at most.
public enum HostileFiles {
    // MARK: - Byte helpers

    static func be16(_ value: Int) -> [UInt8] { [UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
    static func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
    static func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF)] }
    static func le32(_ value: UInt32) -> [UInt8] { [UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24)] }

    /// The CRC-32 of PNG chunks and ZIP entries (polynomial 0xEDB88320).
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        return ~crc
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in bytes {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        return b << 16 | a
    }

    /// A zlib stream holding `data` in one stored (uncompressed) deflate block.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        precondition(data.count <= 0xFFFF)
        return [0x78, 0x01, 0x01] + le16(data.count) + le16(~data.count & 0xFFFF) + data + be32(adler32(data))
    }

    /// An ISO BMFF box.
    static func box(_ type: String, _ payload: [UInt8]) -> [UInt8] { be32(UInt32(8 + payload.count)) + Array(type.utf8) + payload }
    /// An ISO BMFF full box (version and flags first).
    static func fullBox(_ type: String, version: UInt8 = 0, flags: UInt32 = 0, _ payload: [UInt8]) -> [UInt8] {
        box(type, be32(UInt32(version) << 24 | flags) + payload)
    }

    /// Finds `pattern` in `bytes` from `start`.
    static func find(_ pattern: [UInt8], in bytes: [UInt8], from start: Int = 0) -> Int? {
        guard pattern.count <= bytes.count else { return nil }
        var index = start
        while index + pattern.count <= bytes.count {
            if bytes[index] == pattern[0] && Array(bytes[index..<index + pattern.count]) == pattern { return index }
            index += 1
        }
        return nil
    }

    // MARK: - Images whose headers claim huge dimensions

    /// A PNG whose IHDR claims `width`×`height` (8-bit RGB), followed by a small valid IDAT.
    public static func png(width: UInt32, height: UInt32) -> [UInt8] {
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(UInt32(data.count)) + body + be32(crc32(body))
        }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])
            + chunk("IDAT", zlibStored([UInt8](repeating: 0, count: 4096)))
            + chunk("IEND", [])
    }

    /// One 1×1 GIF image (descriptor, LZW code size 2, one pixel of colour 0) at the top left.
    static let gifPixel: [UInt8] = [0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00]

    /// A GIF whose logical screen and only image both claim `width`×`height`.
    public static func gif(width: UInt16, height: UInt16) -> [UInt8] {
        Array("GIF89a".utf8) + le16(Int(width)) + le16(Int(height)) + [0x80, 0, 0] + [0, 0, 0, 255, 255, 255]
            + [0x2C, 0, 0, 0, 0] + le16(Int(width)) + le16(Int(height)) + [0x00, 0x02, 0x02, 0x44, 0x01, 0x00] + [0x3B]
    }

    /// An animated GIF of `frames` 1×1 frames (each with a graphic control extension, 0.1 s) on a
    /// `width`×`height` screen, looping forever.
    public static func animatedGIF(frames: Int, width: UInt16 = 64, height: UInt16 = 64) -> [UInt8] {
        var bytes = Array("GIF89a".utf8) + le16(Int(width)) + le16(Int(height)) + [0x80, 0, 0] + [0, 0, 0, 255, 255, 255]
        bytes += [0x21, 0xFF, 0x0B] + Array("NETSCAPE2.0".utf8) + [0x03, 0x01, 0x00, 0x00, 0x00]
        bytes.reserveCapacity(bytes.count + frames * (8 + gifPixel.count) + 1)
        for _ in 0..<frames {
            bytes += [0x21, 0xF9, 0x04, 0x00, 0x0A, 0x00, 0x00, 0x00]
            bytes += gifPixel
        }
        return bytes + [0x3B]
    }

    /// A lossless WebP (VP8L) claiming `width`×`height` (each at most 16384), with a few bytes of
    /// bitstream after the header.
    public static func webp(width: Int, height: Int) -> [UInt8] {
        let bits = UInt32(width - 1) | UInt32(height - 1) << 14 | 0 << 28
        let payload: [UInt8] = [0x2F] + le32(bits) + [UInt8](repeating: 0, count: 27)
        let chunk = Array("VP8L".utf8) + le32(UInt32(payload.count)) + payload
        return Array("RIFF".utf8) + le32(UInt32(4 + chunk.count)) + Array("WEBP".utf8) + chunk
    }

    /// `jpeg` with the frame size of its first SOF0/SOF1/SOF2 segment replaced; everything else
    /// (tables, scan data) is kept, so a decoder that trusted the header would start decoding.
    public static func jpeg(patching jpeg: [UInt8], width: UInt16, height: UInt16) -> [UInt8]? {
        var bytes = jpeg
        var i = 2
        while i + 9 < bytes.count, bytes[i] == 0xFF {
            let marker = bytes[i + 1]
            if marker == 0xC0 || marker == 0xC1 || marker == 0xC2 {
                bytes[i + 5] = UInt8(height >> 8); bytes[i + 6] = UInt8(height & 0xFF)
                bytes[i + 7] = UInt8(width >> 8); bytes[i + 8] = UInt8(width & 0xFF)
                return bytes
            }
            i += 2 + (Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]))
        }
        return nil
    }

    /// A little-endian baseline TIFF (8-bit greyscale, uncompressed, one strip) whose IFD claims
    /// `width`×`height`, with 64 bytes of strip data.
    public static func tiff(width: UInt32, height: UInt32) -> [UInt8] {
        let entryCount = 9
        let dataOffset = UInt32(8 + 2 + entryCount * 12 + 4)
        func entry(_ tag: Int, _ type: Int, _ value: UInt32) -> [UInt8] {
            le16(tag) + le16(type) + le32(1) + (type == 3 ? le16(Int(value)) + [0, 0] : le32(value))
        }
        let short = 3, long = 4
        var bytes: [UInt8] = [0x49, 0x49, 0x2A, 0x00] + le32(8) + le16(entryCount)
        bytes += entry(256, long, width) + entry(257, long, height) + entry(258, short, 8) + entry(259, short, 1)
        bytes += entry(262, short, 1) + entry(273, long, dataOffset) + entry(277, short, 1) + entry(278, long, height)
        bytes += entry(279, long, 64) + le32(0)
        return bytes + [UInt8](repeating: 0x80, count: 64)
    }

    /// A JPEG XL codestream whose size header claims `width`×`height` (each at most 2^30), with
    /// default image metadata and a few bytes where the first frame would start.
    public static func jpegXL(width: UInt32, height: UInt32) -> [UInt8] {
        var writer = BitWriter()
        writer.write(0, bits: 1)                 // div8: no
        writer.write(3, bits: 2)                 // height: selector 3, 1 + u(30)
        writer.write(UInt64(height - 1), bits: 30)
        writer.write(0, bits: 3)                 // ratio 0: an explicit width follows
        writer.write(3, bits: 2)
        writer.write(UInt64(width - 1), bits: 30)
        writer.write(1, bits: 1)                 // ImageMetadata.all_default
        return [0xFF, 0x0A] + writer.bytes + [UInt8](repeating: 0, count: 32)
    }

    /// Bits written least significant first, as JPEG XL reads them.
    struct BitWriter {
        var bytes: [UInt8] = []
        var used = 0
        mutating func write(_ value: UInt64, bits: Int) {
            for bit in 0..<bits {
                if used % 8 == 0 { bytes.append(0) }
                if value >> UInt64(bit) & 1 == 1 { bytes[bytes.count - 1] |= UInt8(1 << (used % 8)) }
                used += 1
            }
        }
    }

    /// `heif` (an AVIF or HEIC) with every `ispe` property set to `width`×`height`.
    public static func heifPatchingSpatialExtents(_ heif: [UInt8], width: UInt32, height: UInt32) -> [UInt8] {
        var bytes = heif
        var from = 0
        while let at = find(Array("ispe".utf8), in: bytes, from: from) {
            bytes.replaceSubrange(at + 8..<at + 16, with: be32(width) + be32(height))
            from = at + 16
        }
        return bytes
    }

    /// A HEIF grid (`heif`, whose `idat` holds a 16-bit ImageGrid descriptor) whose grid and the
    /// grid's `ispe` claim `width`×`height`; the tiles stay as they are.
    public static func heifGrid(patching heif: [UInt8], width: UInt16, height: UInt16) -> [UInt8]? {
        guard let idat = find(Array("idat".utf8), in: heif) else { return nil }
        var bytes = heif
        let descriptor = idat + 4
        guard bytes[descriptor + 1] & 1 == 0 else { return nil }
        let oldWidth = be32(UInt32(bytes[descriptor + 4]) << 8 | UInt32(bytes[descriptor + 5]))
        let oldHeight = be32(UInt32(bytes[descriptor + 6]) << 8 | UInt32(bytes[descriptor + 7]))
        bytes.replaceSubrange(descriptor + 4..<descriptor + 8, with: be16(Int(width)) + be16(Int(height)))
        var from = 0
        while let at = find(Array("ispe".utf8), in: bytes, from: from) {
            if Array(bytes[at + 8..<at + 16]) == oldWidth + oldHeight {
                bytes.replaceSubrange(at + 8..<at + 16, with: be32(UInt32(width)) + be32(UInt32(height)))
            }
            from = at + 16
        }
        return bytes
    }

    /// `mkv` (made by ffmpeg at 320×256, so both sizes are stored in two bytes) with its video
    /// track's PixelWidth and PixelHeight set to 65535.
    public static func matroskaClaiming65535(patching mkv: [UInt8]) -> [UInt8]? {
        var bytes = mkv
        guard let width = find([0xB0, 0x82, 0x01, 0x40], in: bytes), let height = find([0xBA, 0x82, 0x01, 0x00], in: bytes) else { return nil }
        bytes.replaceSubrange(width + 2..<width + 4, with: [0xFF, 0xFF])
        bytes.replaceSubrange(height + 2..<height + 4, with: [0xFF, 0xFF])
        return bytes
    }

    // MARK: - Containers whose tables claim too much

    /// An EBML element with an 8-byte size.
    static func ebml(_ id: [UInt8], _ payload: [UInt8]) -> [UInt8] {
        let size = UInt64(payload.count)
        return id + [0x01] + (0..<7).reversed().map { UInt8((size >> (UInt64($0) * 8)) & 0xFF) } + payload
    }

    /// A Matroska file with `tracks` PCM audio tracks and one block for the first.
    public static func matroska(tracks: Int) -> [UInt8] {
        let header = ebml([0x1A, 0x45, 0xDF, 0xA3], [0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81, 0x01, 0x42, 0xF2, 0x81, 0x04, 0x42, 0xF3, 0x81, 0x08]
            + [0x42, 0x82, 0x88] + Array("matroska".utf8) + [0x42, 0x87, 0x81, 0x04, 0x42, 0x85, 0x81, 0x02])
        let info = ebml([0x15, 0x49, 0xA9, 0x66], [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40])
        var entries: [UInt8] = []
        entries.reserveCapacity(tracks * 64)
        for number in 1...tracks {
            let audio = ebml([0xE1], [0xB5, 0x84, 0x45, 0xFA, 0x00, 0x00, 0x9F, 0x81, 0x01, 0x62, 0x64, 0x81, 0x10])
            entries += ebml([0xAE], [0xD7, 0x82] + be16(number) + [0x73, 0xC5, 0x82] + be16(number) + [0x83, 0x81, 0x02]
                + [0x86, 0x8D] + Array("A_PCM/INT/LIT".utf8) + audio)
        }
        let trackList = ebml([0x16, 0x54, 0xAE, 0x6B], entries)
        let cluster = ebml([0x1F, 0x43, 0xB6, 0x75], [0xE7, 0x81, 0x00] + [0xA3, 0x88, 0x81, 0x00, 0x00, 0x80, 0, 0, 0, 0])
        return header + ebml([0x18, 0x53, 0x80, 0x67], info + trackList + cluster)
    }

    static let identityMatrix: [UInt8] = [0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000].flatMap { be32(UInt32($0)) }

    /// An MP4 with one 64×64 MPEG-4 video track whose sample table claims `samples` samples of one
    /// byte each, all in one chunk (stts, stsc and stsz agree), and 16 bytes of media data.
    public static func mp4(claimingSamples samples: UInt32) -> [UInt8] {
        let ftyp = box("ftyp", Array("isom".utf8) + be32(0x200) + Array("isomiso2mp41".utf8))
        let head = ftyp.count + mp4Movie(samples: samples, chunkOffset: 0, fragmented: false).count
        return ftyp + mp4Movie(samples: samples, chunkOffset: UInt32(head + 8), fragmented: false) + box("mdat", [UInt8](repeating: 0, count: 16))
    }

    /// A fragmented MP4: the same track with empty tables and a `trex`, then one fragment whose
    /// `trun` claims `samples` samples with no per-sample fields (every one of the defaults: one
    /// byte, one tick), and 16 bytes of media data.
    public static func fragmentedMP4(claimingSamples samples: UInt32) -> [UInt8] {
        let ftyp = box("ftyp", Array("iso5".utf8) + be32(0x200) + Array("iso5iso6mp41".utf8))
        let moov = mp4Movie(samples: 0, chunkOffset: 0, fragmented: true)
        func moof(dataOffset: UInt32) -> [UInt8] {
            let mfhd = fullBox("mfhd", be32(1))
            let tfhd = fullBox("tfhd", flags: 0x020000, be32(1))
            let trun = fullBox("trun", flags: 0x000001, be32(samples) + be32(dataOffset))
            return box("moof", mfhd + box("traf", tfhd + trun))
        }
        let moofSize = moof(dataOffset: 0).count
        return ftyp + moov + moof(dataOffset: UInt32(moofSize + 8)) + box("mdat", [UInt8](repeating: 0, count: 16))
    }

    static func mp4Movie(samples: UInt32, chunkOffset: UInt32, fragmented: Bool) -> [UInt8] {
        let mvhd = fullBox("mvhd", be32(0) + be32(0) + be32(1000) + be32(1000) + be32(0x00010000) + be16(0x0100)
            + [UInt8](repeating: 0, count: 10) + identityMatrix + [UInt8](repeating: 0, count: 24) + be32(2))
        let tkhd = fullBox("tkhd", flags: 3, be32(0) + be32(0) + be32(1) + be32(0) + be32(1000) + [UInt8](repeating: 0, count: 8)
            + be16(0) + be16(0) + be16(0) + be16(0) + identityMatrix + be32(64 << 16) + be32(64 << 16))
        let mdhd = fullBox("mdhd", be32(0) + be32(0) + be32(1000) + be32(samples) + be16(0x55C4) + be16(0))
        let hdlr = fullBox("hdlr", be32(0) + Array("vide".utf8) + [UInt8](repeating: 0, count: 12) + [0])
        let vmhd = fullBox("vmhd", flags: 1, [UInt8](repeating: 0, count: 8))
        let dinf = box("dinf", fullBox("dref", be32(1) + fullBox("url ", flags: 1, [])))
        let visual: [UInt8] = [UInt8](repeating: 0, count: 6) + be16(1) + [UInt8](repeating: 0, count: 16) + be16(64) + be16(64)
            + be32(0x00480000) + be32(0x00480000) + be32(0) + be16(1) + [UInt8](repeating: 0, count: 32) + be16(0x18) + be16(0xFFFF)
        let stsd = fullBox("stsd", be32(1) + box("mp4v", visual))
        let tables: [UInt8]
        if fragmented {
            tables = fullBox("stts", be32(0)) + fullBox("stsc", be32(0)) + fullBox("stsz", be32(0) + be32(0)) + fullBox("stco", be32(0))
        } else {
            tables = fullBox("stts", be32(1) + be32(samples) + be32(1)) + fullBox("stsc", be32(1) + be32(1) + be32(samples) + be32(1))
                + fullBox("stsz", be32(1) + be32(samples)) + fullBox("stco", be32(1) + be32(chunkOffset))
        }
        let minf = box("minf", vmhd + dinf + box("stbl", stsd + tables))
        let trak = box("trak", tkhd + box("mdia", mdhd + hdlr + minf))
        let mvex = fragmented ? box("mvex", fullBox("trex", be32(1) + be32(1) + be32(1) + be32(1) + be32(0))) : []
        return box("moov", mvhd + trak + mvex)
    }

    /// A PCM WAV file claiming `channels` channels at `sampleRate` Hz, with 4 KiB of samples.
    public static func wav(channels: UInt16, sampleRate: UInt32) -> [UInt8] {
        let data = [UInt8](repeating: 0, count: 4096)
        let blockAlign = Int(channels) &* 2
        let fmt = le16(1) + le16(Int(channels)) + le32(sampleRate) + le32(sampleRate &* UInt32(truncatingIfNeeded: blockAlign))
            + le16(blockAlign & 0xFFFF) + le16(16)
        return Array("RIFF".utf8) + le32(UInt32(4 + 8 + fmt.count + 8 + data.count)) + Array("WAVE".utf8)
            + Array("fmt ".utf8) + le32(UInt32(fmt.count)) + fmt + Array("data".utf8) + le32(UInt32(data.count)) + data
    }

    // MARK: - References out of the file

    /// `mov` (moov after mdat, as ffmpeg writes it) with its track's data reference replaced by a
    /// Macintosh alias to `path` and a `url ` entry naming `url`: a reference movie whose samples
    /// live elsewhere.
    public static func movReferencing(patching mov: [UInt8], path: String, url: String) -> [UInt8]? {
        var alias = [UInt8](repeating: 0, count: 10) + [3] + Array("Vol".utf8) + [UInt8](repeating: 0, count: 24)
        alias += [UInt8](repeating: 0, count: 12) + [9] + Array("movie.mov".utf8) + [UInt8](repeating: 0, count: 54)
        alias += [UInt8](repeating: 0, count: 16) + be16(1) + be16(1) + [UInt8](repeating: 0, count: 16)
        var record = Array(path.utf8)
        if record.count % 2 == 1 { record.append(0) }
        alias += be16(2) + be16(record.count) + record + be16(0xFFFF) + be16(0)
        let dref = fullBox("dref", be32(2) + fullBox("alis", alias) + fullBox("url ", Array(url.utf8) + [0]))
        return replacingBox(in: mov, path: ["moov", "trak", "mdia", "minf", "dinf", "dref"], with: dref)
    }

    /// Replaces the first box at `path` (container names, then the box) and fixes every
    /// enclosing box's size. Only for files whose later boxes do not move (moov last).
    static func replacingBox(in bytes: [UInt8], path: [String], with replacement: [UInt8]) -> [UInt8]? {
        var offset = 0
        while offset + 8 <= bytes.count {
            let size = Int(UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3]))
            guard size >= 8, offset + size <= bytes.count else { return nil }
            let type = String(decoding: bytes[offset + 4..<offset + 8], as: UTF8.self)
            if type == path[0] {
                let newBox: [UInt8]
                if path.count == 1 {
                    newBox = replacement
                } else {
                    guard let inner = replacingBox(in: Array(bytes[offset + 8..<offset + size]), path: Array(path.dropFirst()), with: replacement) else { return nil }
                    newBox = be32(UInt32(8 + inner.count)) + Array(bytes[offset + 4..<offset + 8]) + inner
                }
                return Array(bytes[..<offset]) + newBox + Array(bytes[(offset + size)...])
            }
            offset += size
        }
        return nil
    }
}

extension HostileFiles {
    /// The small valid files some hostile files are patched from, made with the ffmpeg CLI.
    public struct Sources: Sendable {
        /// A 64×32 baseline JPEG.
        public var jpeg: [UInt8]
        /// A 320×256 MPEG-4 Part 2 video in Matroska, 0.4 s.
        public var mkv: [UInt8]
        /// A 64×64 MPEG-4 Part 2 QuickTime movie, 0.4 s, moov after mdat.
        public var mov: [UInt8]
        /// A 1 s MP3 (440 Hz), for tag tests.
        public var mp3: [UInt8]
    }

    /// Makes ``Sources`` in a scratch directory (removed afterwards).
    public static func makeSources() throws -> Sources {
        let ffmpeg = try MediaFixtures.findTool("ffmpeg")
        let directory = NSTemporaryDirectory() + "medianest-hostile-sources-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let q = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1", "-f", "lavfi", "-i"]
        try MediaFixtures.run(ffmpeg, q + ["testsrc=size=64x32", "-frames:v", "1", "-q:v", "3", directory + "/s.jpg"])
        try MediaFixtures.run(ffmpeg, q + ["testsrc=size=320x256:rate=5:duration=0.4", "-c:v", "mpeg4", directory + "/s.mkv"])
        try MediaFixtures.run(ffmpeg, q + ["testsrc=size=64x64:rate=5:duration=0.4", "-c:v", "mpeg4", directory + "/s.mov"])
        try MediaFixtures.run(ffmpeg, q + ["sine=frequency=440:sample_rate=44100:duration=1", "-c:a", "libmp3lame", directory + "/s.mp3"])
        func bytes(_ name: String) throws -> [UInt8] { try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))) }
        return Sources(jpeg: try bytes("s.jpg"), mkv: try bytes("s.mkv"), mov: try bytes("s.mov"), mp3: try bytes("s.mp3"))
    }
}
