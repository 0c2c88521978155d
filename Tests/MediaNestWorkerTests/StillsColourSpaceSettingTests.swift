import ArgumentParser
import Foundation
import MediaNestMedia
import MediaNestWorker
import Testing

/// `stills.colorspace`: sRGB by default, `p3` from the file or the flag, anything else refused
/// naming the key. No database needed.
@Suite("stills.colorspace setting")
struct StillsColourSpaceSettingTests {
    private func file(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-colour-\(UUID().uuidString.prefix(8)).yaml").path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func load(_ arguments: [String]) async throws -> WorkerConfiguration {
        try await WorkerConfigurationLoader.load(options: WorkerOptions.parse(arguments), environment: [:]).configuration
    }

    @Test func srgbByDefaultP3FromTheFileOrTheFlag() async throws {
        #expect(try await load([]).stills.colourSpace == .srgb)
        let p3 = try file("stills:\n  colorspace: p3\n")
        #expect(try await load(["--config", p3]).stills.colourSpace == .p3)
        #expect(try await load(["--stills-colorspace", "P3"]).stills.colourSpace == .p3)
        #expect(try await load(["--config", p3, "--stills-colorspace", "srgb"]).stills.colourSpace == .srgb)
    }

    @Test func anUnknownColourSpaceIsRefusedNamingTheKey() async throws {
        let path = try file("stills:\n  colorspace: adobe\n")
        do {
            _ = try await load(["--config", path])
            Issue.record("stills.colorspace: adobe was accepted")
        } catch let error as WorkerConfigurationError {
            #expect(error.message.contains("stills.colorspace in \(path) must be srgb or p3"), "\(error.message)")
        }
    }
}
