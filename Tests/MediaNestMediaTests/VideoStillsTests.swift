import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Mean luma and mean chroma (max − min of R, G, B) of a picture, 0–255.
struct PictureStats: CustomStringConvertible {
    var luma: Double
    var deviation: Double
    var chroma: Double

    init(_ image: RGBAImage, x: Range<Int>? = nil, y: Range<Int>? = nil) {
        let xs = x ?? 0..<image.width, ys = y ?? 0..<image.height
        var sum = 0.0, squares = 0.0, chromaSum = 0.0
        for py in ys {
            for px in xs {
                let p = image.pixel(x: px, y: py)
                let l = 0.2126 * Double(p.r) + 0.7152 * Double(p.g) + 0.0722 * Double(p.b)
                sum += l
                squares += l * l
                chromaSum += Double(max(p.r, p.g, p.b) - min(p.r, p.g, p.b))
            }
        }
        let n = Double(xs.count * ys.count)
        luma = sum / n
        deviation = max(0, squares / n - luma * luma).squareRoot()
        chroma = chromaSum / n
    }

    var description: String { String(format: "luma %.1f ± %.1f, chroma %.1f", luma, deviation, chroma) }
}

/// Runs ``VideoStills/representativeFrame`` on a fixture file.
func still(_ fixtures: MediaFixtures, _ name: String, maxLongEdge: Int = 320, statistics: inout VideoDecodeStatistics) throws(JobError) -> RGBAImage {
    let file = try SafeFile.open(relativePath: name, in: fixtures.root)
    return try VideoStills.representativeFrame(file: file, limits: .default, maxLongEdge: maxLongEdge, cancellation: nil,
                                               logger: TestLogging.logger(), statistics: &statistics)
}

/// Runs ``VideoStills/representativeFrame`` on a file under `root`.
func still(root: String, _ name: String, limits: MediaLimits, maxLongEdge: Int) throws(JobError) -> RGBAImage {
    let file = try SafeFile.open(relativePath: name, in: root, limits: limits)
    return try VideoStills.representativeFrame(file: file, limits: limits, maxLongEdge: maxLongEdge, cancellation: nil, logger: TestLogging.logger())
}

/// Builds trickplay sheets of `file` (one tile per second, 4×4) into `directory`.
func trickplay(_ file: SafeFile, into directory: DerivedDirectory) throws(JobError) -> TrickplayManifest {
    try Trickplay.build(file: file, limits: MediaLimits(timeout: .seconds(20)), into: directory, interval: .seconds(1), columns: 4, rows: 4,
                        progress: nil, cancellation: nil, logger: TestLogging.logger())
}

func still(_ fixtures: MediaFixtures, _ name: String, maxLongEdge: Int = 320) throws(JobError) -> RGBAImage {
    var statistics = VideoDecodeStatistics()
    return try still(fixtures, name, maxLongEdge: maxLongEdge, statistics: &statistics)
}

@Suite("Video stills", .timeLimit(.minutes(3)))
struct VideoStillsTests {
    @Test func aVideoThatStartsBlackStillGetsARealFrame() throws {
        let fixtures = try MediaFixtures.loadStills()
        var statistics = VideoDecodeStatistics()
        let image = try still(fixtures, MediaFixtures.StillsName.blackStart, statistics: &statistics)
        let stats = PictureStats(image)
        #expect(image.width == 160 && image.height == 90)
        #expect(stats.luma > 40 && stats.deviation > 20 && stats.chroma > 20, "\(stats)")
        // The middle of the clip (4 s) is still black: the first candidate was rejected.
        #expect(statistics.framesDecoded >= 2 && statistics.framesDecoded <= VideoStills.maxCandidates, "\(statistics)")
    }

    @Test func aBlackStartWithOneKeyframeIsFoundByDecodingInOrder() throws {
        let fixtures = try MediaFixtures.loadStills()
        var statistics = VideoDecodeStatistics()
        let image = try still(fixtures, MediaFixtures.StillsName.blackStartOneKeyframe, statistics: &statistics)
        let stats = PictureStats(image)
        #expect(stats.luma > 40 && stats.deviation > 20, "\(stats)")
        #expect(statistics.framesDecoded > VideoStills.maxCandidates && statistics.framesDecoded <= VideoStills.fallbackFrames + 2, "\(statistics)")
    }

    @Test func aLongVideoCostsNoMoreDecodingThanAShortOne() throws {
        let fixtures = try MediaFixtures.loadStills()
        var short = VideoDecodeStatistics()
        var long = VideoDecodeStatistics()
        _ = try still(fixtures, MediaFixtures.StillsName.shortClip, statistics: &short)
        _ = try still(fixtures, MediaFixtures.StillsName.longClip, statistics: &long)
        // 30 minutes at 2 fps is 3600 frames; decoding from the start would read ~360 packets just
        // to reach 10 %.
        #expect(long.framesDecoded == short.framesDecoded, "short \(short), long \(long)")
        #expect(long.framesDecoded <= VideoStills.maxCandidates)
        #expect(long.packetsRead <= short.packetsRead + 8, "short \(short), long \(long)")
        #expect(long.packetsRead < 40, "\(long)")
    }

    @Test func aRotatedPhoneVideoIsUpright() throws {
        let fixtures = try MediaFixtures.load()
        let image = try still(fixtures, MediaFixtures.Name.rotatedMP4)
        #expect(image.width == 32 && image.height == 64)
        // The ffmpeg CLI autorotates: its first frame must match ours pixel for pixel (roughly).
        let reference = try Self.cliFrame(fixtures.path(MediaFixtures.Name.rotatedMP4), width: 32, height: 64)
        let turnedWrongWay = VideoGeometry.rotate(image, clockwise: 180)
        #expect(Self.meanDifference(image, reference) < 12)
        #expect(Self.meanDifference(turnedWrongWay, reference) > 2 * Self.meanDifference(image, reference) + 10)
    }

    @Test func anamorphicVideoKeepsItsDisplayAspect() throws {
        let fixtures = try MediaFixtures.load()
        let full = try still(fixtures, MediaFixtures.Name.anamorphicMP4)
        #expect(full.width == 128 && full.height == 32)
        let small = try still(fixtures, MediaFixtures.Name.anamorphicMP4, maxLongEdge: 64)
        #expect(small.width == 64 && small.height == 16)
    }

    @Test func tenBitHEVCGivesAnEightBitPicture() throws {
        let fixtures = try MediaFixtures.load()
        let image = try still(fixtures, MediaFixtures.Name.hevc10MKV)
        let stats = PictureStats(image)
        #expect(image.width == 64 && image.height == 64)
        #expect(stats.deviation > 20 && stats.chroma > 30, "\(stats)")
    }

    @Test(arguments: [MediaFixtures.StillsName.pq, MediaFixtures.StillsName.hlg])
    func hdrIsToneMappedNotWashedOut(name: String) throws {
        let fixtures = try MediaFixtures.loadStills()
        let sdr = PictureStats(try still(fixtures, MediaFixtures.StillsName.sdrReference))
        let image = try still(fixtures, name)
        let hdr = PictureStats(image)
        #expect(image.width == 160 && image.height == 90)
        // Same brightness and contrast as the SDR master, and most of its colour (HLG's encoder, zimg,
        // applies its OOTF per channel, which costs some saturation before we ever see the file).
        #expect(hdr.luma > 0.8 * sdr.luma && hdr.luma < 1.2 * sdr.luma, "sdr \(sdr), hdr \(hdr)")
        #expect(hdr.deviation > 0.8 * sdr.deviation, "sdr \(sdr), hdr \(hdr)")
        #expect(hdr.chroma > 0.6 * sdr.chroma, "sdr \(sdr), hdr \(hdr)")

        // The same frame without tone-mapping is the washed-out grey users complain about; the
        // thresholds above must tell the two apart.
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        let source = try VideoSource(file: file, limits: .default, cancellation: nil, threads: 1)
        _ = try source.readPacket(budget: 10)
        let frame = try #require(try source.decodeKeyframe())
        let naive = PictureStats(try FrameConverter.convert(frame.pointer, width: 160, height: 90))
        #expect(naive.chroma < 0.6 * sdr.chroma || naive.deviation < 0.8 * sdr.deviation, "sdr \(sdr), naive \(naive)")
    }

    @Test(arguments: [MediaFixtures.Name.truncatedMP4, MediaFixtures.Name.randomBytes, MediaFixtures.Name.flac, MediaFixtures.Name.textAsJPEG])
    func damagedOrNonVideoInputFailsWithAnInputCode(name: String) throws {
        let fixtures = try MediaFixtures.load()
        do {
            let image = try still(fixtures, name)
            // A truncated file may still hold a decodable keyframe; then it must be a picture.
            #expect(PictureStats(image).deviation > 5)
        } catch {
            #expect([JobError.Code.corruptMedia, .unsupportedFormat].contains(error.code), "\(error)")
            #expect(error.message.contains(name), "\(error.message)")
        }
    }

    @Test func aStopBeforeTheFirstFrameSurfacesAsTheStopsCode() throws {
        let fixtures = try MediaFixtures.load()
        let cancellation = JobCancellation()
        cancellation.stop(.shutdown)
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.plainMP4, in: fixtures.root)
        let error = jobError { () throws(JobError) in
            _ = try VideoStills.representativeFrame(file: file, limits: .default, maxLongEdge: 320, cancellation: cancellation, logger: TestLogging.logger())
        }
        #expect(error?.code == .shutdown)
    }

    @Test func frameScoresTellBlankFromPictures() {
        #expect(FrameScore(samples: [UInt8](repeating: 16, count: 4096)).isBlank)
        #expect(FrameScore(samples: [UInt8](repeating: 235, count: 4096)).isBlank)
        let ramp = (0..<4096).map { UInt8($0 % 256) }
        let picture = FrameScore(samples: ramp)
        #expect(!picture.isBlank && picture.isClearlyAPicture)
        #expect(picture.value > FrameScore(samples: [UInt8](repeating: 128, count: 4096)).value)
    }

    /// The first frame of `path` as the ffmpeg CLI shows it (autorotated), scaled to `width` × `height`.
    static func cliFrame(_ path: String, width: Int, height: Int) throws -> RGBAImage {
        // The runner decodes stdout as UTF-8, so the raw frame goes through a file.
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("frame-\(UUID().uuidString).rgba")
        defer { try? FileManager.default.removeItem(at: output) }
        let written = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-i", path, "-frames:v", "1", "-vf", "scale=\(width):\(height)",
                                                                "-f", "rawvideo", "-pix_fmt", "rgba", output.path])
        #expect(written.status == 0, "\(written.stderr)")
        let data = try Data(contentsOf: output)
        return RGBAImage(width: width, height: height, pixels: Array(data), hasAlpha: false)
    }

    /// Mean absolute difference of the RGB channels of two pictures of the same size.
    static func meanDifference(_ a: RGBAImage, _ b: RGBAImage) -> Double {
        guard a.width == b.width, a.height == b.height else { return .infinity }
        var total = 0
        for i in stride(from: 0, to: a.pixels.count, by: 4) {
            for c in 0..<3 { total += abs(Int(a.pixels[i + c]) - Int(b.pixels[i + c])) }
        }
        return Double(total) / Double(a.width * a.height * 3)
    }
}
