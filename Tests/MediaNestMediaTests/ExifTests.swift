import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("EXIF orientation, date, camera and GPS")
struct ExifTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    @Test(arguments: 1...8)
    func orientationDecidesDisplaySize(orientation: Int) throws {
        let result = try extract(fixtures, Name.exifJPEG(orientation: orientation), declared: "image/jpeg")
        #expect(result.kind == .image)
        #expect(result.summary["orientation"] == .int(Int64(orientation)))
        if orientation >= 5 {
            #expect(result.width == 32 && result.height == 64, "orientation \(orientation) is portrait")
        } else {
            #expect(result.width == 64 && result.height == 32, "orientation \(orientation) is landscape")
        }
        #expect(result.summary["width"] == .int(Int64(result.width ?? 0)))
        #expect(result.mimeDeclaredMatches)
    }

    @Test func dateCameraAndGPSAreRead() throws {
        let result = try extract(fixtures, Name.exifJPEG(orientation: 6))
        #expect(result.summary["taken_at"] == .string(MediaFixtures.ExifValues.takenAt))
        #expect(result.summary["camera"] == ["make": .string(MediaFixtures.ExifValues.make), "model": .string(MediaFixtures.ExifValues.model)])
        let lat = try #require(result.summary["gps"]?["lat"]?.doubleValue)
        let lon = try #require(result.summary["gps"]?["lon"]?.doubleValue)
        #expect(abs(lat - MediaFixtures.ExifValues.latitude) < 1e-9)
        #expect(abs(lon - MediaFixtures.ExifValues.longitude) < 1e-9)
        #expect(result.fullProbe["exif"]?["orientation"] == 6)
    }

    @Test(arguments: [true, false])
    func bothByteOrdersParse(littleEndian: Bool) {
        let tiff = ExifBuilder.tiff(orientation: 3, littleEndian: littleEndian)
        let exif = ImageHeaderParser.parseExif(tiff[...])
        #expect(exif?.orientation == 3)
        #expect(exif?.make == MediaFixtures.ExifValues.make)
        #expect(exif?.takenAt == MediaFixtures.ExifValues.takenAt)
    }

    @Test func pngExifChunkIsRead() throws {
        let result = try extract(fixtures, Name.pngWithExif, declared: "image/png")
        #expect(result.summary["orientation"] == 8)
        #expect(result.width == 24 && result.height == 48)
        #expect(result.summary["camera"]?["model"] == .string(MediaFixtures.ExifValues.model))
    }

    @Test func jpegWithoutExifHasNoOrientation() throws {
        let result = try extract(fixtures, Name.plainJPEG)
        #expect(result.summary["orientation"] == nil)
        #expect(result.summary["taken_at"] == nil)
        #expect(result.width == 64 && result.height == 32)
    }

    @Test func malformedExifNeverCrashesTheParser() {
        let valid = ExifBuilder.tiff(orientation: 6, littleEndian: true)
        var state: UInt64 = 12345
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(truncatingIfNeeded: state >> 33) }
        var parsedOrientation = 0
        for round in 0..<5000 {
            var bytes = valid
            if round % 3 == 0 { bytes = Array(bytes.prefix(abs(next()) % bytes.count)) }
            for _ in 0..<(1 + abs(next()) % 8) where !bytes.isEmpty {
                bytes[abs(next()) % bytes.count] = UInt8(truncatingIfNeeded: next())
            }
            if let exif = ImageHeaderParser.parseExif(bytes[...]), exif.orientation != nil { parsedOrientation += 1 }
        }
        // Mutations that miss the orientation still parse; the point is that none crashed.
        #expect(parsedOrientation > 0)
    }

    @Test(arguments: [Name.exifJPEG(orientation: 6), Name.pngWithExif, Name.webp])
    func mutatedImageHeadersNeverCrashTheParser(name: String) throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(name))))
        #expect(ImageHeaderParser.parse(original)?.width != nil)
        var state: UInt64 = 99
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(truncatingIfNeeded: state >> 33) }
        for round in 0..<3000 {
            var bytes = original
            if round % 4 == 0 { bytes = Array(bytes.prefix(8 + abs(next()) % bytes.count)) }
            for _ in 0..<(1 + abs(next()) % 6) where bytes.count > 12 {
                bytes[12 + abs(next()) % (bytes.count - 12)] = UInt8(truncatingIfNeeded: next())
            }
            _ = ImageHeaderParser.parse(bytes)
        }
    }

    @Test func jpegWithGarbageExifStillProbes() throws {
        let root = try fixtures.makeScratchDirectory("badexif")
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(Name.plainJPEG)))
        var garbage: [UInt8] = [0xFF, 0xE1, 0x00, 0x20] + Array("Exif".utf8) + [0, 0] + Array("MM\u{0}*\u{0}\u{0}\u{FF}\u{FF}".utf8)
        garbage += [UInt8](repeating: 0xEE, count: 0x20 + 2 - garbage.count)
        try ExifBuilder.insert(app1: garbage, into: jpeg).write(to: URL(fileURLWithPath: root + "/bad.jpg"))
        let result = try MetadataExtractor.extract(root: root, relativePath: "bad.jpg", declaredMimeType: "image/jpeg", computeChecksums: false)
        #expect(result.kind == .image)
        #expect(result.summary["orientation"] == nil)
        #expect(result.width == 64)
    }

    @Test(arguments: [
        ("+48.8584+002.2945/", 48.8584, 2.2945),
        ("+37.3318-122.0312+010.000/", 37.3318, -122.0312),
        ("-33.8688+151.2093/", -33.8688, 151.2093),
        ("+4851.50-00217.67/", 48.0 + 51.5 / 60, -(2.0 + 17.67 / 60)),
    ])
    func iso6709LocationsParse(text: String, lat: Double, lon: Double) throws {
        let (parsedLat, parsedLon) = try #require(MetadataExtractor.parseISO6709(text))
        #expect(abs(parsedLat - lat) < 1e-9 && abs(parsedLon - lon) < 1e-9)
    }

    @Test(arguments: ["", "garbage", "+91.0+000.0/", "+10.0/", "12.0+13.0/"])
    func malformedISO6709IsIgnored(text: String) {
        #expect(MetadataExtractor.parseISO6709(text) == nil)
    }
}
