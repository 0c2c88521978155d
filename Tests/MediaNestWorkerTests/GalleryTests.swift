import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import MediaNestWorker
import Testing

@Suite("gallery page")
struct GalleryHTMLTests {
    @Test func everythingFromTheDatabaseIsEscaped() {
        let hostile = GalleryItem(id: "8c1d2e3f-0000-4000-8000-000000000001", name: "<script>alert(1)</script>\"'&.jpg", mimeType: "image/jpeg",
                                  size: 10, status: "error", storagePath: "x.jpg",
                                  metadata: ["kind": "image", "tags": ["title": "<img src=x onerror=alert(2)>"]],
                                  jobs: [.init(type: "metadata", status: "failed", errorCode: "corrupt_media", errorMessage: "bad <b>bytes</b>")])
        let html = GalleryHTML.render([GalleryHTML.Card(item: hostile)], generatedAt: Date(timeIntervalSince1970: 0))
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img src=x"))
        #expect(!html.contains("<b>bytes"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;.jpg"))
        #expect(html.contains("The file is damaged or incomplete"))
        #expect(html.contains("bad &lt;b&gt;bytes&lt;/b&gt;"))
        #expect(GalleryHTML.escape("a\nb") == "a\\nb")
    }

    @Test func trickplayStripPicksTilesAcrossSheets() throws {
        let info = try #require(TrickplayInfo(["interval": 2, "tileWidth": 160, "tile_height": 90, "columns": 5, "rows": 2, "count": 14,
                                               "sheets": ["3f/x/trickplay/sheet-000.jpg", "3f/x/trickplay/sheet-001.jpg"]]))
        #expect(info.tileWidth == 160 && info.tileHeight == 90 && info.count == 14)
        var card = GalleryHTML.Card(item: GalleryItem(id: "i", name: "v.mp4", mimeType: "video/mp4", size: 1, status: "ready", storagePath: "v.mp4"))
        card.trickplay = (info, ["media/i/trickplay-0.jpg", "media/i/trickplay-1.jpg"])
        let html = GalleryHTML.render([card], generatedAt: Date())
        #expect(html.components(separatedBy: "class=\"tile\"").count - 1 == 12)
        // The last tile (frame 14, at 26 s) is the fourth of the second sheet: column 3, row 0.
        // The sheet's height is the image's own (`auto`): the last sheet holds one row of four
        // tiles, not the full two rows, and a fixed height would stretch its tiles.
        #expect(html.contains("url('media/i/trickplay-1.jpg');background-size:480px auto;background-position:-288px -0px"))
        #expect(html.contains("0:26.0"))
        #expect(TrickplayInfo(["columns": 0, "rows": 1, "tile_width": 1, "tile_height": 1, "sheets": ["a"]]) == nil)
        #expect(TrickplayInfo(nil) == nil)
    }

    /// A Live Photo is one tile: the still's card carries its motion video (the rendition when
    /// there is one, else the original), the motion item has no card, and the page has the hover
    /// script. Links that do not agree both ways, a motion video with nothing playable, and one
    /// whose still is not in the list keep their own tiles; an unlinked MOV is a video tile.
    @Test func aLivePhotoPairIsOneTileWithItsMotionAttached() throws {
        let scratch = try ImportScratch()
        let storage = scratch.storage
        let fm = FileManager.default
        func file(_ relative: String, _ text: String) throws { try writeText(text, at: relative, under: storage) }
        let id = { (n: Int) in String(format: "0a1b2c3d-0000-4000-8000-%012d", n) }
        let (still, motion, stillB, motionB, plainMOV, orphan, stillC, brokenMotion, liar) = (id(1), id(2), id(3), id(4), id(5), id(6), id(7), id(8), id(9))
        for n in [1, 3, 7, 9] { try file(".derived/\(id(n))/preview.jpg", "preview \(n)") }
        try file(".derived/\(motion)/renditions/720p.mp4", "motion rendition")
        for name in ["IMG_0001.MOV", "IMG_0002.MOV", "holiday.mov", "orphan.mov"] { try file("uploads/" + name, "original " + name) }
        let h264: JSONValue = ["kind": "video", "video_codec": "h264", "container": "mov", "duration": 2.5]
        func link(_ base: JSONValue, _ fields: [String: JSONValue]) -> JSONValue {
            var object = base.objectValue ?? [:]
            object["live_photo"] = .object(fields.merging(["content_id": "C"]) { a, _ in a })
            return .object(object)
        }
        func photo(_ itemID: String, _ name: String, videoID: String?) -> GalleryItem {
            GalleryItem(id: itemID, name: name, mimeType: "image/heic", size: 10, status: "ready", storagePath: "uploads/\(name)",
                        previewPath: ".derived/\(itemID)/preview.jpg",
                        metadata: videoID.map { link(["kind": "image"], ["video_id": .string($0)]) } ?? ["kind": "image"])
        }
        func video(_ itemID: String, _ name: String, stillID: String?, status: String = "ready", path: String? = nil,
                   processingInfo: JSONValue = [:]) -> GalleryItem {
            GalleryItem(id: itemID, name: name, mimeType: "video/quicktime", size: 10, status: status, storagePath: path ?? "uploads/\(name)",
                        metadata: stillID.map { link(h264, ["still_id": .string($0), "role": "motion"]) } ?? h264, processingInfo: processingInfo)
        }
        // The motion video first: the still's tile takes it whichever comes first.
        let items = [
            video(motion, "IMG_0001.MOV", stillID: still,
                  processingInfo: ["renditions": [["path": .string(".derived/\(motion)/renditions/720p.mp4"), "container": "mp4"]]]),
            photo(still, "IMG_0001.HEIC", videoID: motion),
            photo(stillB, "IMG_0002.HEIC", videoID: motionB),
            video(motionB, "IMG_0002.MOV", stillID: stillB),
            video(plainMOV, "holiday.mov", stillID: nil),
            video(orphan, "orphan.mov", stillID: id(99)),
            // Its video's original is outside the storage root and it has no rendition: nothing
            // to play, so the video keeps its own tile and nothing is copied.
            photo(stillC, "IMG_0003.HEIC", videoID: brokenMotion),
            video(brokenMotion, "IMG_0003.MOV", stillID: stillC, path: "../../../../etc/passwd"),
            // Claims the plain MOV, which does not claim it back.
            photo(liar, "liar.jpg", videoID: plainMOV),
        ]
        let pairs = GalleryWriter.livePhotoPairs(items)
        #expect(pairs.map { "\($0.still.id)>\($0.motion.id)" } == ["\(still)>\(motion)", "\(stillB)>\(motionB)", "\(stillC)>\(brokenMotion)"])

        let output = scratch.base + "/gallery"
        let index = try GalleryWriter(storageRoot: storage).write(items, to: output, generatedAt: Date(timeIntervalSince1970: 0))
        let html = try String(contentsOfFile: index, encoding: .utf8)
        let articles = html.components(separatedBy: "<article ").dropFirst().map { "<article " + $0 }
        func card(_ itemID: String) -> String? { articles.first { $0.contains("id=\"item-\(itemID)\"") } }
        #expect(articles.count == 7, "two motion videos share their stills' tiles")
        #expect(card(motion) == nil && card(motionB) == nil)
        let liveTile = "<div class=\"visual live\" data-live>"

        let first = try #require(card(still))
        #expect(first.contains(liveTile))
        #expect(first.contains("<source src=\"media/\(still)/motion-rendition.mp4\" type=\"video/mp4\">"), "the web rendition is preferred")
        #expect(first.contains("<img src=\"media/\(still)/preview.jpg\""))
        #expect(first.contains("LIVE</span>"))
        #expect(first.contains("motion IMG_0001.MOV · 0:02.5 · web rendition"))
        #expect(try String(contentsOfFile: output + "/media/\(still)/motion-rendition.mp4", encoding: .utf8) == "motion rendition")
        let second = try #require(card(stillB))
        #expect(second.contains("<source src=\"media/\(stillB)/motion-original.mov\" type=\"video/mp4\">"), "else the H.264 original")
        #expect(try String(contentsOfFile: output + "/media/\(stillB)/motion-original.mov", encoding: .utf8) == "original IMG_0002.MOV")
        // Nothing is copied for the hidden items themselves.
        #expect(!fm.fileExists(atPath: output + "/media/\(motion)") && !fm.fileExists(atPath: output + "/media/\(motionB)"))

        for unlinked in [plainMOV, orphan, brokenMotion] {
            let tile = try #require(card(unlinked), "\(unlinked) keeps its own tile")
            #expect(!tile.contains(liveTile))
        }
        #expect(try #require(card(plainMOV)).contains("<video controls"))
        #expect(try #require(card(orphan)).contains("motion of \(id(99))"))
        #expect(try #require(card(brokenMotion)).contains("motion of IMG_0003.HEIC"))
        #expect(!(try #require(card(stillC))).contains(liveTile))
        #expect(!(try #require(card(liar))).contains(liveTile))
        #expect(!fm.fileExists(atPath: output + "/media/\(stillC)/motion-original.mov"))
        #expect(!fm.fileExists(atPath: output + "/media/\(brokenMotion)"))

        #expect(html.contains("9 items: <span class=\"ok\">9 ready</span>; 2 Live Photos"), "the summary counts items, not tiles")
        #expect(html.components(separatedBy: "<script>").count - 1 == 1)
        #expect(html.contains("addEventListener('mouseenter'"))
    }

    @Test func aMotionPhotoPlaysTheClipFromInsideItsFileOnItsOwnTile() throws {
        let scratch = try ImportScratch()
        let storage = scratch.storage
        let fm = FileManager.default
        func file(_ relative: String, _ text: String) throws { try writeText(text, at: relative, under: storage) }
        let id = { (n: Int) in String(format: "0b1c2d3e-0000-4000-8000-%012d", n) }
        let (google, hevc, truncated, escaping, plain) = (id(1), id(2), id(3), id(4), id(5))
        for n in 1...5 { try file(".derived/\(id(n))/preview.jpg", "preview \(n)") }
        try file(".derived/\(google)/motion-photo.mp4", "clip of PXL_1")
        try file(".derived/\(hevc)/motion-photo.mp4", "clip of 20240601")
        func photo(_ itemID: String, _ name: String, clip: JSONValue?) -> GalleryItem {
            GalleryItem(id: itemID, name: name, mimeType: "image/jpeg", size: 10, status: "ready", storagePath: "uploads/\(name)",
                        previewPath: ".derived/\(itemID)/preview.jpg",
                        metadata: clip.map { ["kind": "image", "motion_photo": $0] } ?? ["kind": "image"])
        }
        let items = [
            photo(google, "PXL_1.MP.jpg", clip: ["layout": "google_container", "file": .string(".derived/\(google)/motion-photo.mp4"),
                                                "codec": "h264", "width": 64, "height": 48, "duration": 1.5]),
            // A clip Chromium does not play as is: the still only, with the clip described.
            photo(hevc, "20240601.heic", clip: ["layout": "samsung_mpvd", "file": .string(".derived/\(hevc)/motion-photo.mp4"), "codec": "hevc"]),
            // The metadata job kept only the still, and says why.
            photo(truncated, "broken.MP.jpg", clip: ["layout": "google_micro_video",
                                                     "error": ["code": "corrupt_media", "message": "The video embedded in broken.MP.jpg cannot be used. It ends early."]]),
            // A recorded path that leaves the storage root is never followed.
            photo(escaping, "escape.MP.jpg", clip: ["layout": "google_container", "file": "../../../../etc/passwd", "codec": "h264"]),
            photo(plain, "plain.jpg", clip: nil),
        ]
        let output = scratch.base + "/gallery"
        let index = try GalleryWriter(storageRoot: storage).write(items, to: output, generatedAt: Date(timeIntervalSince1970: 0))
        let html = try String(contentsOfFile: index, encoding: .utf8)
        let articles = html.components(separatedBy: "<article ").dropFirst().map { "<article " + $0 }
        func card(_ itemID: String) -> String { articles.first { $0.contains("id=\"item-\(itemID)\"") } ?? "" }
        let liveTile = "<div class=\"visual live\" data-live>"
        #expect(articles.count == 5, "a motion photo is one item and one tile")

        let tile = card(google)
        #expect(tile.contains(liveTile))
        #expect(tile.contains("<source src=\"media/\(google)/motion-photo.mp4\" type=\"video/mp4\">"))
        #expect(tile.contains("MOTION</span>"))
        #expect(tile.contains("H.264 · 64 × 48 · 0:01.5 · google_container"))
        #expect(try String(contentsOfFile: output + "/media/\(google)/motion-photo.mp4", encoding: .utf8) == "clip of PXL_1")

        #expect(!card(hevc).contains(liveTile) && card(hevc).contains("Motion photo"))
        #expect(!card(truncated).contains(liveTile))
        #expect(card(truncated).contains("the still only: The video embedded in broken.MP.jpg cannot be used. It ends early."))
        #expect(!card(escaping).contains(liveTile))
        #expect(!fm.fileExists(atPath: output + "/media/\(escaping)/motion-photo.mp4"))
        #expect(!card(plain).contains(liveTile) && !card(plain).contains("Motion photo"))
        #expect(html.contains("; 1 motion photo (the clip inside the photo plays on hover)"))
        #expect(html.components(separatedBy: "<script>").count - 1 == 1, "the hover script comes with a motion photo too")
    }
}

/// Writes `text` to `relative` under `storage`, making its directories: a stand-in for an
/// original or a derived file in the page-level gallery tests.
private func writeText(_ text: String, at relative: String, under storage: String) throws {
    let path = storage + "/" + relative
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Files a gallery test needs: derived pictures, a trickplay sheet and an H.264/AAC rendition,
/// made with the ffmpeg CLI (a fixture generator; the product never runs it).
struct GalleryFixture {
    let storage: String
    let itemIDs: [String]

    static func ffmpeg(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
        process.arguments = ["-hide_banner", "-loglevel", "error", "-y"] + arguments
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw FixtureError("ffmpeg \(arguments.joined(separator: " ")) failed") }
    }

    /// A photo (thumbnail + preview), a video (thumbnail, preview, trickplay, rendition) and a
    /// broken file with its error, as the handlers would leave them.
    static func make(in storage: String, owner: String, on connection: PGConnection) throws -> GalleryFixture {
        func insert(_ name: String, mime: String, path: String, status: String) throws -> String {
            try connection.query("""
                INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path, status, checksum_sha256)
                VALUES ($1::uuid, $2, $2, $3, 1000, $4::text, $5::media_status, encode(sha256(convert_to($4::text, 'UTF8')), 'hex')) RETURNING id::text AS id
                """, [owner, name, mime, path, status])[0].decode("id", as: String.self)
        }
        let fm = FileManager.default
        try fm.createDirectory(atPath: storage + "/uploads", withIntermediateDirectories: true)
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1280x720", "-frames:v", "1", storage + "/uploads/photo.jpg"])
        let photo = try insert("Sunset <beach> & friends.jpg", mime: "image/jpeg", path: "uploads/photo.jpg", status: "ready")
        let video = try insert("holiday.mov", mime: "video/quicktime", path: "uploads/holiday.mov", status: "ready")
        let broken = try insert("broken.mp4", mime: "video/mp4", path: "uploads/broken.mp4", status: "error")
        try Data(repeating: 7, count: 1000).write(to: URL(fileURLWithPath: storage + "/uploads/broken.mp4"))

        for (id, source) in [(photo, "testsrc2=size=1280x720"), (video, "smptebars=size=1280x720")] {
            let dir = "\(storage)/.derived/\(id.prefix(2))/\(id)"
            try fm.createDirectory(atPath: dir + "/trickplay", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: dir + "/renditions", withIntermediateDirectories: true)
            try ffmpeg(["-f", "lavfi", "-i", source, "-frames:v", "1", "-vf", "scale=320:-2", "-c:v", "libwebp", dir + "/thumbnail.webp"])
            try ffmpeg(["-f", "lavfi", "-i", source, "-frames:v", "1", dir + "/preview.jpg"])
            try connection.execute("UPDATE media_items SET thumbnail_path = $2, preview_path = $3 WHERE id = $1::uuid",
                                   [id, ".derived/\(id.prefix(2))/\(id)/thumbnail.webp", ".derived/\(id.prefix(2))/\(id)/preview.jpg"])
        }
        let videoDir = "\(storage)/.derived/\(video.prefix(2))/\(video)"
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=1", "-frames:v", "1", "-vf", "tile=5x2", videoDir + "/trickplay/sheet-000.jpg"])
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
                    videoDir + "/renditions/720p.mp4"])
        try connection.execute("""
            UPDATE media_items SET metadata = '{"kind":"video","duration":2.0,"width":1280,"height":720,"video_codec":"hevc","container":"mov","bit_depth":10}',
                   processing_info = jsonb_build_object(
                       'trickplay', jsonb_build_object('interval', 0.2, 'tile_width', 160, 'tile_height', 90, 'columns', 5, 'rows', 2, 'count', 10,
                                                       'sheets', jsonb_build_array($2 || '/trickplay/sheet-000.jpg')),
                       'renditions', jsonb_build_array(jsonb_build_object('path', '.derived/' || $2 || '/renditions/720p.mp4', 'container', 'mp4',
                                                       'video_codec', 'h264', 'audio_codec', 'aac', 'width', 640, 'height', 360, 'bitrate', 400000)))
             WHERE id = $1::uuid
            """, [video, "\(video.prefix(2))/\(video)"])
        try connection.execute("""
            UPDATE media_items SET metadata = '{"kind":"image","width":1280,"height":720,"camera":{"make":"MediaNest","model":"Cam"},"thumbhash":"AAAA"}'
             WHERE id = $1::uuid
            """, [photo])
        try connection.execute("""
            INSERT INTO processing_jobs (media_item_id, job_type, status, output_data, error_message, completed_at)
            VALUES ($1::uuid, 'metadata', 'failed',
                    '{"error":{"code":"corrupt_media","message":"broken.mp4 is a truncated MP4: the moov atom is missing."}}',
                    'corrupt_media', now())
            """, [broken])
        // The photo uploaded a second time (same bytes, no outputs yet): an exact duplicate pair.
        try fm.linkItem(atPath: storage + "/uploads/photo.jpg", toPath: storage + "/uploads/photo (1).jpg")
        let copy = try insert("Sunset copy.jpg", mime: "image/jpeg", path: "uploads/photo (1).jpg", status: "processing")
        try connection.execute("UPDATE media_items SET checksum_sha256 = (SELECT checksum_sha256 FROM media_items WHERE id = $2::uuid) WHERE id = $1::uuid",
                               [copy, photo])
        return GalleryFixture(storage: storage, itemIDs: [photo, video, broken, copy])
    }
}

extension GalleryFixture {
    /// A Live Photo as the metadata job leaves it linked: a still (preview and thumbnail) and a
    /// 2 s H.264 MOV with `metadata.live_photo` both ways and `role = "motion"` on the video.
    /// Returns (still, motion).
    static func addLivePhoto(in storage: String, owner: String, on connection: PGConnection) throws -> (still: String, motion: String) {
        func insert(_ name: String, mime: String) throws -> String {
            try connection.query("""
                INSERT INTO media_items (owner_id, filename, original_filename, mime_type, file_size, storage_path, status, checksum_sha256)
                VALUES ($1::uuid, $2::text, $2::text, $3, 1000, 'uploads/' || $2::text, 'ready', encode(sha256(convert_to($2::text, 'UTF8')), 'hex'))
                RETURNING id::text AS id
                """, [owner, name, mime])[0].decode("id", as: String.self)
        }
        let still = try insert("IMG_0006.HEIC", mime: "image/heic")
        let motion = try insert("IMG_0006.MOV", mime: "video/quicktime")
        try ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=480x360:rate=25", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    storage + "/uploads/IMG_0006.MOV"])
        let dir = "\(storage)/.derived/\(still.prefix(2))/\(still)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try ffmpeg(["-ss", "1", "-i", storage + "/uploads/IMG_0006.MOV", "-frames:v", "1", "-vf", "scale=320:-2", "-c:v", "libwebp", dir + "/thumbnail.webp"])
        try ffmpeg(["-ss", "1", "-i", storage + "/uploads/IMG_0006.MOV", "-frames:v", "1", dir + "/preview.jpg"])
        try connection.execute("""
            UPDATE media_items SET thumbnail_path = $2, preview_path = $3,
                   metadata = jsonb_build_object('kind', 'image', 'width', 480, 'height', 360,
                                                 'live_photo', jsonb_build_object('content_id', 'A1B2', 'video_id', $4::text))
             WHERE id = $1::uuid
            """, [still, ".derived/\(still.prefix(2))/\(still)/thumbnail.webp", ".derived/\(still.prefix(2))/\(still)/preview.jpg", motion])
        try connection.execute("""
            UPDATE media_items SET metadata = jsonb_build_object('kind', 'video', 'duration', 2.0, 'width', 480, 'height', 360,
                                                 'video_codec', 'h264', 'container', 'mov',
                                                 'live_photo', jsonb_build_object('content_id', 'A1B2', 'still_id', $2::text, 'role', 'motion'))
             WHERE id = $1::uuid
            """, [motion, still])
        return (still, motion)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private let chromiumAvailable = FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")

@Suite("gallery in a browser", .serialized, .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(3)))
struct GalleryBrowserTests {
    @Test func galleryCopiesTheFilesAndRefusesPathsOutsideTheStorageRoot() async throws {
        let scratch = try ImportScratch()
        try await withMigratedDatabase("gallerycopy") { database, connection, owner in
            let fixture = try GalleryFixture.make(in: scratch.storage, owner: owner, on: connection)
            // A row pointing outside the storage root must not pull that file into the page.
            try connection.execute("UPDATE media_items SET thumbnail_path = '../../../../etc/passwd' WHERE id = $1::uuid", [fixture.itemIDs[2]])
            // A handler that wrote the path relative to the derived root is understood too.
            try connection.execute("UPDATE media_items SET thumbnail_path = substr(thumbnail_path, 10) WHERE id = $1::uuid", [fixture.itemIDs[0]])
            let output = scratch.base + "/gallery"
            let result = try runCLI(["gallery", "--output", output, "--storage-root", scratch.storage, "--database-url", database.connectionString])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("Gallery of 4 items: \(output)/index.html"))
            let files = try FileManager.default.subpathsOfDirectory(atPath: output).sorted()
            let video = fixture.itemIDs[1]
            #expect(files.contains("media/\(video)/rendition.mp4"))
            #expect(files.contains("media/\(video)/trickplay-0.jpg"))
            #expect(files.contains("media/\(video)/thumbnail.webp"))
            #expect(files.contains("media/\(fixture.itemIDs[0])/preview.jpg"))
            #expect(files.contains("media/\(fixture.itemIDs[0])/thumbnail.webp"))
            #expect(!files.contains { $0.hasPrefix("media/\(fixture.itemIDs[2])") })
            let html = try String(contentsOfFile: output + "/index.html", encoding: .utf8)
            #expect(html.contains("Sunset &lt;beach&gt; &amp; friends.jpg"))
            #expect(html.contains("Same file as <a href=\"#item-\(fixture.itemIDs[3])\">Sunset copy.jpg</a>"), "the photo's card links its copy")
            #expect(html.contains("hevc 10-bit"))
            #expect(!html.contains("/etc/passwd"))
        }
    }

    @Test(.enabled(if: chromiumAvailable, "needs Debian's chromium (scripts/common.sh installs it)"))
    func chromiumShowsEveryPictureAndPlaysTheVideo() async throws {
        let scratch = try ImportScratch()
        try await withMigratedDatabase("gallerybrowser") { database, connection, owner in
            let fixture = try GalleryFixture.make(in: scratch.storage, owner: owner, on: connection)
            let live = try GalleryFixture.addLivePhoto(in: scratch.storage, owner: owner, on: connection)
            let output = scratch.base + "/gallery"
            let result = try runCLI(["gallery", "--output", output, "--storage-root", scratch.storage, "--database-url", database.connectionString])
            #expect(result.status == 0, "\(result.error)")

            let screenshot = ProcessInfo.processInfo.environment["MEDIANEST_GALLERY_SCREENSHOT"] ?? scratch.base + "/gallery.png"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [repositoryRoot.appendingPathComponent("Tests/browser/check_gallery.py").path, output + "/index.html", screenshot]
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(errors)")
            let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(String(decoding: data, as: UTF8.self)) \(errors)")
            #expect(report["loaded"] as? Bool == true)
            let images = try #require(report["images"] as? [[String: Any]])
            // Photo preview + thumbnail, video thumbnail, the copy's original (it has no outputs
            // yet), the Live Photo's preview + thumbnail: six pictures, all decoded, all described.
            #expect(images.count == 6)
            for image in images {
                #expect((image["naturalWidth"] as? Int ?? 0) > 0, "\(image)")
                #expect(!((image["alt"] as? String) ?? "").isEmpty, "\(image)")
            }
            // The unlinked MOV's rendition and the Live Photo's motion, both loaded.
            let videos = try #require(report["videos"] as? [[String: Any]])
            #expect(videos.count == 2)
            #expect(videos.allSatisfy { ($0["readyState"] as? Int ?? 0) >= 2 }, "\(videos)")
            // One tile per item, but the motion video shares its still's.
            let articles = try #require(report["articles"] as? [String])
            #expect(Set(articles) == Set((fixture.itemIDs + [live.still]).map { "item-\($0)" }), "\(articles)")
            #expect(!articles.contains("item-\(live.motion)"))
            // Hovering the Live Photo plays its motion over the still; leaving shows the still
            // again; keyboard focus does what the pointer does.
            let tiles = try #require(report["live"] as? [[String: Any]])
            #expect(tiles.count == 1)
            let tile = try #require(tiles.first)
            #expect(tile["id"] as? String == "item-\(live.still)")
            #expect(tile["badge"] as? String == "LIVE")
            func state(_ step: String) -> (playing: Bool, paused: Bool, time: Double, shown: String) {
                let s = tile[step] as? [String: Any] ?? [:]
                return (s["playing"] as? Bool ?? false, s["paused"] as? Bool ?? false, s["currentTime"] as? Double ?? 0, s["shown"] as? String ?? "")
            }
            let before = state("before")
            #expect(before.paused && !before.playing && before.shown == "0", "the still is shown until hovered: \(tile)")
            for step in ["hover", "focus"] {
                let playing = state(step)
                #expect(playing.playing && !playing.paused && playing.time > 0.3, "\(step) plays the motion: \(tile)")
            }
            for step in ["left", "blur"] {
                let resting = state(step)
                #expect(!resting.playing && resting.paused && resting.time == 0, "\(step) shows the still again: \(tile)")
            }
            #expect((report["console_errors"] as? [String]) == [], "\(report["console_errors"] ?? "")")
            // The duplicate pair: each card shows a link to the other, and the link leads to a card.
            let duplicates = try #require(report["duplicates"] as? [[String: Any]])
            let (photo, copy) = (fixture.itemIDs[0], fixture.itemIDs[3])
            #expect(Set(duplicates.map { "\($0["from"] ?? "")>\($0["href"] ?? "")" }) == ["item-\(photo)>#item-\(copy)", "item-\(copy)>#item-\(photo)"],
                    "\(duplicates)")
            #expect(duplicates.allSatisfy { $0["target"] as? Bool == true && $0["visible"] as? Bool == true && $0["kind"] as? String == "exact" })
            #expect(FileManager.default.fileExists(atPath: screenshot))
        }
    }
}

@Suite("gallery error grouping")
struct GalleryErrorGroupingTests {
    @Test func aFileThatFailsEveryJobForOneReasonSaysItOnce() {
        var item = GalleryItem(id: "b", name: "broken.mov", mimeType: "video/quicktime", size: 1, status: "error", storagePath: "broken.mov")
        item.processingInfo = ["errors": [
            "metadata": ["code": "corrupt_media", "message": "broken.mov cannot be opened."],
            "thumbnail": ["code": "corrupt_media", "message": "broken.mov cannot be opened."],
            "transcode": ["code": "timeout", "message": "The transcode took too long."],
        ]]
        let html = GalleryHTML.render([GalleryHTML.Card(item: item)], generatedAt: Date())
        #expect(html.components(separatedBy: "broken.mov cannot be opened.").count - 1 == 1)
        #expect(html.contains("(metadata, thumbnail jobs, <code>corrupt_media</code>)"))
        #expect(html.contains("(transcode job, <code>timeout</code>)"))
    }
}
