import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// The small committed fixtures (HEIF, AVIF, DNG) and a scratch directory for damaged copies.
enum CommittedFixtures {
    /// Tests/MediaNestMediaTests/Fixtures, made by scripts/fixtures/make-heif-fixtures.py and make-dng-fixtures.py.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    static let gridHEIC = "HEIF/iphone-grid-irot.heic"
    static let bombHEIC = "HEIF/bomb-40000.heic"
    static let rotatedAVIF = "HEIF/rotated.avif"
    static let previewDNG = "RAW/preview-orient6.dng"
    static let smallPreviewDNG = "RAW/small-preview.dng"

    static func open(_ name: String, limits: MediaLimits = .default) throws(JobError) -> SafeFile {
        try SafeFile.open(relativePath: name, in: directory, limits: limits)
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
    }

    /// A fresh directory for files a test writes; the caller removes it.
    static func scratch(_ label: String) throws -> String {
        let path = NSTemporaryDirectory() + "medianest-\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes `bytes` into `directory` and opens it safely.
    static func write(_ bytes: [UInt8], named name: String, in directory: String) throws -> SafeFile {
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
        return try SafeFile.open(relativePath: name, in: directory)
    }
}

/// Colours of the marker pictures the fixture scripts draw.
enum Marker {
    static let red: (UInt8, UInt8, UInt8) = (220, 20, 20)
    static let green: (UInt8, UInt8, UInt8) = (20, 200, 20)
    static let blue: (UInt8, UInt8, UInt8) = (20, 20, 220)
    static let grey: (UInt8, UInt8, UInt8) = (128, 128, 128)
}

@Suite("HEIF and AVIF through libheif", .timeLimit(.minutes(2)))
struct HEIFTests {
    @Test func iPhoneLikeGridWithIrotDecodesUpright() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        let image = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 1000)
        // Stored 192x128 (3x2 tiles of 64), irot turns it into a 128x192 portrait.
        #expect(image.width == 128 && image.height == 192)
        #expect(!image.hasAlpha)
        #expect(ImageEncoderTests.close(image.pixel(x: 4, y: 4), Marker.red), "red marker top left: \(image.pixel(x: 4, y: 4))")
        #expect(ImageEncoderTests.close(image.pixel(x: 123, y: 4), Marker.green), "green marker top right: \(image.pixel(x: 123, y: 4))")
        #expect(ImageEncoderTests.close(image.pixel(x: 4, y: 187), Marker.grey), "bottom left is plain: \(image.pixel(x: 4, y: 187))")
        // A tile seam in the middle of the picture decodes like its neighbours (the grid is assembled).
        #expect(ImageEncoderTests.close(image.pixel(x: 64, y: 96), Marker.grey))
    }

    @Test func gridIsReducedToTheRequestedLongEdge() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        let image = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 97)
        #expect(image.width == 65 && image.height == 97)
        #expect(ImageEncoderTests.close(image.pixel(x: 2, y: 2), Marker.red), "the grid, not the 96 px thumbnail: \(image.pixel(x: 2, y: 2))")
        #expect(ImageEncoderTests.close(image.pixel(x: 62, y: 2), Marker.green))
    }

    /// The fixture's thumbnail item (64x96 displayed, like an iPhone's 320x240) has a BLUE marker
    /// where the grid has a red one, so the pixels show which image was decoded.
    @Test func embeddedThumbnailServesRequestsItCovers() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        for edge in [96, 48] {
            let image = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: edge)
            #expect(image.height == edge && image.width == edge * 2 / 3)
            #expect(ImageEncoderTests.close(image.pixel(x: 1, y: 1), Marker.blue), "\(edge): \(image.pixel(x: 1, y: 1))")
            // The thumbnail has its own irot, applied too: green stays top right.
            #expect(ImageEncoderTests.close(image.pixel(x: image.width - 2, y: 1), Marker.green), "\(edge)")
        }
        let primary = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 96, useEmbeddedThumbnail: false)
        #expect(primary.width == 64 && primary.height == 96)
        #expect(ImageEncoderTests.close(primary.pixel(x: 1, y: 1), Marker.red), "\(primary.pixel(x: 1, y: 1))")
    }

    @Test func avifWithIrotDecodesUpright() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.rotatedAVIF)
        let image = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320)
        // Stored 64x96; irot 1 makes it 96x64 landscape.
        #expect(image.width == 96 && image.height == 64)
        #expect(ImageEncoderTests.close(image.pixel(x: 4, y: 4), Marker.red), "\(image.pixel(x: 4, y: 4))")
        #expect(ImageEncoderTests.close(image.pixel(x: 91, y: 4), Marker.green), "\(image.pixel(x: 91, y: 4))")
        #expect(ImageEncoderTests.close(image.pixel(x: 4, y: 59), Marker.grey))
    }

    /// heif-enc stores alpha as an auxiliary image; with --premultiplied-alpha it also flags the
    /// colour as premultiplied, which the decoder must undo (RGBAImage is straight alpha).
    @Test(arguments: [false, true])
    func alphaIsKeptAndStraight(premultiplied: Bool) throws {
        let scratch = try CommittedFixtures.scratch("heif-alpha")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // Half-transparent red; stored premultiplied the colour is halved.
        let colour = premultiplied ? "0x6E0A0A" : "0xDC1414"
        let png = scratch + "/alpha.png", heic = scratch + "/alpha.heic"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=\(colour)@0.5:s=64x48,format=rgba",
                                                             "-frames:v", "1", png])
        #expect(made.status == 0, "\(made.stderr)")
        let encoded = try ProcessRunner.run("/usr/bin/heif-enc", (premultiplied ? ["--premultiplied-alpha"] : []) + ["-q", "95", "-o", heic, png])
        #expect(encoded.status == 0, "\(encoded.stderr)")
        let file = try SafeFile.open(relativePath: "alpha.heic", in: scratch)
        #expect(try HEIFDecoder.probe(file: file, limits: .default).hasAlpha)
        let image = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 64)
        #expect(image.hasAlpha && image.width == 64 && image.height == 48)
        let pixel = image.pixel(x: 20, y: 20)
        #expect(abs(Int(pixel.a) - 128) <= 6, "\(pixel)")
        #expect(ImageEncoderTests.close(pixel, Marker.red), "straight colour: \(pixel)")
    }

    @Test func probeReportsDisplaySizeExifAndBrand() throws {
        let grid = try HEIFDecoder.probe(file: CommittedFixtures.open(CommittedFixtures.gridHEIC), limits: .default)
        #expect(grid.width == 128 && grid.height == 192)
        #expect(grid.codedWidth == 192 && grid.codedHeight == 128)
        #expect(grid.brand == "heic" && !grid.isAVIF && !grid.hasAlpha)
        let block = try #require(grid.exif)
        #expect(block.starts(with: Array("MM".utf8)), "the 4-byte offset and Apple's Exif\\0\\0 are skipped")
        let exif = try #require(ImageHeaderParser.parseExif(block[...]))
        #expect(exif.make == "Apple" && exif.model == "iPhone Fixture" && exif.orientation == 6)

        let avif = try HEIFDecoder.probe(file: CommittedFixtures.open(CommittedFixtures.rotatedAVIF), limits: .default)
        #expect(avif.width == 96 && avif.height == 64 && avif.isAVIF && avif.brand == "avif" && avif.exif == nil)
    }

    @Test func metadataJobReadsHEICThatFFmpegCannot() throws {
        let result = try MetadataExtractor.extract(root: CommittedFixtures.directory, relativePath: CommittedFixtures.gridHEIC,
                                                   declaredMimeType: "image/heic", computeChecksums: true)
        #expect(result.kind == .image)
        #expect(result.mimeSniffed == "image/heic" && result.mimeDeclaredMatches)
        // Display size; the Exif orientation 6 repeats irot and must not swap the size again.
        #expect(result.width == 128 && result.height == 192)
        #expect(result.summary["orientation"] == nil)
        #expect(result.summary["container"] == .string("heif"))
        #expect(result.summary["taken_at"] == .string("2023-07-14T09:30:00"))
        #expect(result.summary["camera"] == .object(["make": .string("Apple"), "model": .string("iPhone Fixture")]))
        #expect(result.exif?.make == "Apple")
        let size = try CommittedFixtures.bytes(CommittedFixtures.gridHEIC).count
        #expect(result.checksums != nil && result.fileSize == Int64(size))
    }

    @Test func metadataJobGivesAVIFItsDisplaySize() throws {
        let result = try MetadataExtractor.extract(root: CommittedFixtures.directory, relativePath: CommittedFixtures.rotatedAVIF,
                                                   declaredMimeType: "image/avif", computeChecksums: false)
        // FFmpeg 5.1 would say 64x96: it ignores irot.
        #expect(result.kind == .image && result.width == 96 && result.height == 64)
        #expect(result.summary["container"] == .string("avif"))
        #expect(result.summary["video_codec"] == .string("av1"))
    }

    /// An AVIF sequence (FFmpeg's avif muxer writes a still item and a track, major brand `avis`).
    /// libheif 1.15's own check does not claim `avis`, but the brands decide (issue 17 item 2,
    /// `HEIFBrands`): libheif reads its still item, as it does with the major brand `avif`.
    @Test func avifSequenceAndItsStillGoToLibheif() throws {
        let scratch = try CommittedFixtures.scratch("avis")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=64x48:d=0.3:r=10",
                                                             "-c:v", "libaom-av1", "-cpu-used", "8", "-f", "avif", scratch + "/anim.avif"])
        #expect(made.status == 0, "\(made.stderr)")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: scratch + "/anim.avif")))
        let sequence = try MetadataExtractor.extract(root: scratch, relativePath: "anim.avif", declaredMimeType: "image/avif", computeChecksums: false)
        #expect(sequence.width == 64 && sequence.height == 48)
        #expect(sequence.kind == .image && sequence.mimeSniffed == "image/avif")
        #expect(sequence.fullProbe.objectValue?["format"]?.objectValue?["name"] == .string("avif"), "read by libheif")

        #expect(bytes[8..<12].elementsEqual(Array("avis".utf8)))
        bytes.replaceSubrange(8..<12, with: Array("avif".utf8))
        try Data(bytes).write(to: URL(fileURLWithPath: scratch + "/still.avif"))
        let still = try MetadataExtractor.extract(root: scratch, relativePath: "still.avif", declaredMimeType: "image/avif", computeChecksums: false)
        #expect(still.summary["container"] == .string("avif") && still.width == 64 && still.height == 48)
        #expect(still.fullProbe.objectValue?["format"]?.objectValue?["name"] == .string("avif"), "read by libheif")
    }

    @Test func ispeBombIsRefusedBeforeDecoding() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.bombHEIC)
        let decodeError = try #require(jobError { () throws(JobError) in _ = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320) })
        #expect(decodeError.code == .pixelLimit, "\(decodeError.message)")
        #expect(decodeError.message.contains("40000x40000") && decodeError.message.contains("nothing was decoded"), "\(decodeError.message)")
        let metadataError = try #require(jobError { () throws(JobError) in
            _ = try MetadataExtractor.extract(root: CommittedFixtures.directory, relativePath: CommittedFixtures.bombHEIC,
                                              declaredMimeType: "image/heic", computeChecksums: false)
        })
        #expect(metadataError.code == .pixelLimit)
    }

    @Test func configuredPixelLimitAppliesToHEIF() throws {
        let limits = MediaLimits(maxPixels: 20_000)  // the grid is 192x128 = 24576 pixels
        let file = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        let error = try #require(jobError { () throws(JobError) in _ = try HEIFDecoder.decode(file: file, limits: limits, maxLongEdge: 64) })
        #expect(error.code == .pixelLimit && error.message.contains("192x128"), "\(error.message)")
    }

    /// A grid whose descriptor claims a 30000x30000 canvas while its ispe says 192x128: within
    /// libheif's own 32768 limit, so only the decoder's tightened limit stops a 3.6 GB canvas.
    @Test func gridCanvasLargerThanItsIspeIsRefused() throws {
        var bytes = try CommittedFixtures.bytes(CommittedFixtures.gridHEIC)
        let idat = try #require(bytes.indices.dropLast(12).first { bytes[$0..<$0 + 4].elementsEqual(Array("idat".utf8)) })
        // idat payload: version, flags, rows-1, columns-1, output width (16 bit), output height (16 bit).
        #expect(bytes[idat + 6] == 1 && bytes[idat + 7] == 2, "the descriptor is where the fixture script puts it")
        bytes.replaceSubrange(idat + 8..<idat + 12, with: [0x75, 0x30, 0x75, 0x30])
        let scratch = try CommittedFixtures.scratch("gridbomb")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let file = try CommittedFixtures.write(bytes, named: "gridbomb.heic", in: scratch)
        let error = try #require(jobError { () throws(JobError) in _ = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320) })
        #expect(error.code == .pixelLimit, "\(error.code): \(error.message)")
    }

    @Test func truncatedAndGarbageHEIFFailCleanly() throws {
        let original = try CommittedFixtures.bytes(CommittedFixtures.gridHEIC)
        let scratch = try CommittedFixtures.scratch("heif-damaged")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var cases: [(String, [UInt8])] = [20, 100, 400, original.count / 2, original.count - 200, original.count - 1].map {
            ("truncated-\($0).heic", Array(original.prefix($0)))
        }
        var garbage = Array(original.prefix(24))  // a valid ftyp, then noise
        var random = SplitMix64(seed: 42)
        for _ in 0..<4000 { garbage.append(UInt8(truncatingIfNeeded: random.next())) }
        cases.append(("garbage.heic", garbage))
        for (name, bytes) in cases {
            let file = try CommittedFixtures.write(bytes, named: name, in: scratch)
            let error = try #require(jobError { () throws(JobError) in _ = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320) }, "\(name) decoded")
            #expect(error.code == .corruptMedia || error.code == .unsupportedFormat, "\(name): \(error.code): \(error.message)")
            #expect(error.message.contains(name), "\(error.message)")
        }
    }

    @Test func cancelledJobStopsBeforeReading() throws {
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        let file = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        let error = try #require(jobError { () throws(JobError) in _ = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320, cancellation: cancellation) })
        #expect(error.code == .cancelled)
    }
}
