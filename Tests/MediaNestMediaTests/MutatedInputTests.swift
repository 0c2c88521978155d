import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Damaged copies of every corpus file go through the whole metadata extraction: each one must
/// either succeed or fail with a ``JobError`` whose code is one of the documented input codes.
/// A crash, a hang or an unclassified error fails the run. This is a small, deterministic
/// smoke test, not the fuzzing campaign of the roadmap: it catches the obvious holes (an
/// unchecked EXIF offset, a demuxer that trusts a length field) on every test run.
@Suite("damaged input never crashes the extractor", .timeLimit(.minutes(3)))
struct MutatedInputTests {
    static let sources = [
        MediaFixtures.Name.plainJPEG, MediaFixtures.Name.exifJPEG(orientation: 6), MediaFixtures.Name.pngWithExif,
        MediaFixtures.Name.png16Alpha, MediaFixtures.Name.gif, MediaFixtures.Name.webp, MediaFixtures.Name.rotatedMP4,
        MediaFixtures.Name.hevc10MKV, MediaFixtures.Name.vp9WebM, MediaFixtures.Name.taggedMP3, MediaFixtures.Name.flac,
        MediaFixtures.Name.cmykAdobeJPEG, MediaFixtures.Name.jpegXL,
    ]

    /// The codes a damaged file may end with.
    static let inputCodes: Set<JobError.Code> = [
        .corruptMedia, .unsupportedFormat, .mimeMismatch, .emptyFile, .pixelLimit, .durationLimit, .timeout,
    ]

    /// Flips bytes, overwrites a run with 0xFF (huge length fields), or cuts the file short.
    static func mutate(_ bytes: [UInt8], using random: inout SplitMix64) -> [UInt8] {
        var copy = bytes
        switch random.next() % 3 {
        case 0:
            for _ in 0..<(1 + Int(random.next() % 16)) {
                let index = Int(random.next() % UInt64(copy.count))
                copy[index] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            }
        case 1:
            let start = Int(random.next() % UInt64(copy.count))
            for index in start..<min(copy.count, start + 1 + Int(random.next() % 8)) { copy[index] = 0xFF }
        default:
            copy = Array(copy.prefix(1 + Int(random.next() % UInt64(copy.count))))
        }
        return copy
    }

    @Test(arguments: sources)
    func damagedCopiesSucceedOrFailWithAnInputCode(source: String) throws {
        let fixtures = try MediaFixtures.load()
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(source))))
        let scratch = try fixtures.makeScratchDirectory("mutated")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var random = SplitMix64(seed: source.utf8.reduce(UInt64(0)) { $0 &* 31 &+ UInt64($1) })
        var outcomes: [String: Int] = [:]
        for round in 0..<100 {
            let name = "case-\(round)-\(source)"
            try Data(MutatedInputTests.mutate(original, using: &random)).write(to: URL(fileURLWithPath: scratch + "/" + name))
            let limits = MediaLimits(timeout: .seconds(20))
            do {
                _ = try MetadataExtractor.extract(root: scratch, relativePath: name, declaredMimeType: "application/octet-stream",
                                                  limits: limits, computeChecksums: round % 8 == 0)
                outcomes["ok", default: 0] += 1
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "\(name): \(error.code): \(error.message)")
                #expect(!error.message.isEmpty && error.message.contains(name), "the message names the file: \(error.message)")
                outcomes[error.code.rawValue, default: 0] += 1
            }
        }
        #expect(outcomes.values.reduce(0, +) == 100)
    }
}

// Video stills over the same damaged copies: a representative frame, or an input code, never a crash.
extension MutatedInputTests {
    static let videoSources = [MediaFixtures.Name.rotatedMP4, MediaFixtures.Name.hevc10MKV, MediaFixtures.Name.vp9WebM, MediaFixtures.Name.anamorphicMP4]

    @Test(arguments: videoSources)
    func damagedVideosGiveAStillOrAnInputCode(source: String) throws {
        let fixtures = try MediaFixtures.load()
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(source))))
        let scratch = try fixtures.makeScratchDirectory("mutated-stills")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var random = SplitMix64(seed: source.utf8.reduce(UInt64(7)) { $0 &* 31 &+ UInt64($1) })
        var outcomes: [String: Int] = [:]
        for round in 0..<100 {
            let name = "still-\(round)-\(source)"
            try Data(MutatedInputTests.mutate(original, using: &random)).write(to: URL(fileURLWithPath: scratch + "/" + name))
            let limits = MediaLimits(timeout: .seconds(20))
            do {
                let image = try still(root: scratch, name, limits: limits, maxLongEdge: 64)
                #expect(image.width > 0 && image.width <= 64 && image.height <= 64)
                outcomes["ok", default: 0] += 1
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "\(name): \(error.code): \(error.message)")
                outcomes[error.code.rawValue, default: 0] += 1
            }
        }
        #expect(outcomes.values.reduce(0, +) == 100)
    }
}

// Cover art and trickplay over damaged copies: a result or an input code, and never a stray file.
extension MutatedInputTests {
    @Test(arguments: [MediaFixtures.Name.taggedMP3, MediaFixtures.StillsName.coverM4A, MediaFixtures.StillsName.coverFLAC])
    func damagedSongsGiveCoverArtNilOrAnInputCode(source: String) throws {
        let fixtures = try MediaFixtures.loadStills()
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(source))))
        let scratch = try fixtures.makeScratchDirectory("mutated-art")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var random = SplitMix64(seed: source.utf8.reduce(UInt64(11)) { $0 &* 31 &+ UInt64($1) })
        for round in 0..<100 {
            let name = "art-\(round).bin"
            try Data(MutatedInputTests.mutate(original, using: &random)).write(to: URL(fileURLWithPath: scratch + "/" + name))
            do {
                let file = try SafeFile.open(relativePath: name, in: scratch)
                if let image = try AudioArtwork.coverArt(file: file, limits: MediaLimits(timeout: .seconds(20)), maxLongEdge: 64) {
                    #expect(image.width <= 64 && image.height <= 64)
                }
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "\(source) round \(round): \(error.code): \(error.message)")
            }
        }
    }

    @Test func damagedVideosGiveTrickplaySheetsOrAnInputCodeAndNoTemporaryFile() throws {
        let fixtures = try MediaFixtures.loadStills()
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.StillsName.lumaRamp))))
        let scratch = try fixtures.makeScratchDirectory("mutated-trickplay")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let directory = try DerivedDirectory.open(derivedRoot: scratch + "/derived", components: ["trickplay"])
        var random = SplitMix64(seed: 0x7472_6963_6B70_6C61)
        for round in 0..<40 {
            let name = "ramp-\(round).mp4"
            try Data(MutatedInputTests.mutate(original, using: &random)).write(to: URL(fileURLWithPath: scratch + "/" + name))
            do {
                let file = try SafeFile.open(relativePath: name, in: scratch)
                let manifest = try trickplay(file, into: directory)
                #expect(manifest.sheets.count >= 1 && directory.fileNames().allSatisfy { !$0.hasSuffix(".tmp") })
            } catch {
                #expect(MutatedInputTests.inputCodes.contains(error.code), "round \(round): \(error.code): \(error.message)")
                #expect(directory.fileNames().allSatisfy { !$0.hasSuffix(".tmp") }, "round \(round) left \(directory.fileNames())")
            }
        }
    }
}
