import Foundation
import MediaNestCore
import MediaNestMedia

/// Writes small DNG files at test time: an uncompressed 16-bit RGGB mosaic, optionally behind a
/// tiny JPEG preview, with the tags libraw needs to develop it and the EXIF fields the metadata
/// job reads.
///
/// The camera is made to see linear sRGB: ColorMatrix1 is the XYZ→linear-sRGB matrix, so libraw's
/// camera→sRGB matrix is the identity, and a surface of scene colour (r, g, b) is recorded as
/// (r·n₀, g·n₁, b·n₂) of the white level, where n is `asShotNeutral`. Developed with the camera's
/// white balance, a grey surface comes out grey; without it, green.
struct DNGBuilder {
    /// Mosaic size (each 2×2 RGGB cell becomes one pixel of a half-size development).
    var width = 128
    var height = 96
    /// The size the raw IFD declares, when it must differ from the data (hostile files).
    var declaredSize: (width: Int, height: Int)?
    /// Linear scene colour (0...1) at a mosaic position, as stored (before orientation).
    var scene: (Int, Int) -> (Double, Double, Double) = { _, _ in (0.5, 0.5, 0.5) }
    /// The camera's neutral: how much of a grey surface each channel records.
    var asShotNeutral = (0.5, 1.0, 0.5)
    /// EXIF Orientation of IFD0.
    var orientation = 1
    /// A JPEG preview and its size (IFD0, NewSubFileType 1), or none: then IFD0 is the raw image.
    var preview: (jpeg: [UInt8], width: Int, height: Int)?
    var make = "MediaNest"
    var model = "Fixture RAW"
    var lens: String?
    var exposureTime: (UInt32, UInt32)?
    var fNumber: (UInt32, UInt32)?
    var iso: Int?
    var focalLength: (UInt32, UInt32)?
    /// EXIF DateTimeOriginal, "YYYY:MM:DD HH:MM:SS".
    var dateTimeOriginal: String?
    /// Bytes of mosaic data written (default: all of it); fewer make a truncated file.
    var storedRows: Int?

    private enum Kind: UInt16 { case byte = 1, ascii = 2, short = 3, long = 4, rational = 5, srational = 10 }
    private struct Entry { var tag: UInt16; var kind: Kind; var count: Int; var payload: [UInt8] }

    /// A JPEG preview of a flat colour, encoded by the worker's own encoder.
    static func jpegPreview(width: Int, height: Int, colour: (UInt8, UInt8, UInt8) = (30, 30, 200)) throws(JobError) -> (jpeg: [UInt8], width: Int, height: Int) {
        let image = RGBAImage(width: width, height: height, fill: (colour.0, colour.1, colour.2, 255))
        return (try ImageEncoder.encode(image, as: .jpeg, quality: 90), width, height)
    }

    func bytes() -> [UInt8] {
        var out: [UInt8] = Array("II*\0".utf8) + [0, 0, 0, 0]
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8((v >> 24) & 0xFF)] }
        func append(_ blob: [UInt8]) -> Int {
            if out.count % 2 == 1 { out.append(0) }
            let offset = out.count
            out += blob
            return offset
        }
        func short(_ tag: UInt16, _ values: [Int]) -> Entry { Entry(tag: tag, kind: .short, count: values.count, payload: values.flatMap(le16)) }
        func long(_ tag: UInt16, _ values: [Int]) -> Entry { Entry(tag: tag, kind: .long, count: values.count, payload: values.flatMap(le32)) }
        func ascii(_ tag: UInt16, _ text: String) -> Entry { let b = Array(text.utf8) + [0]; return Entry(tag: tag, kind: .ascii, count: b.count, payload: b) }
        func byte(_ tag: UInt16, _ values: [UInt8]) -> Entry { Entry(tag: tag, kind: .byte, count: values.count, payload: values) }
        func rational(_ tag: UInt16, _ values: [(UInt32, UInt32)]) -> Entry {
            Entry(tag: tag, kind: .rational, count: values.count, payload: values.flatMap { le32(Int($0.0)) + le32(Int($0.1)) })
        }
        func srational(_ tag: UInt16, _ values: [Double]) -> Entry {
            Entry(tag: tag, kind: .srational, count: values.count,
                  payload: values.flatMap { le32(Int(Int32(($0 * 10_000).rounded())) & 0xFFFF_FFFF) + le32(10_000) })
        }
        /// Writes an IFD (entries sorted by tag; values over 4 bytes out of line) and returns its offset.
        func ifd(_ entries: [Entry], next: Int = 0) -> Int {
            var fixed: [UInt8] = le16(entries.count)
            for entry in entries.sorted(by: { $0.tag < $1.tag }) {
                let field = entry.payload.count <= 4 ? entry.payload + [UInt8](repeating: 0, count: 4 - entry.payload.count)
                                                     : le32(append(entry.payload))
                fixed += le16(Int(entry.tag)) + le16(Int(entry.kind.rawValue)) + le32(entry.count) + field
            }
            fixed += le32(next)
            return append(fixed)
        }

        // The mosaic: RGGB, 16 bits, white level 65535, black 0.
        var mosaic = [UInt8]()
        let rows = min(storedRows ?? height, height)
        mosaic.reserveCapacity(width * rows * 2)
        let neutral = [asShotNeutral.0, asShotNeutral.1, asShotNeutral.2]
        for y in 0..<rows {
            for x in 0..<width {
                let colour = scene(x, y)
                let channel = y % 2 == 0 ? (x % 2 == 0 ? 0 : 1) : (x % 2 == 0 ? 1 : 2)
                let linear = [colour.0, colour.1, colour.2][channel] * neutral[channel]
                mosaic += le16(Int((min(1, max(0, linear)) * 65535).rounded()))
            }
        }
        let mosaicOffset = append(mosaic)
        let (rawW, rawH) = declaredSize ?? (width, height)

        var exifEntries: [Entry] = []
        if let exposureTime { exifEntries.append(rational(33434, [exposureTime])) }
        if let fNumber { exifEntries.append(rational(33437, [fNumber])) }
        if let iso { exifEntries.append(short(34855, [iso])) }
        if let dateTimeOriginal { exifEntries.append(ascii(36867, dateTimeOriginal)) }
        if let focalLength { exifEntries.append(rational(37386, [focalLength])) }
        if let lens { exifEntries.append(ascii(42036, lens)) }
        let exifIFD = exifEntries.isEmpty ? nil : ifd(exifEntries)

        let rawEntries = [
            long(254, [0]), long(256, [rawW]), long(257, [rawH]), short(258, [16]), short(259, [1]), short(262, [32803]),
            long(273, [mosaicOffset]), short(277, [1]), long(278, [rawH]), long(279, [rawW * rawH * 2]), short(284, [1]),
            short(33421, [2, 2]), byte(33422, [0, 1, 1, 2]), long(50714, [0]), long(50717, [65535]),
        ]
        // XYZ (D65) → linear sRGB, so the camera's colour space is linear sRGB.
        let xyzToSRGB = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
        let dngEntries = [
            ascii(271, make), ascii(272, model), short(274, [orientation]),
            byte(50706, [1, 4, 0, 0]), byte(50707, [1, 1, 0, 0]), ascii(50708, "\(make) \(model)"),
            srational(50721, xyzToSRGB), short(50778, [21]),
            rational(50728, neutral.map { (UInt32(($0 * 10_000).rounded()), 10_000) }),
        ] + (exifIFD.map { [long(34665, [$0])] } ?? [])

        let ifd0: Int
        if let preview {
            let rawIFD = ifd(rawEntries)
            let previewOffset = append(preview.jpeg)
            ifd0 = ifd(dngEntries + [
                long(254, [1]), long(256, [preview.width]), long(257, [preview.height]), short(258, [8, 8, 8]), short(259, [7]),
                short(262, [6]), long(273, [previewOffset]), short(277, [3]), long(278, [preview.height]),
                long(279, [preview.jpeg.count]), short(284, [1]), long(330, [rawIFD]),
            ])
        } else {
            ifd0 = ifd(dngEntries + rawEntries)
        }
        out.replaceSubrange(4..<8, with: le32(ifd0))
        return out
    }
}
