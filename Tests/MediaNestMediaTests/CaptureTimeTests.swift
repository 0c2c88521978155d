import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Issue 17 item 8: `metadata.taken_at` in Immich's order, with the offset kept, and
/// `metadata.taken_at_source` naming the tag. Each case is a real JPEG (the corpus's plain one)
/// with an EXIF block built for it.
@Suite("capture time")
struct CaptureTimeTests {
    typealias Tag = ExifBlockBuilder.Tag
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    /// GPSDateStamp 2022:12:31, GPSTimeStamp 23:59:30.5 (UTC).
    static let gpsTags = [Tag(0x07, .rationals([(23, 1), (59, 1), (61, 2)])), Tag(0x1D, .ascii("2022:12:31"))]

    private func takenAt(exif: [Tag], gps: [Tag] = [], ifd0: [Tag] = []) throws -> (value: JSONValue?, source: JSONValue?) {
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG)))
        let root = try fixtures.makeScratchDirectory("capture-time")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let tiff = ExifBlockBuilder.tiff(ifd0: ifd0 + [Tag(0x010F, .ascii("Phone"))], exif: exif, gps: gps)
        try ExifBlockBuilder.jpeg(jpeg, withExif: tiff).write(to: URL(fileURLWithPath: root + "/photo.jpg"))
        let result = try MetadataExtractor.extract(root: root, relativePath: "photo.jpg", declaredMimeType: "image/jpeg", computeChecksums: false)
        #expect(result.kind == .image && result.exif?.make == "Phone", "the EXIF block was read")
        return (result.summary["taken_at"], result.summary["taken_at_source"])
    }

    @Test func dateTimeOriginalWithSubSecondsAndOffset() throws {
        let taken = try takenAt(exif: [Tag(0x9003, .ascii("2024:05:01 12:34:56")), Tag(0x9291, .ascii("120")),
                                       Tag(0x9011, .ascii("-05:00")),
                                       Tag(0x9004, .ascii("2020:01:01 00:00:00"))], gps: Self.gpsTags)
        #expect(taken.value == "2024-05-01T12:34:56.120-05:00")
        #expect(taken.source == "DateTimeOriginal")
    }

    @Test func offsetTimeStandsInForAMissingOffsetTimeOriginal() throws {
        let taken = try takenAt(exif: [Tag(0x9003, .ascii("2024:05:01 12:34:56")), Tag(0x9010, .ascii("+09:00"))])
        #expect(taken.value == "2024-05-01T12:34:56+09:00")
    }

    @Test func withoutAnOffsetTheTimeHasNoZone() throws {
        let taken = try takenAt(exif: [Tag(0x9003, .ascii("2024:05:01 12:34:56"))])
        #expect(taken.value == "2024-05-01T12:34:56")
        #expect(taken.source == "DateTimeOriginal")
    }

    /// No DateTimeOriginal: CreateDate (DateTimeDigitized) with its own sub-seconds and offset,
    /// before the GPS time.
    @Test func createDateIsTheFallback() throws {
        let taken = try takenAt(exif: [Tag(0x9004, .ascii("2023:01:02 03:04:05")), Tag(0x9292, .ascii("5")),
                                       Tag(0x9012, .ascii("+01:00"))], gps: Self.gpsTags)
        #expect(taken.value == "2023-01-02T03:04:05.5+01:00")
        #expect(taken.source == "DateTimeDigitized")
    }

    /// Only the GPS date and time: UTC.
    @Test func gpsOnlyPhotoIsDatedInUTC() throws {
        let taken = try takenAt(exif: [Tag(0x9011, .ascii("+02:00"))], gps: Self.gpsTags)
        #expect(taken.value == "2022-12-31T23:59:30.500Z")
        #expect(taken.source == "GPSDateStamp+GPSTimeStamp")
    }

    /// A blank DateTimeOriginal (cameras write spaces or zeros when the clock was never set)
    /// does not hide the GPS time; a file with no time at all has no `taken_at`.
    @Test func blankDatesAreIgnored() throws {
        let blank = try takenAt(exif: [Tag(0x9003, .ascii("    :  :     :  :  ")), Tag(0x9004, .ascii("0000:00:00 00:00:00"))], gps: Self.gpsTags)
        #expect(blank.value == "2022-12-31T23:59:30.500Z")
        let none = try takenAt(exif: [Tag(0x9003, .ascii("    :  :     :  :  "))])
        #expect(none.value == nil && none.source == nil)
    }

    /// A QuickTime clip with `com.apple.quicktime.creationdate` (local time and zone, as iPhones
    /// write it) and `creation_time` (UTC): the Apple date wins, its offset made ISO 8601.
    @Test func quickTimeCreationDateKeepsItsZone() throws {
        let root = try fixtures.makeScratchDirectory("quicktime-date")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", [
            "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-metadata", "com.apple.quicktime.creationdate=2024-05-01T12:34:56+0200", "-metadata", "creation_time=2024-05-01T10:34:56Z",
            "-movflags", "use_metadata_tags", root + "/clip.mov",
        ])
        try #require(made.status == 0, "\(made.stderr)")
        let result = try MetadataExtractor.extract(root: root, relativePath: "clip.mov", declaredMimeType: "video/quicktime", computeChecksums: false)
        #expect(result.kind == .video)
        #expect(result.summary["taken_at"] == "2024-05-01T12:34:56+02:00")
        #expect(result.summary["taken_at_source"] == "com.apple.quicktime.creationdate")
    }
}
