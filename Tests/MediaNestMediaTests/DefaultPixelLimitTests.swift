import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Pins ``MediaLimits/default``'s pixel limit: raising it (say to 2.1 gigapixels) must break these.
///
/// Every crafted file declares a large frame but carries no pixel data, so even a regressed
/// limit never makes a decoder allocate the frame.
@Suite("The default pixel limit is 100 megapixels")
struct DefaultPixelLimitTests {
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    static func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }

    static func crc32(_ bytes: [UInt8]) -> UInt32 { HostileFiles.crc32(bytes) }

    /// A PNG with only IHDR (8-bit RGB, `width`x`height`) and IEND, CRCs correct.
    static func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(UInt32(data.count)) + body + be32(crc32(body))
        }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0]) + chunk("IEND", [])
    }

    /// The corpus JPEG cut after its SOF0 segment, with the frame size replaced, plus EOI.
    func jpegHeader(width: UInt16, height: UInt16) throws -> [UInt8] {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG))))
        var i = 2
        while i + 4 < bytes.count, !(bytes[i] == 0xFF && bytes[i + 1] == 0xC0) {
            i += 2 + (Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]))
        }
        try #require(i + 9 < bytes.count, "no SOF0 in the corpus JPEG")
        let end = i + 2 + (Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]))
        bytes[i + 5] = UInt8(height >> 8); bytes[i + 6] = UInt8(height & 0xFF)
        bytes[i + 7] = UInt8(width >> 8); bytes[i + 8] = UInt8(width & 0xFF)
        return Array(bytes[..<end]) + [0xFF, 0xD9]
    }

    /// A GIF with only a logical screen descriptor of `width`x`height` and the trailer. The
    /// extractor's own header parser does not read GIF, so FFmpeg's stream parameters decide.
    static func gifHeader(width: UInt16, height: UInt16) -> [UInt8] {
        Array("GIF89a".utf8) + [UInt8(width & 0xFF), UInt8(width >> 8), UInt8(height & 0xFF), UInt8(height >> 8), 0, 0, 0, 0x3B]
    }

    func code(of bytes: [UInt8], named name: String) throws -> JobError? {
        let scratch = try fixtures.makeScratchDirectory("pixels")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try Data(bytes).write(to: URL(fileURLWithPath: scratch + "/" + name))
        return jobError { () throws(JobError) in
            _ = try MetadataExtractor.extract(root: scratch, relativePath: name, declaredMimeType: "image/png", limits: .default,
                                              computeChecksums: false)
        }
    }

    @Test func theDefaultIsOneHundredMegapixels() {
        #expect(MediaLimits.default.maxPixels == 100_000_000)
        #expect(MediaLimits().maxPixels == 100_000_000)
    }

    @Test func a400MegapixelPNGHeaderFailsWithPixelLimit() throws {
        let error = try code(of: Self.pngHeader(width: 20_000, height: 20_000), named: "huge.png")
        #expect(error?.code == .pixelLimit)
        #expect(error?.message.contains("20000x20000") == true)
        #expect(error?.message.contains("100000000") == true)
    }

    @Test func aPNGHeaderJustOverOneHundredMegapixelsFailsWithPixelLimit() throws {
        #expect(try code(of: Self.pngHeader(width: 10_001, height: 10_000), named: "just-over.png")?.code == .pixelLimit)
    }

    @Test func a144MegapixelJPEGFrameHeaderFailsWithPixelLimit() throws {
        let error = try code(of: try jpegHeader(width: 12_000, height: 12_000), named: "huge.jpg")
        #expect(error?.code == .pixelLimit)
        #expect(error?.message.contains("12000x12000") == true)
    }

    @Test func a110MegapixelGIFScreenFailsWithPixelLimitFromFFmpegsStreamParameters() throws {
        let error = try code(of: Self.gifHeader(width: 11_000, height: 10_000), named: "huge.gif")
        #expect(error?.code == .pixelLimit)
        #expect(error?.message.contains("11000x10000") == true)
        #expect(error?.message.contains("stream headers") == true)
    }
}
