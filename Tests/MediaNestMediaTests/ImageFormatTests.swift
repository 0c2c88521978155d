import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("Images open with the demuxer of the type libmagic found")
struct ImageFormatTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    /// JPEGs whose first marker is not JFIF APP0, with their real size.
    static let jpegsWithoutJFIFFirst: [(String, Int, Int)] = [
        (Name.cmykAdobeJPEG, 700, 500), (Name.cmykBareJPEG, 700, 500), (Name.cmykExifFirstJPEG, 700, 500),
        (Name.adobeFirstJPEG, 64, 32), (Name.noAPP0JPEG, 64, 32), (Name.exifFirstJPEG, 64, 32),
    ]

    @Test(arguments: jpegsWithoutJFIFFirst)
    func jpegWhoseFirstMarkerIsNotJFIFIsProbedAsAnImage(name: String, width: Int, height: Int) throws {
        let result = try extract(fixtures, name, declared: "image/jpeg")
        #expect(result.probe.formatName == "jpeg_pipe")
        #expect(result.kind == .image)
        #expect(result.width == width)
        #expect(result.height == height)
        #expect(result.mimeSniffed == "image/jpeg")
        #expect(result.summary["container"] == "jpeg")
        #expect(result.summary["video_codec"] == "mjpeg")
    }

    /// Keeps the test above honest: if FFmpeg's probe ever gets these right by itself, the
    /// fixtures no longer exercise the demuxer choice and need replacing.
    @Test(arguments: [Name.cmykAdobeJPEG, Name.cmykBareJPEG])
    func ffmpegsContentProbeAloneCallsTheCMYKJPEGRawAMR(name: String) throws {
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        #expect(try MediaInput.contentProbe(file) == "amrnb")
    }

    @Test func imageFormatAvailabilityMatchesThisFFmpegBuild() throws {
        let decoders = try ProcessRunner.run("/usr/bin/env", ["ffmpeg", "-hide_banner", "-decoders"]).stdout
        let codecs = Set(decoders.split(separator: "\n").compactMap { line -> String? in
            // " V....D libjxl   libjxl JPEG XL (codec jpegxl)": the codec is named when it differs.
            if let range = line.range(of: "(codec ") { return String(line[range.upperBound...].prefix { $0 != ")" }) }
            let fields = line.split(separator: " ")
            return fields.count >= 2 ? String(fields[1]) : nil
        })
        for format in MediaInput.imageFormats {
            let available = MediaInput.availableImageFormats.contains(format)
            #expect(available == codecs.contains(format.codec), "\(format.displayName): \(format.codec)")
            #expect(MediaInput.allowedDemuxers.contains(format.demuxer) == available)
        }
        #expect(MediaInput.imageDemuxers.contains("jpegxl_pipe"))
    }

    @Test func jpegXLIsAnImageWhenThisFFmpegDecodesIt() throws {
        let canDecode = MediaInput.availableImageFormats.contains { $0.demuxer == "jpegxl_pipe" }
        if canDecode {
            let result = try extract(fixtures, Name.jpegXL, declared: "image/jxl")
            #expect(result.probe.formatName == "jpegxl_pipe")
            #expect(result.kind == .image)
            #expect(result.mimeSniffed == "image/jxl")
            #expect(result.mimeDeclaredMatches)
            #expect(result.width == 48)
            #expect(result.height == 24)
            #expect(result.summary["container"] == "jpegxl")
        } else {
            let error = jobError { () throws(JobError) in _ = try extract(fixtures, Name.jpegXL, declared: "image/jxl") }
            #expect(error?.code == .unsupportedFormat)
            #expect(error?.message.contains("JPEG XL") == true)
        }
    }

    @Test func anImageFormatThisFFmpegCannotReadFailsAsUnsupportedNamingIt() throws {
        let error = jobError { () throws(JobError) in
            _ = try MediaInput.imageFormat(forSniffed: "image/jxl", available: [], relativePath: "photos/cat.jxl")
        }
        #expect(error?.code == .unsupportedFormat)
        #expect(error?.isRetryable == false)
        #expect(error?.message.contains("JPEG XL") == true)
        #expect(error?.message.contains("photos/cat.jxl") == true)
        #expect(try MediaInput.imageFormat(forSniffed: "image/jxl", available: MediaInput.imageFormats, relativePath: "x")?.demuxer == "jpegxl_pipe")
        #expect(try MediaInput.imageFormat(forSniffed: "video/mp4", available: [], relativePath: "x") == nil)
    }

    @Test func anImageDemuxerThatFindsNoImageFallsBackToTheContentProbe() throws {
        // libmagic would not say PNG here; the type is forced to reach the fallback.
        let file = try SafeFile.open(relativePath: Name.plainMP4, in: fixtures.root)
        let input = try MediaInput.open(file, sniffedMimeType: "image/png")
        #expect(input.formatName == "mov,mp4,m4a,3gp,3g2,mj2")
        #expect(input.probe().primaryVideo?.width == 64)
    }

    @Test func whenTheContentProbeFindsNothingEitherTheImageDemuxersErrorIsReported() throws {
        let file = try SafeFile.open(relativePath: Name.randomBytes, in: fixtures.root)
        let error = jobError { () throws(JobError) in _ = try MediaInput.open(file, sniffedMimeType: "image/jpeg") }
        #expect(error?.code == .corruptMedia)
        #expect(error?.message.contains("JPEG") == true, "\(error?.message ?? "")")
    }
}
