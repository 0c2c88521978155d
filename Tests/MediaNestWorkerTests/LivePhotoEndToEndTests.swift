import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import Testing

/// A Live Photo as an iPhone uploads it, built at test time: a JPEG whose Apple MakerNote carries
/// a ContentIdentifier, and a MOV written by ffmpeg with the same
/// `com.apple.quicktime.content.identifier`. The production worker's metadata jobs link them.
@Suite("Live Photos end to end", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct LivePhotoEndToEndTests {
    static let contentID = "5E1F6C1A-0D3B-4C62-8F35-7A9E0B2C4D61"

    /// The still as a JPEG, or as the HEIC heif-enc makes from that JPEG (it keeps the Exif).
    @Test(arguments: ["JPG", "HEIC"])
    func stillAndVideoOfOneLivePhotoAreLinked(_ stillFormat: String) async throws {
        let fixtures = try MediaFixtures.load()
        let root = try fixtures.makeScratchDirectory("live-photo")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(MediaFixtures.Name.plainJPEG)))
        let tiff = ExifBlockBuilder.tiff(ifd0: [.init(0x010F, .ascii("Apple"))],
                                         exif: [.init(0x9003, .ascii("2024:05:01 12:34:56")), ExifBlockBuilder.appleMakerNote(contentIdentifier: Self.contentID)])
        try ExifBlockBuilder.jpeg(jpeg, withExif: tiff).write(to: URL(fileURLWithPath: root + "/IMG_0001.JPG"))
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", [
            "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-metadata", "com.apple.quicktime.content.identifier=\(Self.contentID)", "-movflags", "use_metadata_tags", root + "/IMG_0001.MOV",
        ])
        try #require(made.status == 0, "\(made.stderr)")
        if stillFormat == "HEIC" {
            let encoded = try ProcessRunner.run("/usr/bin/heif-enc", ["-q", "80", "-o", root + "/IMG_0001.HEIC", root + "/IMG_0001.JPG"])
            try #require(encoded.status == 0, "\(encoded.stderr)")
        }

        try await withMigratedDatabase("live-photo") { database, connection, owner in
            func register(_ name: String, mime: String) throws -> String {
                try connection.query("""
                    INSERT INTO media_items (owner_id, filename, original_filename, mime_type, storage_path)
                    VALUES ($1::uuid, $2, $2, $3, $2) RETURNING id::text AS id
                    """, [owner, name, mime])[0].decode("id", as: String.self)
            }
            let still = try register("IMG_0001.\(stillFormat)", mime: stillFormat == "HEIC" ? "image/heic" : "image/jpeg")
            let video = try register("IMG_0001.MOV", mime: "video/quicktime")
            for item in [video, still] {
                let enqueue = try runCLI(["enqueue", item, "--types", "metadata", "--database-url", database.connectionString])
                #expect(enqueue.status == 0, "\(enqueue.error)")
            }
            let run = try runCLI(["run", "--drain", "--database-url", database.connectionString, "--storage-root", root, "--log-level", "warning"])
            #expect(run.status == 0, "worker log:\n\(run.error)")

            func metadata(_ id: String) throws -> JSONValue {
                try connection.query("SELECT metadata FROM media_items WHERE id = $1::uuid", [id])[0].decode("metadata", as: JSONValue.self)
            }
            let stillMetadata = try metadata(still), videoMetadata = try metadata(video)
            #expect(stillMetadata["kind"] == "image" && videoMetadata["kind"] == "video")
            #expect(stillMetadata["live_photo"] == ["content_id": .string(Self.contentID), "video_id": .string(video)])
            #expect(videoMetadata["live_photo"] == ["content_id": .string(Self.contentID), "still_id": .string(still), "role": "motion"])
        }
    }
}
