import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// JPEGs decode with TurboJPEG; these check it gives what libavcodec gives, and that CMYK/YCCK
/// stay with libavcodec. (Orientation, truncation, damage and the pixel limit of the TurboJPEG
/// path are covered by ``StillImageDecoderTests``, whose JPEGs now all take it.)
@Suite("TurboJPEG path of StillImageDecoder")
struct TurboJPEGTests {
    let fixtures: MediaFixtures
    let scratch: String
    init() throws {
        fixtures = try MediaFixtures.load()
        scratch = try fixtures.makeScratchDirectory("turbojpeg")
    }

    func turbo(_ bytes: [UInt8], maxLongEdge: Int) throws(JobError) -> DecodedStill? {
        try StillImageDecoder.decodeWithTurboJPEG(bytes, maxLongEdge: maxLongEdge, limits: .default, what: "the test picture",
                                                  orientation: .up, stop: StopGuard(cancellation: nil, timeout: nil))
    }

    /// The libavcodec path at the same reduction and output size.
    func ffmpeg(_ bytes: [UInt8], lowres: Int32, maxLongEdge: Int) throws -> RGBAImage {
        let decoded = try StillImageDecoder.decodePacket(.bytes(bytes), codec: .jpeg, lowres: lowres, threads: 1, limits: .default, what: "the test picture")
        return try FrameConverter.convert(decoded.frame.pointer, fittingLongEdge: maxLongEdge)
    }

    func photo(_ name: String, size: String, extra: [String] = []) throws -> [UInt8] {
        let path = scratch + "/" + name
        let result = try ProcessRunner.run("/usr/bin/convert", ["-seed", "3", "-size", size, "plasma:fractal", "-blur", "0x1",
                                                               "-attenuate", "0.2", "+noise", "Gaussian"] + extra + ["-quality", "92", path])
        try #require(result.status == 0, "ImageMagick is needed: \(result.stderr)")
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test(arguments: [(320, Int32(2)), (800, Int32(1))])
    func turboJPEGAndLibavcodecAgreeOnAPhoto(maxLongEdge: Int, lowres: Int32) throws {
        let bytes = try photo("photo.jpg", size: "1600x1200", extra: ["-sampling-factor", "2x2"])
        let still = try #require(try turbo(bytes, maxLongEdge: maxLongEdge), "a YCbCr JPEG takes the TurboJPEG path")
        let reference = try ffmpeg(bytes, lowres: lowres, maxLongEdge: maxLongEdge)
        #expect(still.image.width == reference.width && still.image.height == reference.height)
        #expect(still.image.width == maxLongEdge && still.sourceWidth == 1600 && still.sourceHeight == 1200)
        #expect(still.jpegScale == (maxLongEdge == 320 ? "1/4" : "1/2"), "the DCT scaling used is reported")
        try #require(still.image.pixels.count == reference.pixels.count)
        var total = 0, worst = 0, over = 0
        for i in 0..<still.image.pixels.count where i % 4 != 3 {
            let d = abs(Int(still.image.pixels[i]) - Int(reference.pixels[i]))
            total += d
            worst = max(worst, d)
            if d > 12 { over += 1 }
        }
        let mean = Double(total) / Double(still.image.pixels.count * 3 / 4)
        #expect(mean < 2.0, "mean difference \(mean), worst \(worst)")
        #expect(Double(over) / Double(still.image.pixels.count) < 0.01, "\(over) channel values differ by more than 12 (worst \(worst))")
    }

    @Test func greyscaleAndProgressiveJPEGsTakeTheTurboJPEGPath() throws {
        let grey = try photo("grey.jpg", size: "640x480", extra: ["-colorspace", "Gray"])
        let g = try #require(try turbo(grey, maxLongEdge: 320))
        #expect(g.image.width == 320 && g.image.height == 240)
        let p = g.image.pixel(x: 100, y: 100)
        #expect(p.r == p.g && p.g == p.b && p.a == 255)
        let progressive = try photo("prog.jpg", size: "640x480", extra: ["-interlace", "Plane"])
        let q = try #require(try turbo(progressive, maxLongEdge: 320))
        #expect(q.image.width == 320 && q.image.height == 240 && !q.image.hasAlpha)
    }

    @Test func cmykAndYCCKJPEGsStayWithLibavcodec() throws {
        let cmyk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.cmykAdobeJPEG))))
        #expect(try turbo(cmyk, maxLongEdge: 320) == nil, "TurboJPEG 2.1 gives no RGB for CMYK")
        // Through the decoder it still decodes (the colours are checked by cmykJPEGColoursAreRight).
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.cmykAdobeJPEG, in: fixtures.root, limits: .default)
        let still = try StillImageDecoder.decode(file: file, maxLongEdge: 320)
        #expect(still.image.width > 0 && !still.image.hasAlpha)
    }

    static func factor(width: Int, height: Int, maxLongEdge: Int) -> [Int] {
        let f = TurboJPEGDecoder.scalingFactor(width: width, height: height, maxLongEdge: maxLongEdge)
        return [f.num, f.denom]
    }

    @Test func scalingFactorIsTheLargestReductionThatCoversTheLongEdge() {
        #expect(Self.factor(width: 4000, height: 3000, maxLongEdge: 320) == [1, 8])
        #expect(Self.factor(width: 4000, height: 3000, maxLongEdge: 1440) == [3, 8], "1500 px covers 1440")
        #expect(Self.factor(width: 2000, height: 1000, maxLongEdge: 1440) == [3, 4])
        #expect(Self.factor(width: 3000, height: 4000, maxLongEdge: 1501) == [1, 2], "the long edge may be the height")
        #expect(Self.factor(width: 100, height: 80, maxLongEdge: 320) == [1, 1], "never upscaled")
    }

    @Test func orientationAppliesOnTheTurboJPEGPath() throws {
        let jpeg = try ImageEncoder.encode(StillImageDecoderTests.quadrants(), as: .jpeg, quality: 95)
        let tagged = try ExifBuilder.insert(app1: ExifBuilder.app1(orientation: 6, littleEndian: true), into: Data(jpeg))
        try Data(tagged).write(to: URL(fileURLWithPath: scratch + "/o6.jpg"))
        #expect(try turbo(Array(tagged), maxLongEdge: 320) != nil, "this JPEG takes the TurboJPEG path")
        let file = try SafeFile.open(relativePath: "o6.jpg", in: scratch, limits: .default)
        let still = try StillImageDecoder.decode(file: file, maxLongEdge: 320)
        #expect(still.orientation == 6 && still.image.width == 48 && still.image.height == 64)
        // Orientation 6: the stored top-left (red) is shown top-right, the stored top-right (green) bottom-right.
        #expect(StillImageDecoderTests.close(still.image.pixel(x: 43, y: 4), (255, 0, 0)))
        #expect(StillImageDecoderTests.close(still.image.pixel(x: 43, y: 59), (0, 255, 0)))
    }
}
