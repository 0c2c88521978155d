import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("Probe reports containers, streams, rotation and tags without decoding")
struct ProbeTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    func probe(_ name: String) throws -> MediaProbe {
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        return try MediaInput.open(file).probe()
    }

    @Test func plainMP4HasH264AndStereoAACAndLocation() throws {
        let result = try extract(fixtures, Name.plainMP4)
        #expect(result.kind == .video)
        #expect(result.summary["container"] == "mp4")
        #expect(result.summary["video_codec"] == "h264")
        #expect(result.summary["audio_codec"] == "aac")
        #expect(result.summary["rotation"] == 0)
        #expect(result.width == 64 && result.height == 32)
        #expect(result.summary["frame_rate"] == .double(25))
        #expect(result.summary["audio"]?["channels"] == 2)
        #expect(result.summary["audio"]?["sample_rate"] == 44100)
        #expect(result.summary["audio"]?["layout"] == "stereo")
        #expect(result.summary["tags"]?["title"] == "Fixture Clip")
        let duration = try #require(result.duration)
        #expect(abs(duration - 1) < 0.1)
        let lat = try #require(result.summary["gps"]?["lat"]?.doubleValue)
        let lon = try #require(result.summary["gps"]?["lon"]?.doubleValue)
        #expect(abs(lat - 48.8584) < 1e-6 && abs(lon - 2.2945) < 1e-6)
        #expect(result.probe.primaryVideo?.profile != nil)
    }

    @Test func rotatedMP4SwapsDisplaySize() throws {
        let result = try extract(fixtures, Name.rotatedMP4)
        let video = try #require(result.probe.primaryVideo)
        #expect(video.width == 64 && video.height == 32)
        #expect(video.rotation == 90)
        #expect(video.displayWidth == 32 && video.displayHeight == 64)
        #expect(result.summary["rotation"] == 90)
        #expect(result.summary["width"] == 32)
        #expect(result.summary["height"] == 64)
    }

    @Test func hevcMain10MKVIsTenBitHDR() throws {
        let result = try extract(fixtures, Name.hevc10MKV)
        let video = try #require(result.probe.primaryVideo)
        #expect(result.summary["container"] == "matroska")
        #expect(video.codecName == "hevc")
        #expect(video.profile == "Main 10")
        #expect(video.pixelFormat == "yuv420p10le")
        #expect(video.bitDepth == 10)
        #expect(video.colorTransfer == "smpte2084")
        #expect(video.colorPrimaries == "bt2020")
        #expect(video.isHDR)
        #expect(result.summary["bit_depth"] == 10)
        #expect(result.summary["hdr"] == true)
    }

    @Test func anamorphicVideoDisplaysWiderThanStored() throws {
        let result = try extract(fixtures, Name.anamorphicMP4)
        let video = try #require(result.probe.primaryVideo)
        #expect(video.sampleAspectRatio == "2:1")
        #expect(video.width == 64 && video.displayWidth == 128 && video.displayHeight == 32)
        #expect(result.width == 128 && result.height == 32)
    }

    @Test func chaptersAreListedWithTitles() throws {
        let probe = try probe(Name.hevc10MKV)
        #expect(probe.chapters.map(\.title) == ["Opening", "Finale"])
        #expect(abs((probe.chapters.first?.end ?? 0) - 0.4) < 0.001)
        #expect(abs((probe.chapters.last?.start ?? 0) - 0.4) < 0.001)
        #expect(try extract(fixtures, Name.hevc10MKV).fullProbe["chapters"]?.arrayValue?.count == 2)
    }

    @Test func vp9OpusWebM() throws {
        let result = try extract(fixtures, Name.vp9WebM)
        #expect(result.summary["container"] == "webm")
        #expect(result.summary["video_codec"] == "vp9")
        #expect(result.summary["audio_codec"] == "opus")
        #expect(result.summary["audio"]?["sample_rate"] == 48000)
        #expect(result.summary["audio"]?["channels"] == 2)
        #expect(result.summary["hdr"] == false)
    }

    @Test func mp3WithCoverArtAndID3Tags() throws {
        let result = try extract(fixtures, Name.taggedMP3)
        #expect(result.kind == .audio)
        #expect(result.mimeSniffed == "audio/mpeg")
        #expect(result.summary["audio_codec"] == "mp3")
        #expect(result.summary["video_codec"] == nil)
        #expect(result.summary["cover_art"] == true)
        #expect(result.summary["tags"]?["title"] == "Fixture Song")
        #expect(result.summary["tags"]?["artist"] == "Fixture Band")
        #expect(result.summary["tags"]?["album"] == "Fixture Album")
        let cover = try #require(result.probe.streams.first { $0.isAttachedPicture })
        #expect(cover.kind == .video && cover.codecName == "png")
        #expect(result.width == nil)
    }

    @Test func flacIsStereo48k() throws {
        let result = try extract(fixtures, Name.flac)
        #expect(result.kind == .audio)
        #expect(result.summary["container"] == "flac")
        #expect(result.summary["audio"] == ["channels": 2, "sample_rate": 48000, "layout": "stereo"])
    }

    @Test(arguments: [
        (Name.png8, "png", 48, 24, 8, "rgb24"),
        (Name.png16Alpha, "png", 40, 20, 16, "rgba64be"),
        (Name.gif, "gif", 32, 16, 8, "bgra"),
        (Name.webp, "webp", 50, 30, 8, nil),
        (Name.plainJPEG, "jpeg", 64, 32, 8, nil),
    ] as [(String, String, Int, Int, Int, String?)])
    func imagesReportSizeAndDepth(name: String, container: String, width: Int, height: Int, depth: Int, pixelFormat: String?) throws {
        let result = try extract(fixtures, name)
        #expect(result.kind == .image)
        #expect(result.summary["container"] == .string(container))
        #expect(result.width == width && result.height == height)
        #expect(result.summary["bit_depth"] == .int(Int64(depth)))
        #expect(result.summary["duration"] == nil)
        if let pixelFormat { #expect(result.probe.primaryVideo?.pixelFormat == pixelFormat) }
    }

    @Test func fullProbeJSONHasFormatAndStreams() throws {
        let result = try extract(fixtures, Name.rotatedMP4)
        #expect(result.fullProbe["format"]?["name"] == "mov,mp4,m4a,3gp,3g2,mj2")
        let streams = try #require(result.fullProbe["streams"]?.arrayValue)
        #expect(streams.count == 2)
        #expect(streams[0]["type"] == "video" && streams[0]["rotation"] == 90 && streams[0]["display_width"] == 32)
        #expect(streams[1]["type"] == "audio" && streams[1]["channel_layout"] == "stereo")
        #expect(try JSONValue(parsing: result.fullProbe.jsonText).jsonText == result.fullProbe.jsonText)
    }

    @Test func probingAloneNeedsNoMetadataJob() throws {
        let probe = try probe(Name.hevc10MKV)
        #expect(probe.formatName == "matroska,webm")
        #expect(probe.streams.count == 1)
    }
}
