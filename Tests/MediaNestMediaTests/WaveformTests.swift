import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("audio waveform thumbnails", .timeLimit(.minutes(3)))
struct WaveformTests {
    /// Encodes a lavfi audio source to FLAC in `directory` with the ffmpeg CLI (a fixture generator).
    static func flac(_ name: String, in directory: String, source: String, filter: String? = nil) throws -> SafeFile {
        var arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", source]
        if let filter { arguments += ["-af", filter] }
        arguments += ["-c:a", "flac", directory + "/" + name]
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", arguments)
        #expect(result.status == 0, "\(result.stderr)")
        return try SafeFile.open(relativePath: name, in: directory)
    }

    /// Per column, how many pixels are clearly drawn.
    static func barHeights(_ image: RGBAImage) -> [Int] {
        (0..<image.width).map { x in (0..<image.height).filter { image.pixel(x: x, y: $0).a >= 64 }.count }
    }

    static func mean(_ values: ArraySlice<Int>) -> Double { Double(values.reduce(0, +)) / Double(max(1, values.count)) }

    @Test func loudHalfDrawsTallerBarsThanQuietHalf() throws {
        let scratch = try CommittedFixtures.scratch("waveform")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let file = try Self.flac("loud-quiet.flac", in: scratch, source: "sine=frequency=440:sample_rate=44100:duration=4",
                                 filter: "volume='if(lt(t,2),0.9,0.09)':eval=frame")
        let image = try Waveform.render(file: file, limits: .default, width: 200, height: 80, cancellation: nil)
        #expect(image.width == 200 && image.height == 80 && image.hasAlpha)
        let heights = Self.barHeights(image)
        let loud = Self.mean(heights[10..<90]), quiet = Self.mean(heights[110..<190])
        // lavfi's sine peaks at 1/8 full scale: 0.1125 loud, 0.01125 quiet. Quiet files are
        // amplified at most 4x, so the loud half reaches 0.45 of the half-height (36 of 80 px).
        #expect(loud > 30 && quiet < loud / 4, "loud \(loud), quiet \(quiet)")
        // Symmetric about the centre line, transparent at the edges above a quiet column.
        #expect(image.pixel(x: 150, y: 2).a == 0 && image.pixel(x: 150, y: 40).a > 0)
    }

    @Test func silenceIsAFlatLine() throws {
        let scratch = try CommittedFixtures.scratch("waveform-silence")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let file = try Self.flac("silence.flac", in: scratch, source: "anullsrc=r=44100:cl=stereo", filter: "atrim=duration=3")
        let image = try Waveform.render(file: file, limits: .default, width: 120, height: 60, cancellation: nil)
        let heights = Self.barHeights(image)
        #expect(heights.allSatisfy { $0 >= 1 && $0 <= 2 }, "\(Set(heights))")
        #expect((0..<120).allSatisfy { image.pixel(x: $0, y: 10).a == 0 && image.pixel(x: $0, y: 50).a == 0 })
    }

    /// Files over ``Waveform/fullDecodeLimit`` are sampled with one seek per column; the shape must
    /// still follow the audio.
    @Test func longFileIsSampledAndKeepsItsShape() throws {
        let scratch = try CommittedFixtures.scratch("waveform-long")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let file = try Self.flac("long.flac", in: scratch, source: "sine=frequency=300:sample_rate=8000:duration=700",
                                 filter: "volume='if(lt(t,350),0.09,0.9)':eval=frame")
        let image = try Waveform.render(file: file, limits: .default, width: 100, height: 50, cancellation: nil)
        let heights = Self.barHeights(image)
        let quiet = Self.mean(heights[5..<45]), loud = Self.mean(heights[55..<95])
        #expect(loud > 18 && quiet < loud / 4, "quiet \(quiet), loud \(loud)")
    }

    @Test func garbageAndSilentVideoFailWithAJobError() throws {
        let scratch = try CommittedFixtures.scratch("waveform-bad")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var random = SplitMix64(seed: 7)
        let garbage = try CommittedFixtures.write((0..<20_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }, named: "noise.flac", in: scratch)
        let error = try #require(jobError { () throws(JobError) in _ = try Waveform.render(file: garbage, limits: .default, width: 100, height: 40, cancellation: nil) })
        #expect(error.code == .unsupportedFormat || error.code == .corruptMedia, "\(error.code): \(error.message)")
        #expect(error.message.contains("noise.flac"))

        let fixtures = try MediaFixtures.load()
        let video = try SafeFile.open(relativePath: MediaFixtures.Name.hevc10MKV, in: fixtures.root)
        let videoError = try #require(jobError { () throws(JobError) in _ = try Waveform.render(file: video, limits: .default, width: 100, height: 40, cancellation: nil) })
        #expect(videoError.code == .unsupportedFormat && videoError.message.contains("no audio stream"), "\(videoError.message)")
    }

    @Test func cancellationStopsTheRender() throws {
        let fixtures = try MediaFixtures.load()
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.flac, in: fixtures.root)
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        let error = try #require(jobError { () throws(JobError) in _ = try Waveform.render(file: file, limits: .default, width: 50, height: 20, cancellation: cancellation) })
        #expect(error.code == .cancelled)
    }
}
