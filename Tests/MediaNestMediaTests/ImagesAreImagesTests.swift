import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

private let quietLogger: Logger = {
    var logger = TestLogging.logger("test.images-are-images")
    logger.logLevel = .critical
    return logger
}()

/// Issue 17 item 7: a still FFmpeg reads is an image (a preview, never trickplay), and a video
/// whose container gives no duration still gets trickplay, read forward.
@Suite("images are images; videos without a duration get trickplay", .timeLimit(.minutes(3)))
struct ImagesAreImagesTests {
    /// Runs `ffmpeg` with `arguments`, its output piped through `cat` into `path`: a muxer
    /// writing to a pipe cannot seek back, so Matroska gets no Duration element.
    private func ffmpegThroughPipe(_ arguments: [String], into path: String) throws {
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let made = try ProcessRunner.run("/bin/sh", ["-c", "/usr/bin/ffmpeg -v error -y \(quoted) pipe:1 | cat > '\(path)'"])
        try #require(made.status == 0, "\(made.stderr)")
    }

    private func decodeStill(_ name: String, in root: String) throws(JobError) -> RenderedStill {
        try StillRendering.decode(file: SafeFile.open(relativePath: name, in: root), declaredMimeType: nil, fileName: nil, maxLongEdge: 64,
                                  limits: .default, decoderThreads: 1, cancellation: nil, logger: quietLogger)
    }

    /// A one-frame H.264 MP4 (what some apps export for a photo): the container says one frame,
    /// so it is an image for the metadata job and the preview job (which makes no trickplay for
    /// an image source).
    @Test func singleFrameVideoStreamIsAnImage() throws {
        let fixtures = try MediaFixtures.load()
        let root = try fixtures.makeScratchDirectory("one-frame")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-frames:v", "1",
                                                             "-c:v", "libx264", "-pix_fmt", "yuv420p", root + "/photo.mp4"])
        try #require(made.status == 0, "\(made.stderr)")
        let result = try MetadataExtractor.extract(root: root, relativePath: "photo.mp4", declaredMimeType: "video/mp4", computeChecksums: false)
        #expect(result.kind == .image)
        #expect(result.width == 96 && result.height == 64)
        #expect(result.summary["duration"] == nil)
        #expect(result.probe.primaryVideo?.frameCount == 1)
        #expect(TranscodePolicy.decide(result.probe, settings: TranscodeSettings()).action == .none, "no rendition of a photo")

        let still = try decodeStill("photo.mp4", in: root)
        #expect(still.kind == .image, "an image source: the preview job makes no trickplay")
        #expect(still.image.width == 64 && still.image.height == 43)

        // Two frames are a video.
        let clip = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-frames:v", "2",
                                                             "-c:v", "libx264", "-pix_fmt", "yuv420p", root + "/clip.mp4"])
        try #require(clip.status == 0, "\(clip.stderr)")
        #expect(try MetadataExtractor.extract(root: root, relativePath: "clip.mp4", declaredMimeType: "video/mp4", computeChecksums: false).kind == .video)
        #expect(try decodeStill("clip.mp4", in: root).kind == .video)
    }

    /// An animated GIF is an image for the metadata job (its MIME type says so) but not a still:
    /// the transcode policy may still make a playable rendition of it.
    @Test func animatedGIFIsNotAStill() throws {
        let fixtures = try MediaFixtures.load()
        let probe = try MediaInput.open(SafeFile.open(relativePath: MediaFixtures.Name.gif, in: fixtures.root), sniffedMimeType: "image/gif").probe()
        #expect(probe.formatName == "gif")
        #expect(!probe.isStillImage)
    }

    /// JPEG XL, 8-bit bare codestream and 16-bit in the ISOBMFF container: images for both jobs.
    @Test(arguments: [("rgb24", "j8.jxl"), ("rgba64le", "j16.jxl")])
    func jpegXLIsAnImage(_ pixelFormat: String, _ name: String) throws {
        let fixtures = try MediaFixtures.load()
        let root = try fixtures.makeScratchDirectory("jxl")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64", "-frames:v", "1",
                                                             "-pix_fmt", pixelFormat, "-c:v", "libjxl", root + "/" + name])
        try #require(made.status == 0, "\(made.stderr)")
        let result = try MetadataExtractor.extract(root: root, relativePath: name, declaredMimeType: "image/jxl", computeChecksums: false)
        #expect(result.kind == .image && result.width == 96 && result.height == 64)
        #expect(try decodeStill(name, in: root).kind == .image)
    }

    /// The ramp clip of the trickplay tests (9.5 s, Y = 25·t, a keyframe a second) copied into a
    /// Matroska written to a pipe, which has no duration: the same ten tiles as from the MP4,
    /// read forward, instead of `corrupt_media`.
    @Test func videoWithoutDurationIsSampledForward() throws {
        let fixtures = try MediaFixtures.loadStills()
        let root = try fixtures.makeScratchDirectory("no-duration")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try ffmpegThroughPipe(["-i", fixtures.path(MediaFixtures.StillsName.lumaRamp), "-c", "copy", "-f", "matroska"], into: root + "/ramp.mkv")
        let file = try SafeFile.open(relativePath: "ramp.mkv", in: root)
        #expect(try MediaInput.open(file).probe().duration == nil, "the fixture must have no duration")

        let directory = try DerivedDirectory.forMediaItem("7c0ffee0-0b7d-4e55-9a7c-1f0e2d3c4b5a", derivedRoot: root, subdirectory: "trickplay")
        let manifest = try Trickplay.build(file: SafeFile.open(relativePath: "ramp.mkv", in: root), limits: .default, into: directory,
                                           interval: .seconds(1), tileWidth: 320, columns: 4, rows: 2, quality: 90, progress: nil,
                                           cancellation: nil, logger: quietLogger, threads: 1)
        // Keyframes at 0…9 s: one tile per second, 8 + 2 on two sheets.
        #expect(manifest.count == 10)
        #expect(manifest.tileWidth == 64 && manifest.tileHeight == 36)
        #expect(directory.fileNames() == ["sheet-000.jpg", "sheet-001.jpg"])
        let sheets = try manifest.sheets.map { path in
            try PacketImageDecoder.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: root + "/" + path))), maxLongEdge: 10_000)
        }
        #expect(sheets.map(\.height) == [72, 36])
        var previous = -1.0
        for index in 0..<manifest.count {
            let slot = index % 8
            let x = (slot % 4) * 64, y = (slot / 4) * 36
            let stats = PictureStats(sheets[index / 8], x: (x + 8)..<(x + 56), y: (y + 6)..<(y + 30))
            let expected = min(255, max(0, (Double(25 * index) - 16) * 255 / 219))
            #expect(abs(stats.luma - expected) < 12, "tile \(index): \(stats), expected \(expected)")
            #expect(stats.luma > previous, "tile \(index) is brighter than tile \(index - 1)")
            previous = stats.luma
        }
    }

    /// A duration limit holds when the duration is only found by reading.
    @Test func forwardSamplingStopsAtTheDurationLimit() throws {
        let fixtures = try MediaFixtures.loadStills()
        let root = try fixtures.makeScratchDirectory("no-duration-limit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try ffmpegThroughPipe(["-i", fixtures.path(MediaFixtures.StillsName.lumaRamp), "-c", "copy", "-f", "matroska"], into: root + "/ramp.mkv")
        let directory = try DerivedDirectory.forMediaItem("7c0ffee0-0b7d-4e55-9a7c-1f0e2d3c4b5a", derivedRoot: root, subdirectory: "trickplay")
        let error = try #require(jobError { () throws(JobError) in
            _ = try Trickplay.build(file: SafeFile.open(relativePath: "ramp.mkv", in: root), limits: MediaLimits(maxDuration: .seconds(5)),
                                    into: directory, interval: .seconds(1), progress: nil, cancellation: nil, logger: quietLogger)
        })
        #expect(error.code == .durationLimit, "\(error.message)")
        #expect(directory.fileNames().isEmpty, "nothing half-written")
    }
}
