import CZlib

/// Puts an ICC profile into an encoded WebP, JPEG or PNG (the outputs of `stills.colorspace: p3`).
///
/// libavcodec's encoders write none, so the profile is added to their output: a JPEG `APP2`
/// `ICC_PROFILE` segment after the JFIF header, a WebP `ICCP` chunk after a `VP8X` header (made
/// when the encoder wrote the simple format), a PNG `iCCP` chunk after `IHDR`. Each returns `nil`
/// when the bytes are not what the encoder writes (the caller then fails the job rather than
/// write a picture whose colours would be read wrongly).
enum ICCEmbedding {
    /// The largest profile one JPEG APP2 segment holds; the worker embeds only its own Display P3
    /// profile (well under 1 KiB), so one segment is always enough.
    static let maxJPEGSegmentProfile = 65_519

    /// `jpeg` with `profile` in one APP2 segment right after SOI (and APP0 JFIF, when present).
    static func jpeg(_ jpeg: [UInt8], profile: [UInt8]) -> [UInt8]? {
        guard jpeg.count >= 4, jpeg[0] == 0xFF, jpeg[1] == 0xD8, !profile.isEmpty, profile.count <= maxJPEGSegmentProfile else { return nil }
        var insertAt = 2
        if jpeg[2] == 0xFF, jpeg[3] == 0xE0, jpeg.count >= 6 {
            insertAt = 4 + (Int(jpeg[4]) << 8 | Int(jpeg[5]))
            guard insertAt <= jpeg.count else { return nil }
        }
        let length = 2 + 14 + profile.count
        var segment: [UInt8] = [0xFF, 0xE2, UInt8(length >> 8), UInt8(length & 0xFF)]
        segment += Array("ICC_PROFILE".utf8) + [0, 1, 1]
        segment += profile
        return Array(jpeg[..<insertAt]) + segment + Array(jpeg[insertAt...])
    }

    /// `webp` with `profile` in an `ICCP` chunk, the `VP8X` header's ICC flag set (a `VP8X` header
    /// of `width` × `height` is made for a simple-format file, with the alpha flag when `hasAlpha`).
    static func webp(_ webp: [UInt8], profile: [UInt8], width: Int, height: Int, hasAlpha: Bool) -> [UInt8]? {
        guard webp.count >= 20, webp.starts(with: Array("RIFF".utf8)), webp[8..<12].elementsEqual(Array("WEBP".utf8)),
              !profile.isEmpty, width >= 1, height >= 1, width <= 1 << 24, height <= 1 << 24 else { return nil }
        var chunks = Array(webp[12...])
        let iccp = Array("ICCP".utf8) + le32(profile.count) + profile + (profile.count & 1 == 1 ? [0] : [])
        if chunks.starts(with: Array("VP8X".utf8)) {
            guard chunks.count >= 18 else { return nil }
            chunks[8] |= 0x20
            chunks.insert(contentsOf: iccp, at: 18)
        } else {
            var vp8x: [UInt8] = Array("VP8X".utf8) + le32(10) + [0x20 | (hasAlpha ? 0x10 : 0), 0, 0, 0]
            vp8x += le24(width - 1) + le24(height - 1)
            chunks = vp8x + iccp + chunks
        }
        return Array("RIFF".utf8) + le32(4 + chunks.count) + Array("WEBP".utf8) + chunks
    }

    /// `png` with `profile` in an `iCCP` chunk (zlib-compressed, named `name`) after `IHDR`.
    static func png(_ png: [UInt8], profile: [UInt8], name: String) -> [UInt8]? {
        // Signature (8) + IHDR (4 length + 4 type + 13 data + 4 CRC).
        guard png.count >= 33, png[12..<16].elementsEqual(Array("IHDR".utf8)), !profile.isEmpty,
              let compressed = Zlib.deflate(profile) else { return nil }
        let data = Array(name.utf8.prefix(79)) + [0, 0] + compressed
        let typeAndData = Array("iCCP".utf8) + data
        let crc = typeAndData.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
        let chunk = be32(data.count) + typeAndData + be32(Int(crc))
        return Array(png[..<33]) + chunk + Array(png[33...])
    }

    private static func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }
    private static func le24(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF)] }
    private static func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}
