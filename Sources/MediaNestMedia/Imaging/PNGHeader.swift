import CFFmpeg

/// A PNG's `IHDR` and whether a `tRNS` chunk comes before the pixels: all FFmpeg's PNG decoder
/// needs to choose its pixel format, read without inflating anything.
struct PNGHeader: Sendable, Hashable {
    var width: Int
    var height: Int
    var bitDepth: Int
    var colorType: Int
    var hasTransparency: Bool

    /// Reads the header from a file's first bytes; `nil` when they are not a PNG's.
    static func parse(_ bytes: [UInt8]) -> PNGHeader? {
        guard bytes.count >= 33, bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
              bytes[12..<16].elementsEqual(Array("IHDR".utf8)) else { return nil }
        func be32(_ at: Int) -> Int { Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3]) }
        var header = PNGHeader(width: be32(16), height: be32(20), bitDepth: Int(bytes[24]), colorType: Int(bytes[25]), hasTransparency: false)
        guard header.width > 0, header.height > 0 else { return nil }
        // The chunks up to the first IDAT (tRNS must come before it); give up past the bytes read.
        var offset = 8
        while true {
            guard offset + 8 <= bytes.count else { return nil }
            let length = be32(offset)
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            if type == "IDAT" { break }
            if type == "tRNS" { header.hasTransparency = true }
            guard length >= 0, length <= bytes.count else { return nil }
            offset += 12 + length
        }
        return header
    }

    /// The pixel format FFmpeg 5.1's PNG decoder gives this picture, or `nil` when the header
    /// is invalid (then FFmpeg's analysis decides).
    var pixelFormat: AVPixelFormat? {
        let alpha = hasTransparency
        switch (colorType, bitDepth) {
        case (0, 1): return alpha ? nil : AV_PIX_FMT_MONOBLACK
        case (0, 2), (0, 4), (0, 8): return alpha ? AV_PIX_FMT_YA8 : AV_PIX_FMT_GRAY8
        case (0, 16): return alpha ? AV_PIX_FMT_YA16BE : AV_PIX_FMT_GRAY16BE
        case (2, 8): return alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24
        case (2, 16): return alpha ? AV_PIX_FMT_RGBA64BE : AV_PIX_FMT_RGB48BE
        case (3, 1), (3, 2), (3, 4), (3, 8): return AV_PIX_FMT_PAL8
        case (4, 8): return AV_PIX_FMT_YA8
        case (4, 16): return AV_PIX_FMT_YA16BE
        case (6, 8): return AV_PIX_FMT_RGBA
        case (6, 16): return AV_PIX_FMT_RGBA64BE
        default: return nil
        }
    }
}
