import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// `HEVCReducingDecoder` (libavcodec decodes a whole HEVC picture and libswscale reduces it
/// before libheif sees it) against libheif's own decoding with libde265: the same picture, to
/// within the rounding of the one extra step (the reduced samples are rounded to the stream's
/// 10 bits before they are turned into RGB).
@Suite("HEVCReducingDecoder: deep HEIC pictures reduced before libheif copies them", .timeLimit(.minutes(5)))
struct HEVCReducingDecoderTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var width: Int
        var height: Int
        var options: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // 700 rows: coded as 704, the stream crops them (its conformance window).
        Case(name: "10-bit 4:2:0", width: 1024, height: 700, options: []),
        Case(name: "10-bit 4:4:4", width: 960, height: 640, options: ["-p", "chroma=444"]),
    ]

    @Test(arguments: cases)
    func aDeepHEICReducedInTheDecoderMatchesLibheifsOwnDecode(_ source: Case) throws {
        let scratch = try CommittedFixtures.scratch("hevc-reduce")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let png = scratch + "/source.png", heic = scratch + "/source.heic"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi",
                                                             "-i", "gradients=s=\(source.width)x\(source.height):seed=1:c0=0x3050a0:c1=0xe0a040:c2=0x20a060:n=3,format=gbrp,noise=alls=6:allf=t",
                                                             "-frames:v", "1", "-pix_fmt", "rgb48be", png])
        try #require(made.status == 0, "ffmpeg: \(made.stderr)")
        let encoded = try ProcessRunner.run("/usr/bin/heif-enc", ["-b", "10", "-q", "90", "-p", "preset=ultrafast"] + source.options + ["-o", heic, png])
        try #require(encoded.status == 0, "heif-enc: \(encoded.stderr)")
        let file = try SafeFile.open(relativePath: "source.heic", in: scratch)
        try #require(try HEIFDecoder.probe(file: file, limits: .default).bitDepth == 10)

        for space in StillColourSpace.allCases {
            let reduced = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320, cancellation: nil, useEmbeddedThumbnail: false,
                                                 colourSpace: space, reduceInDecoder: true)
            let reference = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 320, cancellation: nil, useEmbeddedThumbnail: false,
                                                   colourSpace: space, reduceInDecoder: false)
            #expect(reduced.width == reference.width && reduced.height == reference.height && reduced.width == 320)
            #expect(reduced.colourSpace == reference.colourSpace && !reduced.hasAlpha)
            var largest = 0, total = 0
            for (a, b) in zip(reduced.pixels, reference.pixels) {
                let difference = abs(Int(a) - Int(b))
                largest = max(largest, difference)
                total += difference
            }
            let mean = Double(total) / Double(reduced.pixels.count)
            // Two roundings apart (the reduced samples to 10 bits, then each path to 8-bit RGB): a
            // pixel may differ by 2 (a fresh-clone run met one, on a random gradient before the
            // seed was fixed); the mean shows whether the pictures are the same.
            #expect(largest <= 2 && mean < 0.2, "\(source.name), \(space): largest difference \(largest), mean \(mean)")
        }
    }

    /// The plugin is registered on one context only: a decode without the reduction, in the same
    /// process, still goes through libde265 and gives the full picture when asked for it.
    @Test func theFullSizeIsNeverReduced() throws {
        let scratch = try CommittedFixtures.scratch("hevc-full")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let png = scratch + "/source.png", heic = scratch + "/source.heic"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "gradients=s=256x160:seed=1",
                                                             "-frames:v", "1", "-pix_fmt", "rgb48be", png])
        try #require(made.status == 0, "ffmpeg: \(made.stderr)")
        let encoded = try ProcessRunner.run("/usr/bin/heif-enc", ["-b", "10", "-p", "preset=ultrafast", "-o", heic, png])
        try #require(encoded.status == 0, "heif-enc: \(encoded.stderr)")
        let file = try SafeFile.open(relativePath: "source.heic", in: scratch)
        let full = try HEIFDecoder.decode(file: file, limits: .default, maxLongEdge: 4096)
        #expect(full.width == 256 && full.height == 160)
    }

    /// Damaged copies of a 10-bit HEIC reach the plugin (its NAL sizes, libavcodec's decode, the
    /// reduction) and decode or fail with an input code; never a crash or an internal error.
    @Test func damagedDeepHEICsSucceedOrFailWithAnInputCode() throws {
        let scratch = try CommittedFixtures.scratch("hevc-mutated")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let png = scratch + "/source.png", heic = scratch + "/source.heic"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "gradients=s=400x240:seed=1",
                                                             "-frames:v", "1", "-pix_fmt", "rgb48be", png])
        try #require(made.status == 0, "ffmpeg: \(made.stderr)")
        let encoded = try ProcessRunner.run("/usr/bin/heif-enc", ["-b", "10", "-p", "preset=ultrafast", "-o", heic, png])
        try #require(encoded.status == 0, "heif-enc: \(encoded.stderr)")
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: heic)))
        var random = SplitMix64(seed: 0x4845_5643)
        var outcomes: [String: Int] = [:]
        for round in 0..<60 {
            let name = "case-\(round).heic"
            try Data(MutatedInputTests.mutate(original, using: &random)).write(to: URL(fileURLWithPath: scratch + "/" + name))
            do {
                let file = try SafeFile.open(relativePath: name, in: scratch)
                let image = try HEIFDecoder.decode(file: file, limits: MediaLimits(timeout: .seconds(20)), maxLongEdge: 160)
                #expect(max(image.width, image.height) <= 160)
                outcomes["decoded", default: 0] += 1
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "\(name): \(error.code.rawValue): \(error.message)")
                outcomes[error.code.rawValue, default: 0] += 1
            }
        }
        #expect(outcomes["decoded", default: 0] > 0, "some damaged copies still decode: \(outcomes)")
    }
}
