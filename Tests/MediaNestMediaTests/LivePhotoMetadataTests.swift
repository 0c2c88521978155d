import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Issue 17 item 3, the metadata half: `metadata.live_photo.content_id` from the still's Apple
/// MakerNote (JPEG, and HEIC made from it by heif-enc, which keeps the Exif) and from the MOV's
/// QuickTime key; damaged MakerNotes give nothing and never crash the parser.
@Suite("Live Photo identifiers")
struct LivePhotoMetadataTests {
    typealias Tag = ExifBlockBuilder.Tag
    static let contentID = "0B9A6F3E-77C2-4F1D-A1E4-3C5D6E7F8091"
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    private func stillJPEG(makerNote: Tag, in root: String) throws {
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG)))
        let tiff = ExifBlockBuilder.tiff(ifd0: [Tag(0x010F, .ascii("Apple"))], exif: [Tag(0x9003, .ascii("2024:05:01 12:34:56")), makerNote])
        try ExifBlockBuilder.jpeg(jpeg, withExif: tiff).write(to: URL(fileURLWithPath: root + "/IMG_0001.JPG"))
    }

    @Test func stillJPEGAndHEICCarryTheMakerNoteIdentifier() throws {
        let root = try fixtures.makeScratchDirectory("live-still")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try stillJPEG(makerNote: ExifBlockBuilder.appleMakerNote(contentIdentifier: Self.contentID), in: root)
        let jpeg = try MetadataExtractor.extract(root: root, relativePath: "IMG_0001.JPG", declaredMimeType: "image/jpeg", computeChecksums: false)
        #expect(jpeg.summary["live_photo"] == ["content_id": .string(Self.contentID)])
        #expect(jpeg.fullProbe["exif"]?["apple_content_identifier"] == .string(Self.contentID))

        let encoded = try ProcessRunner.run("/usr/bin/heif-enc", ["-q", "80", "-o", root + "/IMG_0001.HEIC", root + "/IMG_0001.JPG"])
        try #require(encoded.status == 0, "\(encoded.stderr)")
        let heic = try MetadataExtractor.extract(root: root, relativePath: "IMG_0001.HEIC", declaredMimeType: "image/heic", computeChecksums: false)
        #expect(heic.summary["container"] == "heif")
        #expect(heic.summary["live_photo"] == ["content_id": .string(Self.contentID)])
    }

    @Test func motionMOVCarriesTheQuickTimeIdentifier() throws {
        let root = try fixtures.makeScratchDirectory("live-motion")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", [
            "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-metadata", "com.apple.quicktime.content.identifier=\(Self.contentID)", "-movflags", "use_metadata_tags", root + "/IMG_0001.MOV",
        ])
        try #require(made.status == 0, "\(made.stderr)")
        let result = try MetadataExtractor.extract(root: root, relativePath: "IMG_0001.MOV", declaredMimeType: "video/quicktime", computeChecksums: false)
        #expect(result.kind == .video)
        #expect(result.summary["live_photo"] == ["content_id": .string(Self.contentID)])
    }

    /// Another maker's note, a truncated Apple one, one whose IFD points outside it, and an
    /// absurdly long identifier: no identifier, the rest of the EXIF still read.
    @Test(arguments: ["other", "truncated", "outside", "long"])
    func damagedOrForeignMakerNotesGiveNoIdentifier(_ variant: String) throws {
        let root = try fixtures.makeScratchDirectory("live-damaged")
        defer { try? FileManager.default.removeItem(atPath: root) }
        guard case .undefined(let good) = ExifBlockBuilder.appleMakerNote(contentIdentifier: Self.contentID).value else {
            Issue.record("the builder's MakerNote is UNDEFINED bytes")
            return
        }
        var bytes = good
        switch variant {
        case "other": bytes.replaceSubrange(0..<5, with: Array("Nikon".utf8))
        case "truncated": bytes = Array(bytes.prefix(20))
        case "outside":
            // The ContentIdentifier entry's value offset (after count, type and tag) points far away.
            bytes.replaceSubrange(24..<28, with: [0x7F, 0xFF, 0xFF, 0x00])
        default:
            guard case .undefined(let long) = ExifBlockBuilder.appleMakerNote(contentIdentifier: String(repeating: "A", count: 300)).value else { return }
            bytes = long
        }
        try stillJPEG(makerNote: Tag(0x927C, .undefined(bytes)), in: root)
        let result = try MetadataExtractor.extract(root: root, relativePath: "IMG_0001.JPG", declaredMimeType: "image/jpeg", computeChecksums: false)
        #expect(result.summary["live_photo"] == nil)
        #expect(result.summary["taken_at"] == "2024-05-01T12:34:56", "the rest of the EXIF is read")
    }
}
