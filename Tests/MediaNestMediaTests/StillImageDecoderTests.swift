import CFFmpeg
import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("StillImageDecoder: image files to upright, reduced RGBA pictures")
struct StillImageDecoderTests {
    let fixtures: MediaFixtures
    let scratch: String
    init() throws {
        fixtures = try MediaFixtures.load()
        scratch = try fixtures.makeScratchDirectory("stills")
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: scratch + "/" + name))
        return name
    }

    func decode(_ name: String, root: String? = nil, maxLongEdge: Int = 320, limits: MediaLimits = .default) throws(JobError) -> DecodedStill {
        let file = try SafeFile.open(relativePath: name, in: root ?? scratch, limits: limits)
        return try StillImageDecoder.decode(file: file, limits: limits, maxLongEdge: maxLongEdge)
    }

    func ffmpeg(_ arguments: [String]) throws {
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + arguments)
        try #require(result.status == 0, "ffmpeg failed: \(result.stderr)")
    }

    enum Corner { case topLeft, topRight, bottomLeft, bottomRight }

    func colour(_ image: RGBAImage, at corner: Corner) -> (r: UInt8, g: UInt8, b: UInt8, a: UInt8) {
        let inset = 4
        let x = corner == .topLeft || corner == .bottomLeft ? inset : image.width - 1 - inset
        let y = corner == .topLeft || corner == .topRight ? inset : image.height - 1 - inset
        return image.pixel(x: x, y: y)
    }

    static func close(_ a: (r: UInt8, g: UInt8, b: UInt8, a: UInt8), _ b: (Int, Int, Int), tolerance: Int = 40) -> Bool {
        abs(Int(a.r) - b.0) <= tolerance && abs(Int(a.g) - b.1) <= tolerance && abs(Int(a.b) - b.2) <= tolerance
    }

    /// Where the stored picture's top-left (red) and top-right (green) quadrants must be shown,
    /// straight from the EXIF definition of each value (row 0 / column 0 placement), not from the
    /// code under test.
    static let expectedCorners: [Int: (red: Corner, green: Corner)] = [
        1: (.topLeft, .topRight), 2: (.topRight, .topLeft), 3: (.bottomRight, .bottomLeft), 4: (.bottomLeft, .bottomRight),
        5: (.topLeft, .bottomLeft), 6: (.topRight, .bottomRight), 7: (.bottomRight, .topRight), 8: (.bottomLeft, .topLeft),
    ]

    /// A 64×48 stored picture: red top-left, green top-right, blue bottom-left, white bottom-right.
    static func quadrants(width: Int = 64, height: Int = 48, hole: Bool = false) -> RGBAImage {
        var image = RGBAImage(width: width, height: height)
        for y in 0..<height {
            for x in 0..<width {
                let c: (UInt8, UInt8, UInt8, UInt8) = switch (x < width / 2, y < height / 2) {
                case (true, true): (255, 0, 0, 255)
                case (false, true): (0, 255, 0, 255)
                case (true, false): (0, 0, 255, 255)
                case (false, false): (255, 255, 255, 255)
                }
                image.setPixel(x: x, y: y, c)
            }
        }
        if hole {
            for y in height / 2 - 6..<height / 2 + 6 { for x in width / 2 - 6..<width / 2 + 6 { image.setPixel(x: x, y: y, (0, 0, 0, 0)) } }
            image.hasAlpha = true
        }
        return image
    }

    @Test(arguments: 1...8)
    func everyExifOrientationEndsUprightAndCorrectlyMirrored(orientation: Int) throws {
        let jpeg = try ImageEncoder.encode(Self.quadrants(), as: .jpeg, quality: 95)
        let tagged = try ExifBuilder.insert(app1: ExifBuilder.app1(orientation: orientation, littleEndian: orientation % 2 == 0), into: Data(jpeg))
        let name = try write(Array(tagged), "o\(orientation).jpg")
        let still = try decode(name)
        #expect(still.orientation == orientation)
        #expect(still.sourceWidth == 64 && still.sourceHeight == 48)
        let expected = try #require(Self.expectedCorners[orientation])
        #expect(still.image.width == (orientation >= 5 ? 48 : 64))
        #expect(still.image.height == (orientation >= 5 ? 64 : 48))
        #expect(Self.close(colour(still.image, at: expected.red), (255, 0, 0)), "red marker for orientation \(orientation)")
        #expect(Self.close(colour(still.image, at: expected.green), (0, 255, 0)), "green marker for orientation \(orientation)")
    }

    @Test func corpusOrientationFixturesAreTurned() throws {
        for orientation in 1...8 {
            let still = try decode(MediaFixtures.Name.exifJPEG(orientation: orientation), root: fixtures.root)
            #expect(still.orientation == orientation)
            #expect(still.image.width == (orientation >= 5 ? 32 : 64))
        }
    }

    @Test(arguments: [("rgb(255,0,0)", (253, 0, 0)), ("rgb(0,128,255)", (0, 128, 255)), ("rgb(40,200,60)", (40, 200, 60))])
    func cmykJPEGColoursAreRight(colour: String, expected: (Int, Int, Int)) throws {
        let name = "cmyk-\(expected.0)-\(expected.1).jpg"
        let result = try ProcessRunner.run("/usr/bin/convert", ["-size", "640x480", "xc:\(colour)", "-colorspace", "CMYK", "-quality", "95", scratch + "/" + name])
        try #require(result.status == 0, "ImageMagick is needed (apt-get install imagemagick): \(result.stderr)")
        let still = try decode(name, maxLongEdge: 100)
        #expect(still.lowres == 2, "640 px to 100 px decodes at 1/4")
        #expect(still.image.width == 100 && still.image.height == 75)
        #expect(!still.image.hasAlpha, "CMYK decodes with an unused alpha plane, which must not make the thumbnail transparent")
        #expect(Self.close(still.image.pixel(x: 50, y: 37), expected, tolerance: 12), "got \(still.image.pixel(x: 50, y: 37))")
    }

    @Test(arguments: [ImageFormat.png, .webp])
    func alphaIsKept(format: ImageFormat) throws {
        let bytes = try ImageEncoder.encode(Self.quadrants(hole: true), as: format, quality: 95)
        let still = try decode(try write(bytes, "alpha.\(format.fileExtension)"))
        #expect(still.image.hasAlpha)
        #expect(still.image.pixel(x: 32, y: 24).a < 30)
        #expect(still.image.pixel(x: 4, y: 4).a > 225)
        #expect(Self.close(still.image.pixel(x: 4, y: 4), (255, 0, 0)))
    }

    @Test func jpegShrinksOnLoadToTheLargestReductionThatCoversTheTarget() throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=2000x1000", "-frames:v", "1", "-q:v", "3", scratch + "/wide.jpg"])
        let thumb = try decode("wide.jpg", maxLongEdge: 320)
        #expect(thumb.lowres == 2)
        #expect(thumb.image.width == 320 && thumb.image.height == 160)
        let preview = try decode("wide.jpg", maxLongEdge: 1440)
        #expect(preview.lowres == 0)
        #expect(preview.image.width == 1440 && preview.image.height == 720)
        let small = try decode("wide.jpg", maxLongEdge: 4000)
        #expect(small.image.width == 2000, "never upscaled")
    }

    @Test func everyImageFormatDecodes() throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=80x60", "-frames:v", "1", scratch + "/t.bmp"])
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=80x60", "-frames:v", "1", scratch + "/t.tiff"])
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=80x60", "-frames:v", "1", "-pix_fmt", "pal8", scratch + "/pal.png"])
        let progressive = try ProcessRunner.run("/usr/bin/convert", [scratch + "/t.bmp", "-interlace", "Plane", "-quality", "90", scratch + "/prog.jpg"])
        try #require(progressive.status == 0, "\(progressive.stderr)")
        for name in ["t.bmp", "t.tiff", "pal.png", "prog.jpg"] {
            let still = try decode(name)
            #expect(still.image.width == 80 && still.image.height == 60, "\(name)")
        }
        for name in [MediaFixtures.Name.gif, MediaFixtures.Name.webp, MediaFixtures.Name.png16Alpha, MediaFixtures.Name.png8] {
            let still = try decode(name, root: fixtures.root)
            #expect(still.image.width > 0, "\(name)")
        }
    }

    @Test func animatedWebPGivesItsFirstFrame() throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=1", "-c:v", "libwebp", "-loop", "0", scratch + "/anim.webp"])
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: scratch + "/anim.webp")))
        #expect(bytes.count > 40 && String(decoding: bytes[30..<34], as: UTF8.self) == "ANIM", "the fixture must really be animated")
        let still = try decode("anim.webp")
        #expect(still.image.width == 64 && still.image.height == 48)
    }

    @Test func pixelBombIsRefusedFromItsHeaderWithLowPeakMemory() throws {
        // 40000×40000 grey, every row zero: 1.6 GB of pixels in about 1.6 MB of PNG.
        let script = """
            import struct, sys, zlib
            w = h = 40000
            def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
            c = zlib.compressobj(9)
            row = b'\\x00' * (w + 1)
            parts = [c.compress(row * 1000) for _ in range(h // 1000)] + [c.flush()]
            open(sys.argv[1], 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(b'IDAT', b''.join(parts)) + chunk(b'IEND', b''))
            """
        let name = "bomb.png"
        let result = try ProcessRunner.run("/usr/bin/python3", ["-c", script, scratch + "/" + name])
        try #require(result.status == 0, "\(result.stderr)")
        let size = try #require(FileManager.default.attributesOfItem(atPath: scratch + "/" + name)[.size] as? Int)
        #expect(size < 8 << 20, "a few MB")
        let before = Self.peakRSSKiB()
        let error = jobError { () throws(JobError) in _ = try decode(name) }
        let after = Self.peakRSSKiB()
        #expect(error?.code == .pixelLimit)
        #expect(error?.message.contains("40000×40000") == true)
        // A decoded frame would be 1.6 GB (6.4 GB as RGBA). Other suites share the process, so
        // the bound is generous: the file itself is read only up to its header.
        #expect(after - before < 100 * 1024, "peak RSS grew by \(after - before) KiB")
    }

    /// The process's peak resident set (VmHWM), in KiB.
    static func peakRSSKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    @Test(arguments: ["jpg", "png", "webp", "gif"])
    func truncatedImagesGiveAPictureOrCorruptMediaNeverACrash(ext: String) throws {
        try ffmpeg(["-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1", scratch + "/whole.\(ext)"])
        let whole = try Array(Data(contentsOf: URL(fileURLWithPath: scratch + "/whole.\(ext)")))
        for fraction in [0.1, 0.5, 0.9] {
            let name = try write(Array(whole.prefix(Int(Double(whole.count) * fraction))), "cut-\(fraction).\(ext)")
            do {
                let still = try decode(name)
                #expect(still.image.width == 320 && still.image.height == 240)
            } catch {
                #expect(error.code == .corruptMedia, "\(ext) cut at \(fraction): \(error)")
            }
        }
    }

    @Test(arguments: [MediaFixtures.Name.plainJPEG, MediaFixtures.Name.exifJPEG(orientation: 6), MediaFixtures.Name.pngWithExif,
                      MediaFixtures.Name.png16Alpha, MediaFixtures.Name.gif, MediaFixtures.Name.webp])
    func damagedImagesDecodeOrFailWithAnInputCode(source: String) throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(source))))
        var random = SplitMix64(seed: source.utf8.reduce(UInt64(7)) { $0 &* 31 &+ UInt64($1) })
        for round in 0..<100 {
            let name = try write(MutatedInputTests.mutate(original, using: &random), "damaged-\(round)-\(source)")
            do {
                let still = try decode(name)
                #expect(still.image.width >= 1 && still.image.width <= 320)
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "\(name): \(error.code): \(error.message)")
            }
        }
    }

    @Test func notAnImageIsUnsupported() {
        let error = jobError { () throws(JobError) in _ = try decode(MediaFixtures.Name.textAsJPEG, root: fixtures.root) }
        #expect(error?.code == .unsupportedFormat)
    }

    @Test func stopRequestedBeforeDecodingIsHonoured() throws {
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.plainJPEG, in: fixtures.root)
        let error = jobError { () throws(JobError) in _ = try StillImageDecoder.decode(file: file, maxLongEdge: 320, cancellation: cancellation) }
        #expect(error?.code == .cancelled)
    }

    @Test func orientationTransformsAreExact() {
        var image = RGBAImage(width: 3, height: 2)
        for y in 0..<2 { for x in 0..<3 { image.setPixel(x: x, y: y, (UInt8(x), UInt8(y), 0, 255)) } }
        let rotated = image.oriented(exifOrientation: 6)
        #expect(rotated.width == 2 && rotated.height == 3)
        // 90° clockwise: the stored bottom-left pixel (0, 1) becomes the top-left.
        #expect(rotated.pixel(x: 0, y: 0).r == 0 && rotated.pixel(x: 0, y: 0).g == 1)
        #expect(image.oriented(exifOrientation: 9) == image)
        #expect(image.oriented(exifOrientation: nil) == image)
    }
}

@Suite("FFmpeg log lines keep their job context")
struct FFmpegLogContextTests {
    struct UnsafeContext: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }

    func logFromAnotherThread(_ context: UnsafeMutableRawPointer, _ text: String) {
        let box = UnsafeContext(pointer: context)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            CFFmpeg_av_log_text(box.pointer, AV_LOG_ERROR, text)
            done.signal()
        }
        thread.start()
        done.wait()
    }

    @Test func linesFromCodecThreadsReachTheJobLogger() throws {
        let log = CapturedLog()
        let logger = log.logger()
        let codec = try #require(avcodec_find_decoder(AV_CODEC_ID_MJPEG))
        let decoder = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> DecoderContext in try DecoderContext(codec: codec) }
        logFromAnotherThread(UnsafeMutableRawPointer(decoder.pointer), "line from a codec thread")
        #expect(log.messages.contains { $0.contains("line from a codec thread") })

        // A context made outside any job is not tied to this job's logger.
        let unrelated = try DecoderContext(codec: codec)
        logFromAnotherThread(UnsafeMutableRawPointer(unrelated.pointer), "line from an unrelated context")
        #expect(!log.messages.contains { $0.contains("unrelated") })
    }
}
