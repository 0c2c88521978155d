import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// The streaming TIFF reader (`TIFFStripDecoder`) against FFmpeg's TIFF decoder, which it
/// replaces for plain strips: the same pictures, pixel for pixel, from TIFFs written by three
/// different encoders (FFmpeg, libvips, ImageMagick), and FFmpeg's own answer for what it does
/// not take or finds inconsistent.
@Suite("TIFFStripDecoder: plain TIFF strips streamed into the reduction")
struct TIFFStripDecoderTests {
    let scratch: String

    init() throws {
        scratch = NSTemporaryDirectory() + "medianest-tiffstrips-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    func run(_ tool: String, _ arguments: [String]) throws {
        let result = try ProcessRunner.run(tool, arguments)
        try #require(result.status == 0, "\(tool) \(arguments.joined(separator: " ")) failed: \(result.stderr)")
    }

    /// A 733×517 16-bit picture with gradients and grain (odd sizes, so rows and strips do not
    /// line up with anything), and a translucent copy for the alpha formats.
    func source() throws -> String {
        let path = scratch + "/source.png"
        if !FileManager.default.fileExists(atPath: path) {
            try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi",
                                        "-i", "gradients=s=733x517:seed=1:c0=0x3050a0:c1=0xe0a040:c2=0x20a060:n=3,format=rgba64le,noise=alls=12:allf=t,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='65535*X/W'",
                                        "-frames:v", "1", "-pix_fmt", "rgba64be", path])
        }
        return path
    }

    /// Decodes `name` through the streaming reader and through FFmpeg, at 320 px.
    func bothWays(_ name: String, colourSpace: StillColourSpace = .srgb) throws -> (streamed: DecodedStill, ffmpeg: DecodedStill, layout: TIFFStripDecoder.Layout?) {
        let file = try SafeFile.open(relativePath: name, in: scratch)
        let layout = try TIFFStripDecoder.layout(ByteReader(file), limits: .default)
        let streamed = try StillImageDecoder.decode(file: file, limits: .default, maxLongEdge: 320, threads: 1, cancellation: nil,
                                                    colourSpace: colourSpace, streamTIFF: true)
        let ffmpeg = try StillImageDecoder.decode(file: file, limits: .default, maxLongEdge: 320, threads: 1, cancellation: nil,
                                                  colourSpace: colourSpace, streamTIFF: false)
        return (streamed, ffmpeg, layout)
    }

    /// FFmpeg's encoder: one strip when deflated, strips of a few rows when not; every sample layout.
    @Test(arguments: ["rgb24", "rgba", "rgb48le", "rgba64le", "gray", "gray16le", "ya8", "ya16le"], ["raw", "deflate"])
    func ffmpegsTIFFsDecodeToFFmpegsPicture(pixelFormat: String, compression: String) throws {
        let name = "ffmpeg-\(pixelFormat)-\(compression).tif"
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", try source(), "-compression_algo", compression,
                                    "-pix_fmt", pixelFormat, scratch + "/" + name])
        let (streamed, ffmpeg, layout) = try bothWays(name)
        #expect(layout != nil, "\(name) is a plain TIFF the streaming reader takes")
        #expect(layout?.deflated == (compression == "deflate"))
        if compression == "deflate" { #expect(layout?.stripOffsets.count == 1, "FFmpeg deflates one strip") }
        #expect(streamed == ffmpeg, "\(name): the streamed picture differs from FFmpeg's")
        #expect(streamed.image.width == 320 && streamed.image.height == 226)
    }

    /// libvips writes the horizontal predictor; ImageMagick writes big-endian files in strips.
    @Test func predictorAndBigEndianFilesDecodeToFFmpegsPicture() throws {
        let source = try source()
        try run("/usr/bin/vips", ["tiffsave", source, scratch + "/vips-predictor.tif", "--compression", "deflate", "--predictor", "horizontal"])
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-pix_fmt", "rgb24", scratch + "/source8.png"])
        try run("/usr/bin/vips", ["tiffsave", scratch + "/source8.png", scratch + "/vips-predictor8.tif", "--compression", "deflate", "--predictor", "horizontal"])
        try run("/usr/local/bin/convert", [source, "-alpha", "off", "-depth", "16", "-define", "tiff:endian=msb", "-compress", "zip",
                                           "-define", "tiff:predictor=2", scratch + "/magick-be16.tif"])
        try run("/usr/local/bin/convert", [source, "-depth", "16", "-define", "tiff:endian=msb", "-compress", "none", scratch + "/magick-be16-raw.tif"])
        for name in ["vips-predictor.tif", "vips-predictor8.tif", "magick-be16.tif", "magick-be16-raw.tif"] {
            let (streamed, ffmpeg, layout) = try bothWays(name)
            #expect(layout != nil, "\(name) is a plain TIFF the streaming reader takes")
            #expect(streamed == ffmpeg, "\(name): the streamed picture differs from FFmpeg's")
        }
        let file = try SafeFile.open(relativePath: "vips-predictor.tif", in: scratch)
        #expect(try TIFFStripDecoder.layout(ByteReader(file), limits: .default)?.horizontalPredictor == true)
        let bigEndian = try SafeFile.open(relativePath: "magick-be16.tif", in: scratch)
        #expect(try TIFFStripDecoder.layout(ByteReader(bigEndian), limits: .default)?.littleEndian == false)
    }

    /// A 16-bit Display P3 TIFF keeps its 16 bits up to LittleCMS and converts like FFmpeg's frame.
    @Test func aSixteenBitTaggedTIFFIsColourManagedLikeFFmpegsFrame() throws {
        let profile = Colour.serialize(WideProfile.displayP3.make())
        let png = ColourSources.png(width: 97, height: 61, pixel: [52000, 9000, 6000], sixteenBits: true, profile: profile)
        try Data(png).write(to: URL(fileURLWithPath: scratch + "/p3.png"))
        try run("/usr/bin/vips", ["tiffsave", scratch + "/p3.png", scratch + "/p3.tif", "--compression", "deflate"])
        for space in StillColourSpace.allCases {
            let (streamed, ffmpeg, layout) = try bothWays("p3.tif", colourSpace: space)
            #expect(layout?.bitsPerSample == 16)
            if space == .srgb { #expect(streamed.convertedFrom == "Display P3") }
            #expect(streamed == ffmpeg, "\(space): the streamed picture differs from FFmpeg's")
        }
    }

    /// What the reader does not take is FFmpeg's, as before: other compressions, tiles, planar
    /// samples, and headers whose strips point outside the file.
    @Test func otherTIFFsAreLeftToFFmpeg() throws {
        let source = try source()
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-compression_algo", "lzw", "-pix_fmt", "rgb48le", scratch + "/lzw.tif"])
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-compression_algo", "packbits", "-pix_fmt", "rgb24", scratch + "/packbits.tif"])
        try run("/usr/bin/vips", ["tiffsave", source, scratch + "/tiled.tif", "--tile", "--compression", "deflate"])
        for name in ["lzw.tif", "packbits.tif", "tiled.tif"] {
            let file = try SafeFile.open(relativePath: name, in: scratch)
            #expect(try TIFFStripDecoder.layout(ByteReader(file), limits: .default) == nil, "\(name) is FFmpeg's")
            let still = try StillImageDecoder.decode(file: file, maxLongEdge: 320)
            #expect(still.image.width == 320 && still.format == "tiff")
        }
        // A deflated one-strip file whose strip offset points past the end: FFmpeg's error, not a read outside.
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-compression_algo", "deflate", "-pix_fmt", "rgb48le", scratch + "/deflate.tif"])
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: scratch + "/deflate.tif")))
        let file = try SafeFile.open(relativePath: "deflate.tif", in: scratch)
        let layout = try #require(try TIFFStripDecoder.layout(ByteReader(file), limits: .default))
        let offset = Int(layout.stripOffsets[0])
        // The StripOffsets value (inline for one strip) pointed past the end.
        #expect(Self.inlineValue(of: 273, in: bytes) == offset)
        Self.setInlineValue(of: 273, in: &bytes, to: bytes.count + 100)
        try Data(bytes).write(to: URL(fileURLWithPath: scratch + "/outside.tif"))
        let outside = try SafeFile.open(relativePath: "outside.tif", in: scratch)
        #expect(try TIFFStripDecoder.layout(ByteReader(outside), limits: .default) == nil)
        #expect(throws: JobError.self) { try StillImageDecoder.decode(file: outside, maxLongEdge: 320) }
    }

    /// A deflated strip that ends early shows what it holds and black below; a strip damaged from
    /// its first byte is `corrupt_media`.
    @Test func aDamagedStripKeepsWhatInflatedAndNothingElse() throws {
        // Grain, so the compressed bytes follow the rows.
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "color=c=white:s=200x150,noise=alls=20:allf=t", "-frames:v", "1",
                                    "-compression_algo", "deflate", "-pix_fmt", "rgb48le", scratch + "/grain.tif"])
        let whole = Array(try Data(contentsOf: URL(fileURLWithPath: scratch + "/grain.tif")))
        let file = try SafeFile.open(relativePath: "grain.tif", in: scratch)
        let intact = try StillImageDecoder.decode(file: file, maxLongEdge: 200)
        let layout = try #require(try TIFFStripDecoder.layout(ByteReader(file), limits: .default))
        let start = Int(layout.stripOffsets[0]), length = Int(layout.stripByteCounts[0])
        // The strip said to be half as long as it is: its stream ends early.
        var damaged = whole
        #expect(Self.inlineValue(of: 279, in: damaged) == length)
        Self.setInlineValue(of: 279, in: &damaged, to: length / 2)
        try Data(damaged).write(to: URL(fileURLWithPath: scratch + "/half.tif"))
        let half = try StillImageDecoder.decode(file: try SafeFile.open(relativePath: "half.tif", in: scratch), maxLongEdge: 200)
        #expect(half.image.pixel(x: 100, y: 2) == intact.image.pixel(x: 100, y: 2), "the rows before the damage")
        #expect(half.image.pixel(x: 100, y: 147) == (0, 0, 0, 255), "black after it")
        // Garbage from the strip's first byte.
        var broken = whole
        for i in start..<(start + length) { broken[i] = 0xFF }
        try Data(broken).write(to: URL(fileURLWithPath: scratch + "/broken.tif"))
        let brokenFile = try SafeFile.open(relativePath: "broken.tif", in: scratch)
        let error = jobError { () throws(JobError) in _ = try StillImageDecoder.decode(file: brokenFile, maxLongEdge: 200) }
        #expect(error?.code == .corruptMedia)
    }

    /// Damaged copies of plain TIFFs (the header, the strip tables, the deflate stream) decode or
    /// fail with an input code; never a crash, a read outside the file or an internal error.
    @Test func damagedCopiesSucceedOrFailWithAnInputCode() throws {
        let source = try source()
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-vf", "scale=97:61", "-compression_algo", "deflate",
                                    "-pix_fmt", "rgb48le", scratch + "/m-deflate.tif"])
        try run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-i", source, "-vf", "scale=97:61", "-compression_algo", "raw",
                                    "-pix_fmt", "ya16le", scratch + "/m-raw.tif"])
        try run("/usr/bin/vips", ["tiffsave", source, scratch + "/m-predictor.tif", "--compression", "deflate", "--predictor", "horizontal",
                                  "--strip"])
        var outcomes: [String: Int] = [:]
        for name in ["m-deflate.tif", "m-raw.tif", "m-predictor.tif"] {
            let original = Array(try Data(contentsOf: URL(fileURLWithPath: scratch + "/" + name)))
            var random = SplitMix64(seed: name.utf8.reduce(UInt64(7)) { $0 &* 31 &+ UInt64($1) })
            for round in 0..<80 {
                let mutated = MutatedInputTests.mutate(original, using: &random)
                let copy = "case-\(round)-\(name)"
                try Data(mutated).write(to: URL(fileURLWithPath: scratch + "/" + copy))
                do {
                    let file = try SafeFile.open(relativePath: copy, in: scratch)
                    let still = try StillImageDecoder.decode(file: file, maxLongEdge: 64)
                    #expect(still.image.pixels.count == still.image.width * still.image.height * 4)
                    outcomes["decoded", default: 0] += 1
                } catch {
                    #expect(MutatedInputTests.inputCodes.contains(error.code), "\(copy): \(error.code.rawValue) \(error.message)")
                    outcomes[error.code.rawValue, default: 0] += 1
                }
            }
        }
        #expect(outcomes["decoded", default: 0] > 0, "some damaged copies still decode: \(outcomes)")
    }

    /// The inline SHORT or LONG value of `tag` in IFD0 of a little-endian TIFF.
    static func inlineValue(of tag: Int, in bytes: [UInt8]) -> Int? {
        let ifd = Int(bytes[4]) | Int(bytes[5]) << 8 | Int(bytes[6]) << 16 | Int(bytes[7]) << 24
        let count = Int(bytes[ifd]) | Int(bytes[ifd + 1]) << 8
        for entry in 0..<count {
            let at = ifd + 2 + entry * 12
            guard Int(bytes[at]) | Int(bytes[at + 1]) << 8 == tag else { continue }
            let type = Int(bytes[at + 2]) | Int(bytes[at + 3]) << 8
            return type == 3 ? Int(bytes[at + 8]) | Int(bytes[at + 9]) << 8
                : Int(bytes[at + 8]) | Int(bytes[at + 9]) << 8 | Int(bytes[at + 10]) << 16 | Int(bytes[at + 11]) << 24
        }
        return nil
    }

    /// Rewrites the inline LONG value of `tag` in IFD0 of a little-endian TIFF.
    static func setInlineValue(of tag: Int, in bytes: inout [UInt8], to value: Int) {
        let ifd = Int(bytes[4]) | Int(bytes[5]) << 8 | Int(bytes[6]) << 16 | Int(bytes[7]) << 24
        let count = Int(bytes[ifd]) | Int(bytes[ifd + 1]) << 8
        for entry in 0..<count {
            let at = ifd + 2 + entry * 12
            guard Int(bytes[at]) | Int(bytes[at + 1]) << 8 == tag else { continue }
            bytes[at + 2] = 4; bytes[at + 3] = 0
            for k in 0..<4 { bytes[at + 8 + k] = UInt8(value >> (8 * k) & 0xFF) }
        }
    }
}
