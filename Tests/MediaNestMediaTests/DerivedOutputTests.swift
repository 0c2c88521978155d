import Foundation
import MediaNestCore
import MediaNestMedia
import Testing

@Suite("Derived output writer")
struct DerivedOutputTests {
    let itemID = "3f2a9c1e-0b7d-4e55-9a7c-1f0e2d3c4b5a"

    private func makeRoot() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("derived-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    @Test func writesIntoTheItemsDirectoryAndLeavesNoTemporaryFile() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root + "/.derived")
        let path = try directory.writeAtomically(Array("hello".utf8), named: "thumbnail.webp")
        #expect(path == "3f/\(itemID)/thumbnail.webp")
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/.derived/" + path))
        #expect(String(decoding: data, as: UTF8.self) == "hello")
        #expect(directory.fileNames() == ["thumbnail.webp"])
    }

    @Test func anUncommittedOutputIsInvisibleAndRemovedWhenDropped() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root)
        do {
            let output = try directory.createOutput(named: "preview.jpg")
            try output.write(Array(repeating: 7, count: 1000))
            #expect(directory.fileNames().count == 1)
            #expect(!directory.fileNames().contains("preview.jpg"))
        }
        #expect(directory.fileNames().isEmpty)
        let discarded = try directory.createOutput(named: "preview.jpg")
        discarded.discard()
        #expect(directory.fileNames().isEmpty)
    }

    @Test func aRerunReplacesTheOutputAtomicallyAndTwoWritersNeverShareATemporaryFile() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root)
        try directory.writeAtomically(Array("old".utf8), named: "thumbnail.webp")
        let finalPath = root + "/3f/\(itemID)/thumbnail.webp"
        let oldInode = try #require(FileManager.default.attributesOfItem(atPath: finalPath)[.systemFileNumber] as? UInt64)
        let first = try directory.createOutput(named: "thumbnail.webp")
        let second = try directory.createOutput(named: "thumbnail.webp")
        try first.write(Array("first run, half".utf8))
        try second.write(Array("second".utf8))
        // The old file is untouched until a commit.
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: finalPath)), as: UTF8.self) == "old")
        try second.commit()
        first.discard()
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: finalPath)), as: UTF8.self) == "second")
        let newInode = try #require(FileManager.default.attributesOfItem(atPath: finalPath)[.systemFileNumber] as? UInt64)
        #expect(newInode != oldInode)
        #expect(directory.fileNames() == ["thumbnail.webp"])
    }

    @Test func aSymbolicLinkInTheDerivedPathIsRefused() throws {
        let root = try makeRoot()
        let outside = try makeRoot()
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: outside)
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/3f", withDestinationPath: outside)
        let error = jobError { () throws(JobError) in _ = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root) }
        #expect(error?.code == .pathOutsideStorage)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
    }

    @Test func badNamesAndIdsAreRefused() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(jobError { () throws(JobError) in _ = try DerivedDirectory.forMediaItem("../../etc", derivedRoot: root) }?.code == .invalidInput)
        #expect(jobError { () throws(JobError) in _ = try DerivedDirectory.open(derivedRoot: root, components: ["a", ".."]) }?.code == .pathOutsideStorage)
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root)
        #expect(jobError { () throws(JobError) in _ = try directory.createOutput(named: "../x") }?.code == .pathOutsideStorage)
        #expect(jobError { () throws(JobError) in _ = try directory.createOutput(named: ".hidden") }?.code == .pathOutsideStorage)
    }

    @Test func staleTemporariesOfDeadRunsAreSweptButFreshOnesAreKept() throws {
        let root = try makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: root)
        let dir = root + "/3f/\(itemID)"
        _ = FileManager.default.createFile(atPath: dir + "/.thumbnail.webp.dead.tmp", contents: Data([1]))
        _ = FileManager.default.createFile(atPath: dir + "/.preview.jpg.live.tmp", contents: Data([1]))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: dir + "/.thumbnail.webp.dead.tmp")
        #expect(directory.removeStaleTemporaries(olderThan: .seconds(3600)) == 1)
        #expect(directory.fileNames() == [".preview.jpg.live.tmp"])
    }
}

@Suite("Image encoder")
struct ImageEncoderTests {
    /// A picture with four coloured quadrants and, optionally, a transparent hole in the middle.
    static func quadrants(width: Int = 64, height: Int = 48, hole: Bool = false) -> RGBAImage {
        var image = RGBAImage(width: width, height: height)
        for y in 0..<height {
            for x in 0..<width {
                let colour: (UInt8, UInt8, UInt8, UInt8) = switch (x < width / 2, y < height / 2) {
                case (true, true): (255, 0, 0, 255)
                case (false, true): (0, 255, 0, 255)
                case (true, false): (0, 0, 255, 255)
                case (false, false): (255, 255, 255, 255)
                }
                image.setPixel(x: x, y: y, colour)
            }
        }
        if hole {
            for y in height / 2 - 4..<height / 2 + 4 { for x in width / 2 - 4..<width / 2 + 4 { image.setPixel(x: x, y: y, (0, 0, 0, 0)) } }
            image.hasAlpha = true
        }
        return image
    }

    /// Decodes an encoded image with the ffmpeg CLI (an independent decoder) to RGBA.
    static func decodeWithCLI(_ bytes: [UInt8], width: Int, height: Int) throws -> RGBAImage {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("enc-\(UUID().uuidString)")
        try Data(bytes).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        process.arguments = ["-v", "error", "-i", input.path, "-f", "rawvideo", "-pix_fmt", "rgba", "-"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return RGBAImage(width: width, height: height, pixels: Array(data), hasAlpha: true)
    }

    static func close(_ a: (r: UInt8, g: UInt8, b: UInt8, a: UInt8), _ b: (UInt8, UInt8, UInt8), tolerance: Int = 40) -> Bool {
        abs(Int(a.r) - Int(b.0)) <= tolerance && abs(Int(a.g) - Int(b.1)) <= tolerance && abs(Int(a.b) - Int(b.2)) <= tolerance
    }

    @Test(arguments: ImageFormat.allCases)
    func encodedColoursSurviveAnIndependentDecoder(format: ImageFormat) throws {
        let bytes = try ImageEncoder.encode(Self.quadrants(), as: format, quality: 90)
        let decoded = try Self.decodeWithCLI(bytes, width: 64, height: 48)
        #expect(Self.close(decoded.pixel(x: 8, y: 8), (255, 0, 0)))
        #expect(Self.close(decoded.pixel(x: 56, y: 8), (0, 255, 0)))
        #expect(Self.close(decoded.pixel(x: 8, y: 40), (0, 0, 255)))
        #expect(Self.close(decoded.pixel(x: 56, y: 40), (255, 255, 255)))
        let magic: [UInt8] = switch format {
        case .webp: Array("RIFF".utf8)
        case .jpeg: [0xFF, 0xD8, 0xFF]
        case .png: [0x89, 0x50, 0x4E, 0x47]
        }
        #expect(Array(bytes.prefix(magic.count)) == magic)
    }

    @Test(arguments: [ImageFormat.webp, .png])
    func alphaIsKeptWhereTheFormatHasIt(format: ImageFormat) throws {
        let bytes = try ImageEncoder.encode(Self.quadrants(hole: true), as: format, quality: 90)
        let decoded = try Self.decodeWithCLI(bytes, width: 64, height: 48)
        #expect(decoded.pixel(x: 32, y: 24).a < 30)
        #expect(decoded.pixel(x: 8, y: 8).a > 225)
    }

    @Test func jpegFlattensAlphaOntoANeutralBackground() throws {
        let bytes = try ImageEncoder.encode(Self.quadrants(hole: true), as: .jpeg, quality: 95)
        let decoded = try Self.decodeWithCLI(bytes, width: 64, height: 48)
        let centre = decoded.pixel(x: 32, y: 24)
        #expect(centre.a == 255)
        #expect(Self.close(centre, (238, 238, 238), tolerance: 30))
    }

    @Test func lowerQualityMakesSmallerJPEGs() throws {
        var noisy = RGBAImage(width: 128, height: 128)
        var generator = SystemRandomNumberGenerator()
        for i in stride(from: 0, to: noisy.pixels.count, by: 4) {
            noisy.pixels[i] = .random(in: 0...255, using: &generator)
            noisy.pixels[i + 1] = .random(in: 0...255, using: &generator)
            noisy.pixels[i + 2] = .random(in: 0...255, using: &generator)
        }
        let high = try ImageEncoder.encode(noisy, as: .jpeg, quality: 95)
        let low = try ImageEncoder.encode(noisy, as: .jpeg, quality: 30)
        #expect(low.count < high.count)
    }

    @Test func fittedSizeNeverUpscalesAndKeepsTheAspectRatio() {
        #expect(RGBAImage.fittedSize(width: 4000, height: 3000, maxLongEdge: 320) == (320, 240))
        #expect(RGBAImage.fittedSize(width: 3000, height: 4000, maxLongEdge: 320) == (240, 320))
        #expect(RGBAImage.fittedSize(width: 200, height: 100, maxLongEdge: 320) == (200, 100))
        #expect(RGBAImage.fittedSize(width: 10000, height: 1, maxLongEdge: 320) == (320, 1))
    }
}

@Suite("Packet image decoder")
struct PacketImageDecoderTests {
    @Test(arguments: [ImageFormat.jpeg, .png, .webp])
    func decodesAnEncodedPictureAndFitsItToTheRequestedSize(format: ImageFormat) throws {
        let source = ImageEncoderTests.quadrants(width: 640, height: 480)
        let bytes = try ImageEncoder.encode(source, as: format, quality: 95)
        let decoded = try PacketImageDecoder.decode(bytes, maxLongEdge: 160)
        #expect(decoded.width == 160 && decoded.height == 120)
        #expect(ImageEncoderTests.close(decoded.pixel(x: 20, y: 20), (255, 0, 0)))
        #expect(ImageEncoderTests.close(decoded.pixel(x: 140, y: 100), (255, 255, 255)))
        #expect(ImageEncoderTests.close(decoded.pixel(x: 20, y: 100), (0, 0, 255)))
    }

    @Test func jpegReductionPicksTheLargestThatStillCoversTheTarget() {
        #expect(PacketImageDecoder.jpegLowres(width: 4000, height: 3000, maxLongEdge: 320) == 3)
        #expect(PacketImageDecoder.jpegLowres(width: 4000, height: 3000, maxLongEdge: 1440) == 1)
        #expect(PacketImageDecoder.jpegLowres(width: 1000, height: 800, maxLongEdge: 1440) == 0)
    }

    @Test func garbageAndOversizedHeadersFailWithStableCodes() throws {
        #expect(jobError { () throws(JobError) in _ = try PacketImageDecoder.decode(Array(repeating: 0x42, count: 64), maxLongEdge: 100) }?.code == .unsupportedFormat)
        var truncated = try ImageEncoder.encode(ImageEncoderTests.quadrants(), as: .png)
        truncated.removeLast(truncated.count / 2)
        let error = jobError { () throws(JobError) in _ = try PacketImageDecoder.decode(truncated, maxLongEdge: 100) }
        #expect(error?.code == .corruptMedia)
        let small = MediaLimits(maxPixels: 1000)
        let bytes = try ImageEncoder.encode(ImageEncoderTests.quadrants(), as: .png)
        #expect(jobError { () throws(JobError) in _ = try PacketImageDecoder.decode(bytes, maxLongEdge: 100, limits: small) }?.code == .pixelLimit)
    }
}
