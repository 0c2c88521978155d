import Foundation
@testable import MediaNestWorker
import Testing

/// `stills.json` is read by ``StillManifest``, which the fuzz build cannot reach (it lives in
/// MediaNestWorker, which `make fuzz` does not build). The `json` fuzz target covers its byte
/// parser (`JSONValue(parsing:)`); this replays what that target found through the manifest
/// reader itself, so a manifest holding such bytes is read as one (docs/FUZZING.md).
@Suite("stills.json: fuzz regressions")
struct StillManifestFuzzReplayTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzRegressions/json")

    @Test("the json target's kept inputs, as the contents of stills.json, read as an empty manifest")
    func replayThroughManifest() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(!names.isEmpty, "Tests/FuzzRegressions/json holds the inputs to replay")
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: Self.directory.appendingPathComponent(name)))
            // None of them has a thumbnail or preview entry: whatever they parse to, nothing is reused.
            #expect(StillManifest(bytes).entries.isEmpty, "\(name)")
        }
    }
}
