import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

private let quietLogger: Logger = {
    var logger = TestLogging.logger("test.heif-brands")
    logger.logLevel = .critical
    return logger
}()

/// HEIF is recognised by its `ftyp` brands (major or compatible), whatever libmagic guesses:
/// the committed iPhone-like HEIC with its `ftyp` rewritten, as other phones and tools write it.
@Suite("HEIF recognised by its ftyp brands", .timeLimit(.minutes(2)))
struct HEIFBrandTests {
    /// The fixture HEIC with a new `ftyp` box (the rest of the file follows unchanged; libheif
    /// locates items by absolute offsets, so the new box keeps the old one's size).
    static func rewritingFtyp(major: String, compatible: [String]) throws -> [UInt8] {
        let original = try CommittedFixtures.bytes(CommittedFixtures.gridHEIC)
        let oldSize = Int(original[0]) << 24 | Int(original[1]) << 16 | Int(original[2]) << 8 | Int(original[3])
        #expect(16 + 4 * compatible.count == oldSize, "the fixture's ftyp holds \((oldSize - 16) / 4) compatible brands")
        let box = [UInt8(0), 0, 0, UInt8(oldSize)] + Array("ftyp".utf8) + Array(major.utf8) + [0, 0, 0, 0] + compatible.flatMap { Array($0.utf8) }
        return box + original[oldSize...]
    }

    /// `mif1` major, `heic` compatible: libheif's own check says only "maybe", so before the
    /// brands decided, the metadata job sent it to FFmpeg, which failed it as corrupt
    /// ("looks like QuickTime / MOV but cannot be opened").
    @Test func mif1MajorHEICIsReadByLibheifInEveryJob() throws {
        let scratch = try CommittedFixtures.scratch("mif1")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let bytes = try Self.rewritingFtyp(major: "mif1", compatible: ["mif1", "heic"])
        _ = try CommittedFixtures.write(bytes, named: "mif1.heic", in: scratch)

        let result = try MetadataExtractor.extract(root: scratch, relativePath: "mif1.heic", declaredMimeType: "image/heic", computeChecksums: false)
        #expect(result.kind == .image && result.width == 128 && result.height == 192)
        #expect(result.summary["container"] == .string("heif"))
        #expect(result.fullProbe.objectValue?["format"]?.objectValue?["name"] == .string("heif"), "read by libheif")
        #expect(result.summary["taken_at"] == .string("2023-07-14T09:30:00"))

        let still = try StillRendering.decode(file: SafeFile.open(relativePath: "mif1.heic", in: scratch), declaredMimeType: nil, fileName: nil,
                                              maxLongEdge: 64, limits: .default, decoderThreads: 1, cancellation: nil,
                                              logger: quietLogger)
        #expect(still.kind == .heif && still.image.height == 64)
    }

    /// An ISO base-media major brand with `heic` only among the compatible brands: libmagic calls
    /// it MP4 video; the brands make it a HEIC, read by libheif, and its `mime_sniffed` says so.
    @Test func compatibleBrandAloneIsEnoughWhateverLibmagicSays() throws {
        let scratch = try CommittedFixtures.scratch("isom-heic")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let bytes = try Self.rewritingFtyp(major: "isom", compatible: ["isom", "heic"])
        _ = try CommittedFixtures.write(bytes, named: "photo.heic", in: scratch)
        #expect(try MimeSniffer.sniff(bytes).hasPrefix("video/"), "libmagic guesses video for this ftyp")

        let result = try MetadataExtractor.extract(root: scratch, relativePath: "photo.heic", declaredMimeType: "image/heic", computeChecksums: false)
        #expect(result.kind == .image && result.width == 128 && result.height == 192)
        #expect(result.mimeSniffed == "image/heic" && result.mimeDeclaredMatches)

        let still = try StillRendering.decode(file: SafeFile.open(relativePath: "photo.heic", in: scratch), declaredMimeType: nil, fileName: nil,
                                              maxLongEdge: 64, limits: .default, decoderThreads: 1, cancellation: nil,
                                              logger: quietLogger)
        #expect(still.kind == .heif)
    }

    @Test func brandsAndTheirMimeTypes() {
        func ftyp(_ major: String, _ compatible: [String]) -> [UInt8] {
            let size = 16 + 4 * compatible.count
            return [0, 0, 0, UInt8(size)] + Array("ftyp".utf8) + Array(major.utf8) + [0, 0, 0, 0] + compatible.flatMap { Array($0.utf8) } + [0, 0, 0, 8] + Array("free".utf8)
        }
        #expect(HEIFBrands.mimeType(ftyp("mif1", ["mif1", "heic"])) == "image/heic")
        #expect(HEIFBrands.mimeType(ftyp("mif1", ["mif1", "miaf"])) == "image/heif")
        #expect(HEIFBrands.mimeType(ftyp("mif1", ["avif", "mif1"])) == "image/avif")
        #expect(HEIFBrands.mimeType(ftyp("msf1", ["msf1", "hevc"])) == "image/heic-sequence")
        #expect(HEIFBrands.mimeType(ftyp("avis", ["avis", "msf1"])) == "image/avif")
        // Videos: QuickTime, MP4, and a Canon CR3 (ISO base media, brand crx).
        #expect(!HEIFBrands.isHEIF(ftyp("qt  ", ["qt  "])))
        #expect(!HEIFBrands.isHEIF(ftyp("isom", ["isom", "iso2", "avc1", "mp41"])))
        #expect(!HEIFBrands.isHEIF(ftyp("crx ", ["crx ", "isom"])))
        // A brand past the box's own size is not the file's.
        var short = ftyp("isom", ["isom"])
        short += Array("heic".utf8)
        #expect(!HEIFBrands.isHEIF(short))
    }
}
