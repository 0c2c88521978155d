import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// The JPEG XL header reader against FFmpeg's own answer, which decodes the picture to get it.
@Suite("JPEG XL size and depth come from the header",
       .enabled(if: MediaInput.availableImageFormats.contains { $0.demuxer == "jpegxl_pipe" }, "this FFmpeg cannot read JPEG XL"))
struct JPEGXLHeaderTests {
    /// Sizes that take each branch of the size header (multiples of 8, the aspect ratios, odd
    /// sizes, a long edge past 512), in the pixel formats FFmpeg's libjxl encoder writes.
    static let cases: [(width: Int, height: Int, pixelFormat: String)] = [
        (64, 48, "rgb24"), (100, 37, "rgb48le"), (1920, 1080, "rgb24"), (33, 600, "gray"),
        (50, 50, "rgba"), (40, 30, "gray16le"), (70, 30, "rgba64le"), (600, 500, "ya8"),
    ]

    @Test(arguments: cases)
    func theHeaderGivesWhatFFmpegFindsByDecoding(width: Int, height: Int, pixelFormat: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-jxl-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/picture.jxl"
        let encode = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=\(width)x\(height)",
                                                               "-frames:v", "1", "-vf", "format=\(pixelFormat)", "-c:v", "libjxl", "-pix_fmt", pixelFormat, path])
        try #require(encode.status == 0, "\(encode.stderr)")
        // ffprobe runs stream analysis: it decodes the picture to learn its size and format.
        let probe = try ProcessRunner.run("/usr/bin/ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,pix_fmt",
                                                               "-of", "default=noprint_wrappers=1", path])
        let expected = Dictionary(uniqueKeysWithValues: probe.stdout.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: "=", maxSplits: 1)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        })
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let header = try #require(JPEGXLDecoder.header(bytes))
        #expect(String(header.width) == expected["width"] && String(header.height) == expected["height"])

        // The same codestream in the ISOBMFF container (signature, ftyp, jxlc). libjxl's encoder
        // writes the container itself when the file needs a level box (16-bit alpha: level 10).
        if bytes.starts(with: [0xFF, 0x0A]) {
            let container = box("JXL ", [0x0D, 0x0A, 0x87, 0x0A]) + box("ftyp", Array("jxl ".utf8) + [0, 0, 0, 0] + Array("jxl ".utf8)) + box("jxlc", bytes)
            #expect(JPEGXLDecoder.header(container) == header)
        }

        // And the metadata job reports it without stream analysis.
        let file = try SafeFile.open(relativePath: "picture.jxl", in: directory)
        let input = try MediaInput.open(file, sniffedMimeType: "image/jxl")
        let stream = try #require(input.probe().primaryVideo)
        #expect(stream.width == header.width && stream.height == header.height && stream.pixelFormat == expected["pix_fmt"],
                "\(header); FFmpeg: \(expected)")
    }

    /// A lossless 16-bit picture, red on the left and translucent blue on the right, decoded to
    /// 8 bits and reduced: the colours, the alpha and the sides must survive.
    @Test func aSixteenBitPictureDecodesToItsColoursAtEightBits() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-jxl-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let encode = try ProcessRunner.run("/usr/bin/ffmpeg", [
            "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "color=c=0xDC1414:s=64x96,format=rgba",
            "-f", "lavfi", "-i", "color=c=0x1414DC:s=64x96,format=rgba,colorchannelmixer=aa=0.5",
            "-filter_complex", "[0][1]hstack,format=rgba64le", "-frames:v", "1",
            "-c:v", "libjxl", "-distance", "0", "-pix_fmt", "rgba64le", directory + "/two.jxl"])
        try #require(encode.status == 0, "\(encode.stderr)")
        let file = try SafeFile.open(relativePath: "two.jxl", in: directory)
        let still = try JPEGXLDecoder.decode(file: file, limits: .default, maxLongEdge: 64)
        #expect(still.image.width == 64 && still.image.height == 48)
        #expect(still.sourceWidth == 128 && still.sourceHeight == 96 && still.format == "jpegxl")
        #expect(still.image.hasAlpha)
        let left = still.image.pixel(x: 4, y: 24), right = still.image.pixel(x: 60, y: 24)
        #expect(abs(Int(left.r) - 220) <= 2 && abs(Int(left.g) - 20) <= 2 && abs(Int(left.b) - 20) <= 2 && left.a == 255, "\(left)")
        #expect(abs(Int(right.r) - 20) <= 2 && abs(Int(right.b) - 220) <= 2 && abs(Int(right.a) - 128) <= 2, "\(right)")
    }

    @Test func aPictureOverThePixelLimitIsRefusedBeforeDecoding() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-jxl-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let encode = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=200x100",
                                                               "-frames:v", "1", "-c:v", "libjxl", directory + "/big.jxl"])
        try #require(encode.status == 0, "\(encode.stderr)")
        let file = try SafeFile.open(relativePath: "big.jxl", in: directory)
        var limits = MediaLimits.default
        limits.maxPixels = 10_000
        let error = jobError { () throws(JobError) in _ = try JPEGXLDecoder.decode(file: file, limits: limits, maxLongEdge: 64) }
        #expect(error?.code == .pixelLimit, "\(String(describing: error))")
    }

    @Test func foreignBytesGiveNoHeader() {
        #expect(JPEGXLDecoder.header([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]) == nil)
        #expect(!JPEGXLDecoder.recognizes([0x89, 0x50, 0x4E, 0x47]))
    }

    private func box(_ type: String, _ payload: [UInt8]) -> [UInt8] {
        let size = payload.count + 8
        return [UInt8(size >> 24 & 0xFF), UInt8(size >> 16 & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF)] + Array(type.utf8) + payload
    }
}

/// The PNG header reader against FFmpeg's own answer, for every pixel format its PNG encoder writes.
@Suite("PNG size and pixel format come from the header")
struct PNGHeaderTests {
    @Test(arguments: ["rgb24", "rgba", "rgb48be", "rgba64be", "gray", "gray16be", "ya8", "ya16be", "pal8", "monob"])
    func theHeaderGivesWhatFFmpegFindsByDecoding(pixelFormat: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-png-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/picture.png"
        let encode = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=40x22",
                                                               "-frames:v", "1", "-pix_fmt", pixelFormat, path])
        try #require(encode.status == 0, "\(encode.stderr)")
        let probe = try ProcessRunner.run("/usr/bin/ffprobe", ["-v", "error", "-show_entries", "stream=pix_fmt", "-of", "csv=p=0", path])
        let file = try SafeFile.open(relativePath: "picture.png", in: directory)
        let header = try #require(PNGHeader.parse(try file.read(at: 0, count: Int(file.size))))
        #expect(header.width == 40 && header.height == 22)
        let stream = try #require(try MediaInput.open(file, sniffedMimeType: "image/png").probe().primaryVideo)
        #expect(stream.pixelFormat == probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(header)")
        #expect(stream.width == 40 && stream.height == 22)
    }
}
