import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// Motion photos built at test time: a JPEG (or the committed HEIC) with Samsung's or Google's
/// markers and a small MP4 made by the ffmpeg CLI appended.
enum MotionPhotoFixtures {
    /// A 64×48, 0.5 s H.264 MP4 (moov at the end, as ffmpeg writes it by default).
    static func mp4(in scratch: String) throws -> [UInt8] {
        let path = scratch + "/clip.mp4"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5",
                                                             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path])
        guard made.status == 0 else { throw JobError(.internalError, "ffmpeg: \(made.stderr)") }
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// A 64×48 JPEG still.
    static func still() throws -> [UInt8] {
        try ImageEncoder.encode(RGBAImage(width: 64, height: 48, fill: (200, 120, 40, 255)), as: .jpeg, quality: 90)
    }

    /// `jpeg` with an XMP APP1 segment right after SOI.
    static func withXMP(_ jpeg: [UInt8], _ xmp: String) -> [UInt8] {
        let body = Array("http://ns.adobe.com/xap/1.0/\0".utf8) + Array(xmp.utf8)
        let length = body.count + 2
        return [0xFF, 0xD8, 0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + body + jpeg.dropFirst(2)
    }

    static func googleContainerXMP(videoLength: Int) -> String {
        """
        <x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\
        <rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" \
        xmlns:Container="http://ns.google.com/photos/1.0/container/" xmlns:Item="http://ns.google.com/photos/1.0/container/item/" \
        GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" GCamera:MotionPhotoPresentationTimestampUs="250000">\
        <Container:Directory><rdf:Seq>\
        <rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary" Item:Length="0" Item:Padding="0"/></rdf:li>\
        <rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length="\(videoLength)" Item:Padding="0"/></rdf:li>\
        </rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>
        """
    }

    static func microVideoXMP(offset: Int) -> String {
        """
        <x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\
        <rdf:Description rdf:about="" xmlns:GCamera="http://ns.google.com/photos/1.0/camera/">\
        <GCamera:MicroVideo>1</GCamera:MicroVideo><GCamera:MicroVideoVersion>1</GCamera:MicroVideoVersion>\
        <GCamera:MicroVideoOffset>\(offset)</GCamera:MicroVideoOffset></rdf:Description></rdf:RDF></x:xmpmeta>
        """
    }

    /// Google Motion Photo 1.0: XMP container directory, the MP4 appended.
    static func google(_ jpeg: [UInt8], _ mp4: [UInt8], declaredLength: Int? = nil) -> [UInt8] {
        withXMP(jpeg, googleContainerXMP(videoLength: declaredLength ?? mp4.count)) + mp4
    }

    /// Google MicroVideo: the offset from the end, the MP4 appended.
    static func microVideo(_ jpeg: [UInt8], _ mp4: [UInt8]) -> [UInt8] {
        withXMP(jpeg, microVideoXMP(offset: mp4.count)) + mp4
    }

    /// Samsung: the JPEG, Samsung's data block header and `MotionPhoto_Data`, the MP4, and the
    /// SEF trailer directory (`SEFH` … length `SEFT`).
    static func samsung(_ jpeg: [UInt8], _ video: [UInt8]) -> [UInt8] {
        func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8((v >> 24) & 0xFF)] }
        let name = Array("MotionPhoto_Data".utf8)
        let block = [0x00, 0x00, 0x30, 0x0A] + le32(name.count) + name + video
        let directory = Array("SEFH".utf8) + le32(107) + le32(1) + [0x00, 0x00, 0x30, 0x0A] + le32(block.count) + le32(block.count)
        return jpeg + block + directory + le32(directory.count) + Array("SEFT".utf8)
    }

    /// Samsung HEIC: `video` in a top-level `mpvd` box after the HEIF's own boxes.
    static func samsungHEIC(_ heic: [UInt8], _ video: [UInt8]) -> [UInt8] {
        let size = video.count + 8
        return heic + [UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)] + Array("mpvd".utf8) + video
    }

    /// The iPhone-like grid HEIC committed for the HEIF tests.
    static func heic() throws -> [UInt8] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("MediaNestMediaTests/Fixtures/HEIF/iphone-grid-irot.heic").path
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

@Suite("motion photos: the embedded video is found, extracted and described", .timeLimit(.minutes(3)))
struct MotionPhotoTests {
    static let itemID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func run(_ bytes: [UInt8], mime: String = "image/jpeg", in root: String) throws -> JobOutcome {
        try Data(bytes).write(to: URL(fileURLWithPath: root + "/photo"))
        let job = ClaimedJob(id: "job-1", mediaItemID: Self.itemID, type: .metadata, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: Self.itemID, ownerID: "owner-1", filename: "photo", originalFilename: nil, mimeType: mime,
                                   fileSize: Int64(bytes.count), storagePath: "photo", metadata: [:])
        let context = JobContext(job: job, mediaItem: item, storage: StorageLayout(root: root), progress: JobProgress(),
                                 cancellation: JobCancellation(), logger: Self.quiet)
        return try MetadataHandler().run(context)
    }

    /// The derived directory of the test item, and what is in it.
    func derivedFiles(_ root: String) -> [String] {
        let directory = root + "/.derived/0f/" + Self.itemID
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test func theLocatorFindsEveryLayoutAndNothingInAPlainPhoto() throws {
        let scratch = try scratchDirectory("motion-locate")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let mp4 = try MotionPhotoFixtures.mp4(in: scratch)
        let jpeg = try MotionPhotoFixtures.still()
        let cases: [(MotionPhotoLocator.Layout, [UInt8])] = [
            (.googleContainer, MotionPhotoFixtures.google(jpeg, mp4)),
            (.googleMicroVideo, MotionPhotoFixtures.microVideo(jpeg, mp4)),
            (.samsungTrailer, MotionPhotoFixtures.samsung(jpeg, mp4)),
            // Newer Samsung JPEGs: Google's XMP directory too, but the SEF trailer follows the MP4.
            (.samsungTrailer, MotionPhotoFixtures.samsung(MotionPhotoFixtures.withXMP(jpeg, MotionPhotoFixtures.googleContainerXMP(videoLength: mp4.count)), mp4)),
            (.samsungBox, MotionPhotoFixtures.samsungHEIC(try MotionPhotoFixtures.heic(), mp4)),
        ]
        for (layout, bytes) in cases {
            guard case .video(let location) = MotionPhotoLocator.locate(in: bytes) else {
                Issue.record("\(layout): \(MotionPhotoLocator.locate(in: bytes))")
                continue
            }
            #expect(location.layout == layout)
            #expect(location.length == Int64(mp4.count), "\(layout)")
            let found = Array(bytes[Int(location.offset)..<Int(location.offset + location.length)])
            let isTheMP4 = found == mp4
            #expect(isTheMP4, "\(layout): the located bytes are the MP4")
        }
        #expect(MotionPhotoLocator.locate(in: jpeg) == .none)
        #expect(MotionPhotoLocator.locate(in: try MotionPhotoFixtures.heic()) == .none)
        #expect(MotionPhotoLocator.locate(in: jpeg + mp4) == .none, "an MP4 appended without any marker is not claimed")
    }

    @Test(arguments: ["google", "microvideo", "samsung", "samsung-heic"])
    func theVideoIsExtractedProbedAndRecorded(layout: String) throws {
        let root = try scratchDirectory("motion-\(layout)")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mp4 = try MotionPhotoFixtures.mp4(in: root)
        let jpeg = try MotionPhotoFixtures.still()
        let (bytes, mime): ([UInt8], String) = switch layout {
        case "google": (MotionPhotoFixtures.google(jpeg, mp4), "image/jpeg")
        case "microvideo": (MotionPhotoFixtures.microVideo(jpeg, mp4), "image/jpeg")
        case "samsung": (MotionPhotoFixtures.samsung(jpeg, mp4), "image/jpeg")
        default: (MotionPhotoFixtures.samsungHEIC(try MotionPhotoFixtures.heic(), mp4), "image/heic")
        }
        let outcome = try run(bytes, mime: mime, in: root)
        let merge = outcome.itemUpdate.metadataMerge
        #expect(merge["kind"] == "image", "the still stays an image")
        let motion = try #require(merge["motion_photo"]?.objectValue, "\(merge)")
        #expect(motion["error"] == nil, "\(motion)")
        let file = try #require(motion["file"]?.stringValue)
        #expect(file == ".derived/0f/\(Self.itemID)/motion-photo.mp4")
        let extracted = try [UInt8](Data(contentsOf: URL(fileURLWithPath: root + "/" + file)))
        let isTheMP4 = extracted == mp4
        #expect(isTheMP4, "the extracted file is the embedded MP4, byte for byte (\(extracted.count) of \(mp4.count) bytes)")
        #expect(motion["codec"] == "h264")
        #expect(motion["width"] == 64 && motion["height"] == 48)
        let duration = try #require(motion["duration"]?.doubleValue)
        #expect(abs(duration - 0.5) < 0.11, "\(duration)")
        // H.264 4:2:0 8-bit in MP4 plays in browsers: the transcode policy wants no rendition.
        #expect(motion["rendition"]?.objectValue?["action"] == "none", "\(motion)")
        #expect(outcome.output["motion_photo"] == true)
        #expect(derivedFiles(root) == ["motion-photo.mp4"], "no temporary file is left")
    }

    @Test func aVideoNeedingARenditionSaysSo() throws {
        let root = try scratchDirectory("motion-hevc")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/clip.mp4"
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.3",
                                                             "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none",
                                                             "-tag:v", "hvc1", "-pix_fmt", "yuv420p", path])
        #expect(made.status == 0, "\(made.stderr)")
        let hevc = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let outcome = try run(MotionPhotoFixtures.samsung(try MotionPhotoFixtures.still(), hevc), in: root)
        let motion = try #require(outcome.itemUpdate.metadataMerge["motion_photo"]?.objectValue)
        #expect(motion["codec"] == "hevc")
        #expect(motion["rendition"]?.objectValue?["action"] == "transcode", "\(motion)")
    }

    @Test func aTruncatedOrHostileVideoKeepsTheStillAndSaysWhy() throws {
        let root = try scratchDirectory("motion-bad")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mp4 = try MotionPhotoFixtures.mp4(in: root)
        let jpeg = try MotionPhotoFixtures.still()
        let cut = Array(mp4.prefix(mp4.count / 2))  // ffmpeg writes moov last: no moov
        var hostile = mp4
        // An MP4 whose first bytes are a playlist instead of an ftyp box.
        let playlist = Array("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n".utf8)
        hostile.replaceSubrange(0..<min(playlist.count, hostile.count), with: playlist)
        let cases: [(String, [UInt8], String)] = [
            ("samsung-cut", MotionPhotoFixtures.samsung(jpeg, cut), "corrupt_media"),
            ("google-cut", MotionPhotoFixtures.google(jpeg, cut, declaredLength: mp4.count), "corrupt_media"),
            ("samsung-not-mp4", MotionPhotoFixtures.samsung(jpeg, hostile), "corrupt_media"),
            // An MP4 whose sample table claims 2^24 samples in 16 bytes: the probe's sample table
            // check refuses it before FFmpeg builds an index (docs/HOSTILE-FILES.md).
            ("google-sample-bomb", MotionPhotoFixtures.google(jpeg, HostileFiles.mp4(claimingSamples: 1 << 24)), "corrupt_media"),
            ("heic-cut", MotionPhotoFixtures.samsungHEIC(try MotionPhotoFixtures.heic(), mp4).dropLast(mp4.count / 2).map { $0 }, "corrupt_media"),
        ]
        for (label, bytes, code) in cases {
            let outcome = try run(bytes, mime: label.hasPrefix("heic") ? "image/heic" : "image/jpeg", in: root)
            let merge = outcome.itemUpdate.metadataMerge
            #expect(merge["kind"] == "image", "\(label): the still is kept")
            let motion = try #require(merge["motion_photo"]?.objectValue, "\(label)")
            #expect(motion["file"] == nil, "\(label)")
            let error = try #require(motion["error"]?.objectValue, "\(label): \(motion)")
            #expect(error["code"] == .string(code), "\(label): \(error)")
            let message = error["message"]?.stringValue ?? ""
            #expect(message.contains("photo") && message.count > 40 && !message.contains("~"), "\(label): \(message)")
            if label == "google-sample-bomb" { #expect(message.contains("sample tables claim 16777216 samples"), "\(message)") }
            #expect(outcome.output["motion_photo"] == false)
            #expect(derivedFiles(root).isEmpty, "\(label): nothing is left in the derived directory: \(derivedFiles(root))")
        }
    }

    @Test func anOversizedVideoIsRefusedBeforeItIsCopied() throws {
        let root = try scratchDirectory("motion-big")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mp4 = try MotionPhotoFixtures.mp4(in: root)
        try Data(MotionPhotoFixtures.samsung(try MotionPhotoFixtures.still(), mp4)).write(to: URL(fileURLWithPath: root + "/photo"))
        let file = try SafeFile.open(relativePath: "photo", in: root)
        let record = try #require(try MotionPhotoExtraction.extract(
            file: file, into: { () throws(JobError) in try DerivedDirectory.forMediaItem(Self.itemID, derivedRoot: root + "/.derived", writtenBy: "metadata") },
            derivedRoot: root + "/.derived", storageRelativePrefix: ".derived", limits: .default, transcodeSettings: TranscodeSettings(),
            maxVideoBytes: Int64(mp4.count - 1), cancellation: nil, logger: Self.quiet))
        #expect(record.objectValue?["error"]?.objectValue?["code"] == "too_large", "\(record)")
        #expect(derivedFiles(root).isEmpty)
    }
}
