import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Damaged copies of the HEIF, AVIF and DNG fixtures (plus the HEIC bomb) go through libheif
/// (decode and metadata job), libraw, and the waveform's audio path: each one must succeed or
/// fail with a documented input code, never crash or hang. The same mutations as
/// ``MutatedInputTests``, seeded per file so a failure names a reproducible case.
@Suite("damaged input never crashes the new decoders", .timeLimit(.minutes(5)))
struct NewDecoderMutationTests {
    static let inputCodes = MutatedInputTests.inputCodes

    enum Decoder: String, CaseIterable, Sendable {
        case heif, raw, metadata, waveform
    }

    static let sources: [String] = [
        CommittedFixtures.gridHEIC, CommittedFixtures.rotatedAVIF, CommittedFixtures.bombHEIC, CommittedFixtures.previewDNG,
    ]

    @Test(arguments: sources)
    func damagedCopiesSucceedOrFailWithAnInputCode(source: String) throws {
        let original = try CommittedFixtures.bytes(source)
        let scratch = try CommittedFixtures.scratch("mutated-new")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var random = SplitMix64(seed: source.utf8.reduce(UInt64(0)) { $0 &* 31 &+ UInt64($1) })
        let limits = MediaLimits(timeout: .seconds(20))
        var outcomes: [String: Int] = [:]
        let rounds = 60
        for round in 0..<rounds {
            let name = "case-\(round)-" + (source as NSString).lastPathComponent
            let mutated = MutatedInputTests.mutate(original, using: &random)
            try Data(mutated).write(to: URL(fileURLWithPath: scratch + "/" + name))
            // Each copy goes through every decoder that could meet it in production.
            for decoder in Decoder.allCases {
                do {
                    let file = try SafeFile.open(relativePath: name, in: scratch, limits: limits)
                    switch decoder {
                    case .heif:
                        let image = try HEIFDecoder.decode(file: file, limits: limits, maxLongEdge: 160)
                        #expect(max(image.width, image.height) <= 160)
                    case .raw:
                        _ = try RawPreview.decode(file: file, limits: limits, maxLongEdge: 160)
                    case .metadata:
                        _ = try MetadataExtractor.extract(root: scratch, relativePath: name, declaredMimeType: "image/heic",
                                                          limits: limits, computeChecksums: false)
                    case .waveform:
                        _ = try Waveform.render(file: file, limits: limits, width: 64, height: 32, cancellation: nil)
                    }
                    outcomes["\(decoder) ok", default: 0] += 1
                } catch {
                    #expect(Self.inputCodes.contains(error.code), "\(decoder) \(name): \(error.code): \(error.message)")
                    #expect(!error.message.isEmpty && error.message.contains(name), "\(decoder): the message names the file: \(error.message)")
                    outcomes["\(decoder) \(error.code.rawValue)", default: 0] += 1
                }
            }
        }
        #expect(outcomes.values.reduce(0, +) == rounds * Decoder.allCases.count)
    }
}
