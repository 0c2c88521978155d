import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Camera RAW developed with libraw when its embedded preview is too small, on DNGs written at
/// test time (``DNGBuilder``).
@Suite("camera RAW developed at half size", .timeLimit(.minutes(2)))
struct RawDevelopTests {
    /// Stored (before orientation): a red marker in the top-left 32×24 of the mosaic, a white
    /// left half and a grey right half.
    static func markedScene(_ x: Int, _ y: Int, width: Int) -> (Double, Double, Double) {
        if x < 32 && y < 24 { return (0.8, 0.08, 0.08) }
        return x < width / 2 ? (0.8, 0.8, 0.8) : (0.2, 0.2, 0.2)
    }

    static func write(_ builder: DNGBuilder, named name: String, in scratch: String) throws -> SafeFile {
        try CommittedFixtures.write(builder.bytes(), named: name, in: scratch)
    }

    @Test func tinyEmbeddedPreviewMakesTheRAWBeDevelopedAtTheRequestedSize() throws {
        let scratch = try CommittedFixtures.scratch("raw-develop")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.width = 640
        builder.height = 480
        builder.scene = { x, y in Self.markedScene(x, y, width: 640) }
        builder.preview = try DNGBuilder.jpegPreview(width: 16, height: 12)
        let file = try Self.write(builder, named: "tiny-preview.dng", in: scratch)

        // 200 px: the 16×12 preview cannot serve it, the 320×240 half-size development can.
        let result = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 200)
        #expect(result.developed)
        #expect(result.image.width == 200 && result.image.height == 150, "\(result.image.width)×\(result.image.height)")
        #expect(result.rawWidth == 640 && result.rawHeight == 480)
        // The preview is blue, the development is not: the pixels come from the mosaic.
        let grey = result.image.pixel(x: 180, y: 100)
        #expect(abs(Int(grey.r) - Int(grey.b)) <= 8 && abs(Int(grey.g) - Int(grey.b)) <= 8, "\(grey)")

        // A request the preview covers is still served from it.
        let small = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 12)
        #expect(!small.developed && small.image.width == 12)
        let blue = small.image.pixel(x: 6, y: 4)
        #expect(blue.b > 150 && blue.r < 80, "\(blue)")
    }

    @Test func whiteBalanceAndOrientationAreTheCamera() throws {
        let scratch = try CommittedFixtures.scratch("raw-wb")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.scene = { x, y in Self.markedScene(x, y, width: 128) }
        builder.orientation = 6
        _ = try Self.write(builder, named: "wb.dng", in: scratch)
        let file = try SafeFile.open(relativePath: "wb.dng", in: scratch)

        let still = try StillRendering.decode(file: file, declaredMimeType: "image/x-adobe-dng", fileName: "wb.dng", maxLongEdge: 1440,
                                              limits: .default, decoderThreads: 1, cancellation: nil,
                                              logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        #expect(still.kind == .raw)
        #expect(still.details["decoder"] == .string("libraw half-size development"))
        // 128×96 mosaic → 64×48 at half size → 48×64 after Orientation 6 (90° clockwise).
        let image = still.image
        #expect(image.width == 48 && image.height == 64, "\(image.width)×\(image.height)")
        // The stored top-left marker is now top right.
        let marker = image.pixel(x: image.width - 3, y: 3)
        #expect(Int(marker.r) > Int(marker.g) + 80 && abs(Int(marker.g) - Int(marker.b)) <= 10, "marker \(marker)")
        let opposite = image.pixel(x: 2, y: 3)
        #expect(!(Int(opposite.r) > Int(opposite.g) + 40), "top left \(opposite)")
        // The camera recorded grey as (0.5, 1, 0.5): its white balance makes grey neutral again,
        // where libraw's daylight default (without use_camera_wb) would leave it green.
        for (x, y) in [(24, 56), (24, 40)] {  // stored right half (grey) is now the bottom half
            let pixel = image.pixel(x: x, y: y)
            #expect(abs(Int(pixel.r) - Int(pixel.g)) <= 8 && abs(Int(pixel.b) - Int(pixel.g)) <= 8, "grey at \(x),\(y): \(pixel)")
            #expect(pixel.g > 60 && pixel.g < 200, "mid grey, \(pixel)")
        }
        let white = image.pixel(x: 24, y: 10)
        #expect(white.r > 220 && white.g > 220 && white.b > 220, "white \(white)")
    }

    @Test func hugeDeclaredSensorFailsAsPixelLimitBeforeUnpacking() throws {
        let scratch = try CommittedFixtures.scratch("raw-huge")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.declaredSize = (60_000, 40_000)   // 2.4 Gpx declared, 24 KB of data
        let file = try Self.write(builder, named: "huge.dng", in: scratch)
        let error = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 320) })
        #expect(error.code == .pixelLimit, "\(error.code): \(error.message)")
        #expect(error.message.contains("huge.dng") && error.message.contains("nothing was decoded"), "\(error.message)")

        // The limit is the job's: a 128×96 sensor is refused under a 10,000-pixel limit.
        let small = try Self.write(DNGBuilder(), named: "small.dng", in: scratch)
        let limited = MediaLimits(maxPixels: 10_000)
        let limitedError = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: small, limits: limited, maxLongEdge: 320) })
        #expect(limitedError.code == .pixelLimit, "\(limitedError.code): \(limitedError.message)")
    }

    @Test func truncatedMosaicFailsAsCorruptMedia() throws {
        let scratch = try CommittedFixtures.scratch("raw-cut")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.width = 256
        builder.height = 192
        builder.storedRows = 20
        let file = try Self.write(builder, named: "cut.dng", in: scratch)
        let error = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 320) })
        #expect(error.code == .corruptMedia, "\(error.code): \(error.message)")
        #expect(error.message.contains("cut.dng"), "\(error.message)")
    }

    @Test func metadataComesFromLibRaw() throws {
        let scratch = try CommittedFixtures.scratch("raw-metadata")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.width = 160
        builder.height = 120
        builder.orientation = 6
        builder.make = "Nikon"
        builder.model = "Z 6"
        builder.lens = "NIKKOR Z 24-70mm f/4 S"
        builder.exposureTime = (1, 250)
        builder.fNumber = (56, 10)
        builder.iso = 400
        builder.focalLength = (35, 1)
        builder.dateTimeOriginal = "2024:05:01 12:34:56"
        builder.preview = try DNGBuilder.jpegPreview(width: 16, height: 12)
        _ = try Self.write(builder, named: "camera.dng", in: scratch)

        let result = try MetadataExtractor.extract(root: scratch, relativePath: "camera.dng", declaredMimeType: "image/x-adobe-dng",
                                                   computeChecksums: false, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let summary = result.summary
        #expect(result.kind == .image)
        #expect(summary["mime_sniffed"] == "image/x-adobe-dng", "libmagic's image/tiff is a DNG to libraw")
        #expect(summary["mime_declared_matches"] == true)
        #expect(summary["container"] == "dng")
        // The sensor's size, turned by Orientation 6; FFmpeg's tiff_pipe saw the 16×12 preview.
        #expect(summary["width"] == 120 && summary["height"] == 160, "\(summary)")
        #expect(summary["orientation"] == 6)
        #expect(summary["camera"]?.objectValue?["make"] == "Nikon", "\(summary)")
        #expect(summary["camera"]?.objectValue?["model"] == "Z 6", "\(summary)")
        #expect(summary["lens"] == "NIKKOR Z 24-70mm f/4 S", "\(summary)")
        #expect(abs((summary["exposure_time"]?.doubleValue ?? 0) - 0.004) < 1e-6, "\(summary)")
        #expect(abs((summary["f_number"]?.doubleValue ?? 0) - 5.6) < 1e-4, "\(summary)")
        #expect(summary["iso"]?.doubleValue == 400, "\(summary)")
        #expect(summary["focal_length"]?.doubleValue == 35, "\(summary)")
        #expect(summary["taken_at"] == "2024-05-01T12:34:56", "\(summary)")
    }

    @Test func metadataOfAHugeDeclaredSensorIsPixelLimit() throws {
        let scratch = try CommittedFixtures.scratch("raw-metadata-huge")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var builder = DNGBuilder()
        builder.declaredSize = (60_000, 40_000)
        _ = try Self.write(builder, named: "huge.dng", in: scratch)
        let error = try #require(jobError { () throws(JobError) in
            _ = try MetadataExtractor.extract(root: scratch, relativePath: "huge.dng", declaredMimeType: "image/x-adobe-dng",
                                              computeChecksums: false, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        })
        #expect(error.code == .pixelLimit, "\(error.code): \(error.message)")
    }
}
