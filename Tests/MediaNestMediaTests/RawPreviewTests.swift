import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("camera RAW through its embedded preview", .timeLimit(.minutes(2)))
struct RawPreviewTests {
    @Test func dngPreviewIsDecodedAndItsOrientationReported() throws {
        let file = try CommittedFixtures.open(CommittedFixtures.previewDNG)
        let result = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 320)
        // The 1600x1200 preview, reduced; orientation is reported, not applied.
        #expect(result.image.width == 320 && result.image.height == 240)
        #expect(result.orientation == 6)
        #expect(result.rawWidth == 1600 && result.rawHeight == 1200)
        #expect(result.camera?.contains("Fixture RAW") == true, "\(String(describing: result.camera))")
        #expect(ImageEncoderTests.close(result.image.pixel(x: 10, y: 10), Marker.red), "\(result.image.pixel(x: 10, y: 10))")
        #expect(ImageEncoderTests.close(result.image.pixel(x: 300, y: 220), Marker.grey))
    }

    @Test func previewSmallerThanTheRequestMakesTheRAWBeDeveloped() throws {
        // small-preview.dng has a 160×120 preview and a 4000×3000 sensor whose data is a 64-byte
        // token: too small a preview, so the mosaic is developed, and it is cut short.
        let file = try CommittedFixtures.open(CommittedFixtures.smallPreviewDNG)
        let error = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 1440) })
        #expect(error.code == .corruptMedia, "\(error.code): \(error.message)")
        #expect(error.message.contains(CommittedFixtures.smallPreviewDNG), "\(error.message)")
        // The same preview serves a request it covers.
        let small = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 100)
        #expect(small.image.width == 100 && small.image.height == 75 && small.orientation == 1 && !small.developed)
    }

    @Test func anotherFormatFailsAsUnsupportedNamingIt() throws {
        let scratch = try CommittedFixtures.scratch("raw-other")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let text = try CommittedFixtures.write(Array("just some notes, not a photo\n".utf8), named: "notes.cr2", in: scratch)
        let error = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: text, limits: .default, maxLongEdge: 320) })
        #expect(error.code == .unsupportedFormat)
        #expect(error.message.contains("notes.cr2") && error.message.contains("text/plain"), "\(error.message)")

        let heic = try CommittedFixtures.open(CommittedFixtures.gridHEIC)
        let heicError = try #require(jobError { () throws(JobError) in _ = try RawPreview.decode(file: heic, limits: .default, maxLongEdge: 320) })
        #expect(heicError.code == .unsupportedFormat && heicError.message.contains("image/heic"), "\(heicError.message)")
    }

    @Test func rawFilesAreToldApartFromPlainTIFF() throws {
        for name in [CommittedFixtures.previewDNG, CommittedFixtures.smallPreviewDNG] {
            let header = try CommittedFixtures.bytes(name)
            let mime = try MimeSniffer.sniff(header)
            #expect(mime == "image/tiff", "libmagic sees a DNG as TIFF, which is why the IFD is checked")
            #expect(RawPreview.recognizes(header, sniffedMime: mime), "\(name)")
        }
        let scratch = try CommittedFixtures.scratch("raw-tiff")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // A scanner-style TIFF (ffmpeg's encoder: one IFD, RGB, no SubIFDs, no DNGVersion).
        let plain = scratch + "/plain.tiff"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", plain])
        #expect(made.status == 0, "\(made.stderr)")
        let header = try [UInt8](Data(contentsOf: URL(fileURLWithPath: plain)))
        #expect(try MimeSniffer.sniff(header) == "image/tiff")
        #expect(!RawPreview.recognizes(header, sniffedMime: "image/tiff"))
        #expect(RawPreview.recognizes(Array("not really".utf8), sniffedMime: "image/x-canon-cr2"))
        #expect(!RawPreview.recognizes(try CommittedFixtures.bytes(CommittedFixtures.gridHEIC), sniffedMime: "image/heic"))
    }

    /// dcraw turns EXIF orientation o into flip "50132467"[o & 7]; the mapping back must invert it.
    @Test func flipMapsBackToEveryExifOrientation() {
        let dcraw = Array("50132467".utf8).map { Int32($0 - UInt8(ascii: "0")) }
        for orientation in 1...8 {
            #expect(RawPreview.exifOrientation(fromFlip: dcraw[orientation & 7]) == orientation)
        }
    }

    @Test func truncatedAndDamagedDNGFailCleanly() throws {
        let original = try CommittedFixtures.bytes(CommittedFixtures.previewDNG)
        let scratch = try CommittedFixtures.scratch("raw-damaged")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        for length in [8, 64, 300, original.count / 2, original.count - 10] {
            let name = "cut-\(length).dng"
            let file = try CommittedFixtures.write(Array(original.prefix(length)), named: name, in: scratch)
            do {
                let result = try RawPreview.decode(file: file, limits: .default, maxLongEdge: 320)
                #expect(result.image.width <= 320)  // a partial JPEG may still decode
            } catch {
                #expect([.unsupportedFormat, .corruptMedia].contains(error.code), "\(name): \(error.code): \(error.message)")
            }
        }
    }
}
