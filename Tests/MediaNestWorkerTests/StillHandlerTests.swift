import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue
import MediaNestTestSupport
import MediaNestWorker
import Synchronization
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

    @Test func thumbnailJobWritesBothOutputsAndThePreviewJobTakesItsOwnWithoutDecoding() throws {
        let thumb = try ThumbnailHandler().run(context(.thumbnail))
        let relative = ".derived/\(itemID.prefix(2))/\(itemID)/thumbnail.webp"
        #expect(thumb.itemUpdate.thumbnailPath == relative)
        #expect(thumb.output["path"] == .string(relative))
        #expect(thumb.output["format"] == "webp")
        #expect(thumb.output["source_kind"] == "image")
        #expect(thumb.output["reused"] == false)
        #expect(thumb.output["orientation"] == 6)
        // Orientation 6: the 2000×1500 stored picture is shown 1500×2000, so 240×320.
        #expect(thumb.output["width"] == 240 && thumb.output["height"] == 320)
        let size = try #require(try cliImageSize(storage + "/" + relative))
        #expect(size.width == 240 && size.height == 320)
        #expect(thumb.output["bytes"]?.intValue == Int64(try Data(contentsOf: URL(fileURLWithPath: storage + "/" + relative)).count))
        let also = try #require(thumb.output["also_wrote"]?.arrayValue?.first)
        #expect(also["format"] == "jpeg" && also["width"] == 1080 && also["height"] == 1440)
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.webp"])
        let previewInode = try inode("preview.jpg")

        let preview = try PreviewHandler().run(context(.preview))
        #expect(preview.output["reused"] == true)
        #expect(preview.itemUpdate.previewPath == ".derived/\(itemID.prefix(2))/\(itemID)/preview.jpg")
        #expect(preview.output["width"] == 1080 && preview.output["height"] == 1440)
        #expect(try inode("preview.jpg") == previewInode, "taken as made, not rewritten")
        let previewSize = try #require(try cliImageSize(itemDirectory + "/preview.jpg"))
        #expect(previewSize.width == 1080 && previewSize.height == 1440)
    }

    @Test func rerunReplacesTheOutputAtomicallyAndLeavesNoTemporaries() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        let first = try inode("thumbnail.webp")
        let again = try ThumbnailHandler().run(context(.thumbnail))
        #expect(again.output["reused"] == false, "a re-run renders its own output again")
        #expect(again.output["also_wrote"] == nil, "the preview is current, so only the thumbnail is decoded")
        #expect(try inode("thumbnail.webp") != first, "replaced by rename, not rewritten in place")
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.webp"])
    }

    @Test func changedSourceMakesTheSiblingOutputStale() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        // Replace the photo with a smaller one: a new inode, size and mtime.
        try FileManager.default.removeItem(atPath: storage + "/photo.jpg")
        try FileManager.default.copyItem(atPath: storage + "/small.jpg", toPath: storage + "/photo.jpg")
        let preview = try PreviewHandler().run(context(.preview))
        #expect(preview.output["reused"] == false)
        #expect(preview.output["width"] == 64 && preview.output["height"] == 32, "never upscaled")
    }

    @Test func settingsChooseSizeFormatAndQualityAndOldFormatsGo() throws {
        _ = try ThumbnailHandler().run(context(.thumbnail))
        var settings = StillImageSettings()
        settings.thumbnail = StillOutputSettings(maxLongEdge: 100, format: .png, quality: 50)
        let outcome = try ThumbnailHandler(settings: settings).run(context(.thumbnail))
        #expect(outcome.output["format"] == "png")
        #expect(outcome.output["width"] == 75 && outcome.output["height"] == 100)
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.png"])
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
        #expect(files().filter { $0 != "stills.json" }.isEmpty)
    }

    @Test func typesWhoseEncoderIsMissingAreNotServed() {
        var configuration = WorkerConfiguration(storage: StorageLayout(root: storage))
        var registry = HandlerRegistry()
        HandlerRegistry.registerStillHandlers(in: &registry, configuration: configuration, encoderAvailable: { $0 != .webp })
        #expect(registry.types.isEmpty, "both jobs may write the WebP thumbnail")
        configuration.stills.oneDecode = false
        registry = HandlerRegistry()
        HandlerRegistry.registerStillHandlers(in: &registry, configuration: configuration, encoderAvailable: { $0 != .webp })
        #expect(registry.types == [.preview])
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
        let manifest = try Data(contentsOf: URL(fileURLWithPath: itemDirectory + "/stills.json"))
        // Past the end of its lease as this process knows it: never extended since the claim.
        let lapsed = JobCancellation()
        lapsed.extendLease(until: .now - .seconds(1))
        #expect(throws: JobError.self) { try ThumbnailHandler().run(context(.thumbnail, path: "small.jpg", cancellation: lapsed)) }
        #expect(lapsed.stopReason == .leaseLost)
        #expect(try inode("thumbnail.webp") == before)
        #expect(try Data(contentsOf: URL(fileURLWithPath: itemDirectory + "/stills.json")) == manifest)
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.webp"])
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
        let killedThumbnailsPreview = ".thumbnail~preview.jpg.0011223344556677.tmp"
        let runningPreview = ".preview~preview.jpg.8899aabbccddeeff.tmp"
        for name in [killedThumbnail, killedThumbnailsPreview, runningPreview] {
            try Data("half-written".utf8).write(to: URL(fileURLWithPath: itemDirectory + "/" + name))
        }
        _ = try ThumbnailHandler().run(context(.thumbnail))
        #expect(files() == [runningPreview, "preview.jpg", "stills.json", "thumbnail.webp"])
        // What this run wrote was named after its writer too, and committed: nothing of its own is left.
        let directory = try DerivedDirectory.forMediaItem(itemID, derivedRoot: storage + "/.derived", writtenBy: "preview")
        #expect(directory.removeTemporariesOfEarlierRuns() == 1)
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.webp"])
    }

    // The chaos suite found the thumbnail job on one worker renaming its preview (made from the
    // same decode) over the preview job's output on another worker after that job was final.
    // The two jobs now take turns on the item's directory lock across processes: while another
    // handle (another worker's job) holds it, a still job writes nothing, and a stop ends its wait.
    @Test func aStillJobWaitsForTheItemsDirectoryLockHeldByAnotherWorker() throws {
        var otherWorker: DerivedDirectory? = try DerivedDirectory.forMediaItem(itemID, derivedRoot: storage + "/.derived")
        #expect(try otherWorker?.lockExclusively(waitingAtMost: .zero, cancellation: JobCancellation()) == true)
        let waiting = JobCancellation()
        let result = Mutex<Result<JobOutcome, JobError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let job = context(.preview, cancellation: waiting)
        Thread.detachNewThread {
            let outcome = Result { () throws(JobError) in try PreviewHandler().run(job) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        // However long it is given, it gets no further than the lock: it has not started to
        // decode (its first progress report) and has written nothing.
        Thread.sleep(forTimeInterval: 1)
        #expect(job.progress.current.snapshot == nil)
        #expect(files() == [])
        waiting.stop(.cancelled)
        done.wait()
        let stopped = try #require(result.withLock { $0 })
        #expect(throws: JobError.self) { try stopped.get() }
        #expect(files() == [])
        // A second handle on the same directory cannot take the lock either, without waiting.
        var third: DerivedDirectory? = try DerivedDirectory.forMediaItem(itemID, derivedRoot: storage + "/.derived")
        #expect(try third?.lockExclusively(waitingAtMost: .zero, cancellation: JobCancellation()) == false)
        // Once the other worker is done with it (its handle closed), the job runs.
        otherWorker = nil
        third = nil
        _ = try PreviewHandler().run(context(.preview))
        #expect(files() == ["preview.jpg", "stills.json", "thumbnail.webp"])
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
        // The thumbnail was made from the same decode and is taken without decoding again.
        let thumbnail = try ThumbnailHandler().run(context(.thumbnail, path: MediaFixtures.StillsName.blackStart, mime: "video/mp4"))
        #expect(thumbnail.output["reused"] == true)
        #expect(try meanLuma(try #require(thumbnail.itemUpdate.thumbnailPath)) > 40)
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
