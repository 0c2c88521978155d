import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// Decodes an image file with the ffmpeg CLI (an independent decoder): its size, or `nil`.
func cliImageSize(_ path: String) throws -> (width: Int, height: Int)? {
    let result = try ProcessRunner.run("/usr/bin/ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                                                           "-of", "csv=p=0", path])
    let parts = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").compactMap { Int($0) }
    guard result.status == 0, parts.count == 2 else { return nil }
    // ffprobe reads headers; make sure the pixels decode too.
    let decode = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-i", path, "-f", "null", "-"])
    guard decode.status == 0, decode.stderr.isEmpty else { return nil }
    return (parts[0], parts[1])
}

@Suite("Thumbnail and preview handlers write upright outputs atomically, from one decode")
struct StillHandlerTests {
    let fixtures: MediaFixtures
    let storage: String
    let itemID = UUID().uuidString.lowercased()

    init() throws {
        fixtures = try MediaFixtures.load()
        storage = try fixtures.makeScratchDirectory("stills-handler")
        // A 4000×3000 photo stored landscape with Orientation 6 (a portrait phone photo).
        let big = storage + "/big.jpg"
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=2000x1500", "-frames:v", "1",
                                                              "-q:v", "4", big])
        try #require(result.status == 0, "\(result.stderr)")
        let tagged = try ExifBuilder.insert(app1: ExifBuilder.app1(orientation: 6, littleEndian: true), into: Data(contentsOf: URL(fileURLWithPath: big)))
        try tagged.write(to: URL(fileURLWithPath: storage + "/photo.jpg"))
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.plainJPEG), toPath: storage + "/small.jpg")
        try FileManager.default.copyItem(atPath: fixtures.path(MediaFixtures.Name.truncatedMP4), toPath: storage + "/broken.mp4")
        try Data(repeating: 0x41, count: 4000).write(to: URL(fileURLWithPath: storage + "/text.jpg"))
    }

    var itemDirectory: String { storage + "/.derived/" + String(itemID.prefix(2)) + "/" + itemID }

    func context(_ type: JobType, path: String = "photo.jpg", cancellation: JobCancellation = JobCancellation()) -> JobContext {
        let job = ClaimedJob(id: UUID().uuidString, mediaItemID: itemID, type: type, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: itemID, ownerID: "owner", filename: path, originalFilename: nil, mimeType: "image/jpeg",
                                   fileSize: nil, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: storage), progress: JobProgress(),
                          cancellation: cancellation, logger: TestLogging.logger())
    }

    func inode(_ name: String) throws -> UInt64 {
        try #require(FileManager.default.attributesOfItem(atPath: itemDirectory + "/" + name)[.systemFileNumber] as? UInt64)
    }

    func files() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: itemDirectory)) ?? []).sorted()
    }

    @Test func aJobRunAloneRendersOnlyItsOwnOutputAtItsOwnSize() throws {
        let thumb = try ThumbnailHandler().run(context(.thumbnail))
        let relative = ".derived/\(itemID.prefix(2))/\(itemID)/thumbnail.webp"
        #expect(thumb.itemUpdate.thumbnailPath == relative)
        #expect(thumb.output["path"] == .string(relative))
        #expect(thumb.output["format"] == "webp")
        #expect(thumb.output["source_kind"] == "image")
        #expect(thumb.output["orientation"] == 6)
        // Orientation 6: the 2000×1500 stored picture is shown 1500×2000, so 240×320.
        #expect(thumb.output["width"] == 240 && thumb.output["height"] == 320)
        let size = try #require(try cliImageSize(storage + "/" + relative))
        #expect(size.width == 240 && size.height == 320)
        #expect(thumb.output["bytes"]?.intValue == Int64(try Data(contentsOf: URL(fileURLWithPath: storage + "/" + relative)).count))
        // Decoded for itself only, at its own size; the preview is the preview job's to make.
        #expect(thumb.output["decode"] == ["long_edge": 320, "jobs": ["thumbnail"]])
        #expect(files() == ["thumbnail.webp"])

        let preview = try PreviewHandler().run(context(.preview))
        #expect(preview.itemUpdate.previewPath == ".derived/\(itemID.prefix(2))/\(itemID)/preview.jpg")
        #expect(preview.output["width"] == 1080 && preview.output["height"] == 1440)
        #expect(preview.output["decode"] == ["long_edge": 1440, "jobs": ["preview"]])
        let previewSize = try #require(try cliImageSize(itemDirectory + "/preview.jpg"))
        #expect(previewSize.width == 1080 && previewSize.height == 1440)
        #expect(files() == ["preview.jpg", "thumbnail.webp"])
    }

    @Test func jobsClaimedTogetherGetBothOutputsFromOneDecode() throws {
        let contexts = [context(.preview), context(.thumbnail)]
        let results = StillJobsHandler().run(together: contexts)
        try #require(results.count == 2)
        let preview = try results[0].get(), thumb = try results[1].get()
        #expect(preview.itemUpdate.previewPath == ".derived/\(itemID.prefix(2))/\(itemID)/preview.jpg")
        #expect(thumb.itemUpdate.thumbnailPath == ".derived/\(itemID.prefix(2))/\(itemID)/thumbnail.webp")
        #expect(thumb.itemUpdate.metadataMerge["thumbhash"] != nil)
        // One decode, at the preview's size, served both jobs.
        let decode: JSONValue = ["long_edge": 1440, "jobs": ["preview", "thumbnail"]]
        #expect(preview.output["decode"] == decode && thumb.output["decode"] == decode)
        #expect(contexts[0].bytesRead.total > 0)
        #expect(contexts[1].bytesRead.total == 0, "the file was read for the first job's decode only")
        #expect(thumb.output["width"] == 240 && thumb.output["height"] == 320)
        #expect(preview.output["width"] == 1080 && preview.output["height"] == 1440)
        for (name, width, height) in [("thumbnail.webp", 240, 320), ("preview.jpg", 1080, 1440)] {
            let size = try #require(try cliImageSize(itemDirectory + "/" + name))
            #expect(size.width == width && size.height == height, "\(name)")
        }
        #expect(files() == ["preview.jpg", "thumbnail.webp"])
    }

    // A cancel, a time limit or a lost lease stops one job of a pair: that job commits nothing,
    // the other still gets its output from the shared decode.
    @Test func aJobOfAPairThatMustStopCommitsNothingAndItsSiblingGoesOn() throws {
        let cancelled = JobCancellation()
        cancelled.stop(.cancelled)
        var results = StillJobsHandler().run(together: [context(.thumbnail), context(.preview, cancellation: cancelled)])
        #expect(try results[0].get().output["decode"] == ["long_edge": 1440, "jobs": ["thumbnail", "preview"]])
        #expect(throws: JobError.self) { try results[1].get() }
        if case .failure(let error) = results[1] { #expect(error.code == .cancelled) }
        #expect(files() == ["thumbnail.webp"])

        // The thumbnail's lease ran out as this process knows it: its rename does not happen.
        let before = try inode("thumbnail.webp")
        let lapsed = JobCancellation()
        lapsed.extendLease(until: .now - .seconds(1))
        results = StillJobsHandler().run(together: [context(.thumbnail, cancellation: lapsed), context(.preview)])
        if case .failure(let error) = results[0] { #expect(error.code == .leaseLost) } else { Issue.record("the lapsed job must not complete") }
        #expect(try results[1].get().output["width"] == 1080)
        #expect(try inode("thumbnail.webp") == before)
        #expect(files() == ["preview.jpg", "thumbnail.webp"])

        // Both stopped: nothing is decoded or written.
        let both = [JobCancellation(), JobCancellation()]
        both[0].stop(.shutdown)
        both[1].stop(.cancelled)
        let previewBefore = try inode("preview.jpg")
        results = StillJobsHandler().run(together: [context(.thumbnail, cancellation: both[0]), context(.preview, cancellation: both[1])])
        #expect(results.map { (try? $0.get()) == nil } == [true, true])
        #expect(try inode("preview.jpg") == previewBefore)
    }

    @Test func rerunReplacesTheOutputAtomicallyAndLeavesNoTemporaries() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        let first = try inode("thumbnail.webp")
        _ = try ThumbnailHandler().run(context(.thumbnail))
        #expect(try inode("thumbnail.webp") != first, "replaced by rename, not rewritten in place")
        #expect(files() == ["thumbnail.webp"])
    }

    // Workers before still jobs were claimed together kept a manifest beside the outputs; the
    // next still job of the item deletes it.
    @Test func theRetiredManifestIsDeletedByTheNextStillJob() throws {
        try FileManager.default.createDirectory(atPath: itemDirectory, withIntermediateDirectories: true)
        try Data(#"{"version":1}"#.utf8).write(to: URL(fileURLWithPath: itemDirectory + "/stills.json"))
        _ = try PreviewHandler().run(context(.preview))
        #expect(files() == ["preview.jpg"])
    }

    @Test func settingsChooseSizeFormatAndQualityAndOldFormatsGo() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        var settings = StillImageSettings()
        settings.thumbnail = StillOutputSettings(maxLongEdge: 100, format: .png, quality: 50)
        let outcome = try ThumbnailHandler(settings: settings).run(context(.thumbnail))
        #expect(outcome.output["format"] == "png")
        #expect(outcome.output["width"] == 75 && outcome.output["height"] == 100)
        #expect(files() == ["thumbnail.png"], "the WebP of the old settings is gone")
    }

    @Test func cancelledJobLeavesNoFile() throws {
        let cancellation = JobCancellation()
        cancellation.stop(.cancelled)
        #expect(throws: JobError.self) { try ThumbnailHandler().run(context(.thumbnail, cancellation: cancellation)) }
        #expect(files().isEmpty)
        // A deadline that passes while the job runs stops it before anything is committed.
        let expired = JobCancellation(timeout: .zero)
        do {
            _ = try PreviewHandler().run(context(.preview, cancellation: expired))
            Issue.record("an expired job must not complete")
        } catch {
            #expect(error.code == .timeout)
        }
        #expect(files().filter { $0.hasPrefix(".") || $0.contains("preview") || $0.contains("thumbnail") }.isEmpty)
    }

    @Test func badInputFailsWithAStableCodeAndLeavesNoFile() throws {
        for (path, code) in [("text.jpg", JobError.Code.unsupportedFormat), ("broken.mp4", .corruptMedia)] {
            do {
                _ = try ThumbnailHandler().run(context(.thumbnail, path: path))
                Issue.record("\(path) must fail")
            } catch {
                #expect(error.code == code, "\(path): \(error)")
            }
        }
        #expect(files().isEmpty)
    }

    @Test func typesWhoseEncoderIsMissingAreNotServedAndOnlyAServedPairIsClaimedTogether() {
        var configuration = WorkerConfiguration(storage: StorageLayout(root: storage))
        var registry = HandlerRegistry()
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        HandlerRegistry.registerStillHandlers(in: &registry, configuration: configuration, encoderAvailable: { $0 != .webp }, logger: quiet)
        #expect(registry.types == [.preview], "each job writes only its own output, so it needs only its own encoder")
        #expect(registry.jointTypes(servedFrom: [.thumbnail, .preview]).isEmpty)
        registry = HandlerRegistry()
        HandlerRegistry.registerStillHandlers(in: &registry, configuration: configuration)
        #expect(registry.jointTypes(servedFrom: [.metadata, .thumbnail, .preview]) == [[.thumbnail, .preview]])
        #expect(registry.jointTypes(servedFrom: [.thumbnail]).isEmpty, "a worker serving thumbnails only claims them alone")
        configuration.stills.oneDecode = false
        registry = HandlerRegistry()
        HandlerRegistry.registerStillHandlers(in: &registry, configuration: configuration)
        #expect(registry.types == [.preview, .thumbnail])
        #expect(registry.jointTypes(servedFrom: [.thumbnail, .preview]).isEmpty)
        #expect(HandlerRegistry.production(for: configuration).types == [.metadata, .preview, .thumbnail, .transcode])
    }

    @Test func runOptionsConfigureOutputsTimeoutsAndTheDerivedRoot() async throws {
        let configuration = try await WorkerArguments.parse([
            "--storage-root", "/srv/media", "--derived-root", "/srv/media/cache/derived", "--type-timeouts", "thumbnail=5,transcode=7200",
            "--thumbnail-size", "256", "--thumbnail-format", "jpg", "--preview-quality", "90", "--decoder-threads", "2", "--job-timeout", "30",
        ], environment: [:])
        #expect(configuration.storage?.derivedRootRelativeToStorage == "cache/derived")
        #expect(configuration.stills.thumbnail == StillOutputSettings(maxLongEdge: 256, format: .jpeg, quality: 80))
        #expect(configuration.stills.preview.quality == 90)
        #expect(configuration.stills.decoderThreads == 2)
        #expect(configuration.timeout(for: .thumbnail) == .seconds(5))
        #expect(configuration.timeout(for: .transcode) == .seconds(7200))
        #expect(configuration.timeout(for: .preview) == .seconds(30), "--job-timeout beats the built-in default")
        #expect(try await WorkerArguments.parse(["--storage-root", "/srv/media"], environment: [:]).timeout(for: .preview) == .seconds(300))
        let global = try await WorkerArguments.parse(["--storage-root", "/srv/media", "--job-timeout", "30"], environment: [:])
        #expect(global.timeout(for: .transcode) == nil, "a global --job-timeout does not cap transcodes, which scale their own limit with duration")

        for bad in [["--derived-root", "/elsewhere"], ["--derived-root", "/srv/media/../x"], ["--thumbnail-format", "gif"], ["--preview-quality", "300"]] {
            await #expect(throws: WorkerConfigurationError.self, "\(bad)") { try await WorkerArguments.parse(["--storage-root", "/srv/media"] + bad, environment: [:]) }
        }
        do {
            _ = try await WorkerArguments.parse(["--storage-root", "/srv/media", "--derived-root", "/var/cache/x"], environment: [:])
        } catch {
            #expect(error.message.contains("must lie inside the storage root"))
        }
    }

    // The chaos suite's zombie: a run paused (SIGSTOP) past its lease wakes up with its outputs
    // encoded and about to be renamed, before its heartbeat has heard that another worker took
    // the job over. The run's own view of its lease must stop it before the rename.
    @Test func aRunWhoseLeaseRanOutCommitsNothingOverTheNewOwnersFiles() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        let before = try inode("thumbnail.webp")
        // Past the end of its lease as this process knows it: never extended since the claim.
        let lapsed = JobCancellation()
        lapsed.extendLease(until: .now - .seconds(1))
        #expect(throws: JobError.self) { try ThumbnailHandler().run(context(.thumbnail, path: "small.jpg", cancellation: lapsed)) }
        #expect(lapsed.stopReason == .leaseLost)
        #expect(try inode("thumbnail.webp") == before)
        #expect(files() == ["thumbnail.webp"])
        // A lease extended by a heartbeat keeps the run going.
        let renewed = JobCancellation()
        renewed.extendLease(until: .now - .seconds(1))
        renewed.extendLease(until: .now + .seconds(3600))
        renewed.extendLease(until: .now - .seconds(5))   // never moves backwards
        _ = try ThumbnailHandler().run(context(.thumbnail, path: "small.jpg", cancellation: renewed))
        #expect(try inode("thumbnail.webp") != before)
    }

    // A run killed with SIGKILL (or by the OOM killer, or a decoder crash) in the middle of a
    // write leaves its hidden temporary file. The job's next run removes it at once, whatever
    // its age; temporaries of the other job of the item, which may be running right now on
    // another worker, stay.
    @Test func theNextRunOfAJobRemovesTheTemporariesItsKilledRunLeft() throws {
        try FileManager.default.createDirectory(atPath: itemDirectory, withIntermediateDirectories: true)
        let killedThumbnail = ".thumbnail~thumbnail.webp.00112233aabbccdd.tmp"
        let runningPreview = ".preview~preview.jpg.8899aabbccddeeff.tmp"
        for name in [killedThumbnail, runningPreview] {
            try Data("half-written".utf8).write(to: URL(fileURLWithPath: itemDirectory + "/" + name))
        }
        _ = try ThumbnailHandler().run(context(.thumbnail))
        #expect(files() == [runningPreview, "thumbnail.webp"])
        // Run together, each output is written under its own job's name: the preview job's next
        // run is the one that removes the preview's leftover, and it leaves none of its own.
        _ = StillJobsHandler().run(together: [context(.thumbnail), context(.preview)])
        #expect(files() == ["preview.jpg", "thumbnail.webp"])
    }
}

/// The thumbnail job over the decoders that are not FFmpeg's: libheif (an iPhone-like grid HEIC
/// with irot) and libraw (a DNG's embedded preview with orientation 6), and the ThumbHash placeholder.
@Suite("Thumbnails of HEIC and camera RAW files, with a ThumbHash")
struct NonFFmpegStillTests {
    let storage: String
    let itemID = UUID().uuidString.lowercased()

    init() throws {
        let fixtures = try MediaFixtures.load()
        storage = try fixtures.makeScratchDirectory("stills-heif-raw")
        let committed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("MediaNestMediaTests/Fixtures")
        try FileManager.default.copyItem(atPath: committed.path + "/HEIF/iphone-grid-irot.heic", toPath: storage + "/photo.heic")
        try FileManager.default.copyItem(atPath: committed.path + "/RAW/preview-orient6.dng", toPath: storage + "/photo.dng")
    }

    func context(path: String, mime: String) -> JobContext {
        let job = ClaimedJob(id: UUID().uuidString, mediaItemID: itemID, type: .thumbnail, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: itemID, ownerID: "owner", filename: path, originalFilename: nil, mimeType: mime,
                                   fileSize: nil, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: storage), progress: JobProgress(),
                          cancellation: JobCancellation(), logger: TestLogging.logger())
    }

    @Test func aGridHEICWithIrotGetsAnUprightThumbnailAndAThumbHash() throws {
        let outcome = try ThumbnailHandler().run(context(path: "photo.heic", mime: "image/heic"))
        #expect(outcome.output["source_kind"] == "heif")
        // Stored 192×128 in tiles, irot makes it a 128×192 portrait; never upscaled.
        #expect(outcome.output["width"] == 128 && outcome.output["height"] == 192)
        let path = try #require(outcome.itemUpdate.thumbnailPath)
        let size = try #require(try cliImageSize(storage + "/" + path))
        #expect(size.width == 128 && size.height == 192)
        let hash = try #require(outcome.itemUpdate.metadataMerge["thumbhash"]?.stringValue)
        let bytes = try #require(Data(base64Encoded: hash))
        #expect(bytes.count >= 5 && bytes.count <= 25)
        // The placeholder keeps the portrait shape of the upright picture.
        #expect(ThumbHash.approximateAspectRatio(Array(bytes)) < 1)
    }

    @Test func aDNGUsesItsEmbeddedPreviewTurnedUpright() throws {
        let outcome = try ThumbnailHandler().run(context(path: "photo.dng", mime: "image/x-adobe-dng"))
        #expect(outcome.output["source_kind"] == "raw")
        #expect(outcome.output["orientation"] == 6)
        let width = try #require(outcome.output["width"]?.intValue)
        let height = try #require(outcome.output["height"]?.intValue)
        #expect(height > width, "orientation 6 turns the landscape preview into a portrait thumbnail")
    }
}

/// The thumbnail and preview jobs over videos and songs: a representative frame (never the black
/// fade-in), the video's trickplay sheets, cover art, and a waveform when a song has none.
@Suite("Thumbnails and previews of videos and songs")
struct AVStillHandlerTests {
    let fixtures: MediaFixtures
    let itemID = UUID().uuidString.lowercased()

    init() throws {
        fixtures = try MediaFixtures.loadStills()
    }

    func context(_ type: JobType, path: String, mime: String) -> JobContext {
        let job = ClaimedJob(id: UUID().uuidString, mediaItemID: itemID, type: type, attempt: 1, maxAttempts: 3, priority: 0, input: [:])
        let item = MediaItemRecord(id: itemID, ownerID: "owner", filename: path, originalFilename: nil, mimeType: mime,
                                   fileSize: nil, storagePath: path, metadata: [:])
        return JobContext(job: job, mediaItem: item, storage: StorageLayout(root: fixtures.root), progress: JobProgress(),
                          cancellation: JobCancellation(), logger: TestLogging.logger())
    }

    /// Decodes an output with the ffmpeg CLI to RGBA and returns its mean luma (0–255).
    func meanLuma(_ relative: String) throws -> Double {
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-i", fixtures.root + "/" + relative, "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        try #require(result.status == 0, "\(result.stderr)")
        let bytes = Array(result.stdout.utf8)
        try #require(!bytes.isEmpty)
        return Double(bytes.reduce(0) { $0 + Int($1) }) / Double(bytes.count)
    }

    @Test func aVideoThatStartsBlackGetsARealFrameAndItsPreviewComesWithTrickplaySheets() throws {
        let preview = try PreviewHandler().run(context(.preview, path: MediaFixtures.StillsName.blackStart, mime: "video/mp4"))
        #expect(preview.output["source_kind"] == "video")
        let previewPath = try #require(preview.itemUpdate.previewPath)
        #expect(try meanLuma(previewPath) > 40, "the fade-in is black; the chosen frame must not be")
        let trickplay = try #require(preview.itemUpdate.processingInfoMerge["trickplay"])
        #expect(trickplay == preview.output["trickplay"])
        // 8 s at one tile per 10 s: one tile on one sheet, at a path relative to the storage root.
        #expect(trickplay["count"] == 1)
        let sheets = try #require(trickplay["sheets"]?.arrayValue)
        try #require(sheets.count == 1)
        let sheet = try #require(sheets[0].stringValue)
        #expect(sheet.hasPrefix(".derived/") && sheet.hasSuffix("trickplay/sheet-000.jpg"))
        #expect(try cliImageSize(fixtures.root + "/" + sheet) != nil)
        // Claimed together, the thumbnail comes from the same frame, and the preview still gets its sheets.
        let together = StillJobsHandler().run(together: [context(.thumbnail, path: MediaFixtures.StillsName.blackStart, mime: "video/mp4"),
                                                         context(.preview, path: MediaFixtures.StillsName.blackStart, mime: "video/mp4")])
        let thumbnail = try together[0].get()
        #expect(thumbnail.output["decode"]?["jobs"] == ["thumbnail", "preview"])
        #expect(try meanLuma(try #require(thumbnail.itemUpdate.thumbnailPath)) > 40)
        #expect(try together[1].get().itemUpdate.processingInfoMerge["trickplay"]?["count"] == 1)
    }

    @Test func aSongWithCoverArtUsesTheArtAndOneWithoutGetsAWaveform() throws {
        let cover = try ThumbnailHandler().run(context(.thumbnail, path: MediaFixtures.StillsName.coverMP3, mime: "audio/mpeg"))
        #expect(cover.output["source_kind"] == "audio")
        #expect(cover.output["picture"] == "cover art")
        // The art is red over blue, 64×64: never upscaled.
        #expect(cover.output["width"] == 64 && cover.output["height"] == 64)

        let noArt = try ThumbnailHandler().run(context(.thumbnail, path: MediaFixtures.Name.flac, mime: "audio/flac"))
        #expect(noArt.output["picture"] == "waveform")
        #expect(noArt.output["width"] == 320 && noArt.output["height"] == 80)
        #expect(try cliImageSize(fixtures.root + "/" + (try #require(noArt.itemUpdate.thumbnailPath))) != nil)
    }

}
