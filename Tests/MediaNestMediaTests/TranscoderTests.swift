import Dispatch
import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Synchronization
import Testing

/// Clips for the transcode tests, generated once per process with the ffmpeg CLI (small and fast).
final class TranscodeClips: Sendable {
    let root: String
    static let hevc10 = "hevc10-opus.mkv"
    static let h264MKV = "h264-aac.mkv"
    static let pq = "pq.mkv"
    static let long = "long-60s.avi"
    static let corruptTS = "corrupt.ts"

    private init(root: String) { self.root = root }
    func path(_ name: String) -> String { root + "/" + name }

    static func load() throws -> TranscodeClips { try shared.get() }

    private static let shared: Result<TranscodeClips, FixtureError> = Result { () throws(FixtureError) -> TranscodeClips in
        let fixtures: MediaFixtures
        let root: String
        do {
            fixtures = try MediaFixtures.load()
            root = try fixtures.makeScratchDirectory("transcode-clips")
        } catch {
            throw FixtureError("cannot prepare the transcode clips: \(error)")
        }
        let clips = TranscodeClips(root: root)
        let q = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1"]
        let lavfi = { (source: String) in ["-f", "lavfi", "-i", source] }
        let jobs: [[String]] = [
            q + lavfi("testsrc2=size=320x180:rate=30:duration=2") + lavfi("sine=frequency=440:sample_rate=48000:duration=2")
                + ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
                   "-c:a", "libopus", "-ac", "2", clips.path(hevc10)],
            q + lavfi("testsrc2=size=320x180:rate=30:duration=2") + lavfi("sine=frequency=440:sample_rate=48000:duration=2")
                + ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-c:a", "aac", "-ac", "2", clips.path(h264MKV)],
            q + lavfi("testsrc2=size=160x90:rate=25:duration=1")
                + ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                   "-x265-params", "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
                   "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", clips.path(pq)],
            q + lavfi("testsrc2=size=96x54:rate=25:duration=60") + lavfi("sine=frequency=440:sample_rate=44100:duration=60")
                + ["-c:v", "mpeg4", "-q:v", "10", "-c:a", "libmp3lame", "-b:a", "48k", clips.path(long)],
            q + lavfi("testsrc2=size=160x90:rate=25:duration=3") + lavfi("sine=frequency=440:sample_rate=48000:duration=3")
                + ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac", "-f", "mpegts", clips.path(corruptTS)],
        ]
        let failures = Mutex<[FixtureError]>([])
        DispatchQueue.concurrentPerform(iterations: jobs.count) { index in
            do throws(FixtureError) {
                let result = try ProcessRunner.run("/usr/bin/ffmpeg", jobs[index])
                if result.status != 0 { throw FixtureError("ffmpeg \(jobs[index].joined(separator: " ")): \(result.stderr)") }
            } catch { failures.withLock { $0.append(error) } }
        }
        if let first = failures.withLock({ $0.first }) { throw first }
        // Damage the middle of the transport stream: whole 188-byte packets of noise.
        do {
            let url = URL(fileURLWithPath: clips.path(corruptTS))
            var data = try Data(contentsOf: url)
            var generator = SystemRandomNumberGenerator()
            let start = (data.count / 2 / 188) * 188
            for offset in start..<min(start + 188 * 12, data.count) { data[offset] = UInt8.random(in: 0...255, using: &generator) }
            try data.write(to: url)
        } catch {
            throw FixtureError("cannot damage \(corruptTS): \(error)")
        }
        return clips
    }
}

/// ffprobe as an independent check of what the pipeline wrote.
enum FFprobe {
    static func json(_ path: String, _ arguments: [String]) throws -> [String: Any] {
        let result = try ProcessRunner.run("/usr/bin/ffprobe", ["-v", "error", "-of", "json"] + arguments + [path])
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw FixtureError("ffprobe \(path) failed: \(result.stderr)")
        }
        return object
    }

    /// Streams with decoded frame counts (every frame decoded).
    static func streams(_ path: String) throws -> [[String: Any]] {
        try json(path, ["-count_frames", "-show_streams"])["streams"] as? [[String: Any]] ?? []
    }

    static func number(_ value: Any?) -> Double? {
        if let text = value as? String { return Double(text) }
        return (value as? NSNumber)?.doubleValue
    }

    /// The MD5 of every packet of the first stream of `type` (v or a), in order.
    static func packetHashes(_ path: String, _ type: String) throws -> [String] {
        let packets = try json(path, ["-select_streams", "\(type):0", "-show_entries", "packet=data_hash", "-show_data_hash", "MD5"])["packets"] as? [[String: Any]] ?? []
        return packets.compactMap { $0["data_hash"] as? String }
    }

    /// Decodes every frame with the ffmpeg CLI and returns its error lines.
    static func decodeErrors(_ path: String) throws -> String {
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-nostdin", "-i", path, "-f", "null", "-"])
        return result.status == 0 ? result.stderr : "exit \(result.status): \(result.stderr)"
    }

    /// Mean luma (8-bit scale) of the first frame.
    static func meanLuma(_ path: String, filter: String = "") throws -> Double {
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-nostdin", "-i", path, "-vf", filter + "signalstats,metadata=print:key=lavfi.signalstats.YAVG",
                                                              "-frames:v", "1", "-f", "null", "-"])
        guard let line = result.stderr.split(separator: "\n").first(where: { $0.contains("YAVG=") }),
              let value = Double(line.split(separator: "=").last ?? "") else {
            throw FixtureError("no YAVG for \(path): \(result.stderr.suffix(500))")
        }
        return value
    }
}

@Suite("Transcoder", .serialized)
struct TranscoderTests {
    let logger = TestLogging.logger("medianest.tests.transcode")

    /// Runs the policy and pipeline on `path`, into a fresh directory; returns the decision,
    /// the result and the output path (nil when no rendition was needed).
    func transcode(_ root: String, _ name: String, settings: TranscodeSettings = TranscodeSettings(),
                   progress: JobProgress? = nil, cancellation: JobCancellation? = nil) throws -> (TranscodeDecision, TranscodeResult?, String?, String) {
        let outputRoot = try MediaFixtures.load().makeScratchDirectory("transcode-out")
        let file = try SafeFile.open(relativePath: name, in: root)
        let (_, decision) = try Transcoder.plan(file, settings: settings, cancellation: cancellation)
        guard decision.action != .none else { return (decision, nil, nil, outputRoot) }
        let directory = try DerivedDirectory.open(derivedRoot: outputRoot, components: [])
        let output = try directory.createOutput(named: "web.\(decision.container.fileExtension)")
        let result = try Transcoder.run(file, decision: decision, settings: settings, output: output, progress: progress,
                                        cancellation: cancellation, logger: logger)
        try output.commit()
        return (decision, result, outputRoot + "/" + output.name, outputRoot)
    }

    func stream(_ streams: [[String: Any]], _ type: String) throws -> [String: Any] {
        try #require(streams.first { $0["codec_type"] as? String == type })
    }

    @Test func hevcTenBitMatroskaBecomesEightBitH264MP4WithTheSameDurationAndMoovFirst() throws {
        let clips = try TranscodeClips.load()
        let (decision, result, path, _) = try transcode(clips.root, TranscodeClips.hevc10)
        #expect(decision.action == .transcode)
        let output = try #require(path)
        let video = try stream(try FFprobe.streams(output), "video")
        #expect(video["codec_name"] as? String == "h264")
        #expect(video["pix_fmt"] as? String == "yuv420p")
        #expect(video["profile"] as? String != "High 10")
        let source = try stream(try FFprobe.streams(clips.path(TranscodeClips.hevc10)), "video")
        // Every frame survives.
        #expect(video["nb_read_frames"] as? String == source["nb_read_frames"] as? String)
        let audio = try stream(try FFprobe.streams(output), "audio")
        #expect(audio["codec_name"] as? String == "aac")
        #expect(audio["channels"] as? Int == 2)
        // Duration within one frame (1/30 s).
        let format = try FFprobe.json(output, ["-show_format"])["format"] as? [String: Any]
        let duration = try #require(FFprobe.number(format?["duration"]))
        #expect(abs(duration - 2.0) <= 1.0 / 30 + 0.001, "duration \(duration)")
        #expect(abs((result?.duration ?? 0) - 2.0) <= 1.0 / 30 + 0.001)
        // moov before mdat: playable while downloading.
        let head = try #require(FileHandle(forReadingAtPath: output)).readData(ofLength: 64)
        #expect(atomOrder(head).prefix(2) == ["ftyp", "moov"])
        #expect(try FFprobe.decodeErrors(output).isEmpty)
    }

    @Test func h264AacMatroskaIsRemuxedWithIdenticalPackets() throws {
        let clips = try TranscodeClips.load()
        let (decision, result, path, _) = try transcode(clips.root, TranscodeClips.h264MKV)
        #expect(decision.action == .remux)
        let output = try #require(path)
        let source = clips.path(TranscodeClips.h264MKV)
        let videoIn = try FFprobe.packetHashes(source, "v")
        #expect(!videoIn.isEmpty)
        #expect(try FFprobe.packetHashes(output, "v") == videoIn)
        #expect(try FFprobe.packetHashes(output, "a") == (try FFprobe.packetHashes(source, "a")))
        #expect(result?.videoFrames == videoIn.count)
        #expect(try FFprobe.decodeErrors(output).isEmpty)
    }

    @Test func anH264AacMP4NeedsNoRendition() throws {
        let fixtures = try MediaFixtures.load()
        let (decision, result, path, _) = try transcode(fixtures.root, MediaFixtures.Name.plainMP4)
        #expect(decision.action == .none)
        #expect(decision.reason.contains("Already playable"))
        #expect(result == nil && path == nil)
    }

    @Test func aRotatedPhoneVideoKeepsItsDisplayMatrixSoItPlaysUpright() throws {
        let fixtures = try MediaFixtures.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, _, path, outputRoot) = try transcode(fixtures.root, MediaFixtures.Name.rotatedMP4, settings: settings)
        let output = try #require(path)
        let input = try MediaInput.open(try SafeFile.open(relativePath: "web.mp4", in: outputRoot))
        let video = try #require(input.probe().primaryVideo)
        _ = output
        #expect(video.rotation == 90)
        #expect(video.displayWidth == 32 && video.displayHeight == 64)
    }

    @Test func locationTagsAreStrippedByDefaultAndOtherTagsKept() throws {
        let fixtures = try MediaFixtures.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, _, path, _) = try transcode(fixtures.root, MediaFixtures.Name.plainMP4, settings: settings)
        let tags = (try FFprobe.json(try #require(path), ["-show_format"])["format"] as? [String: Any])?["tags"] as? [String: Any] ?? [:]
        #expect(tags["title"] as? String == "Fixture Clip")
        #expect(!tags.keys.contains { $0.lowercased().contains("location") })
        settings.stripLocation = false
        let (_, _, kept, _) = try transcode(fixtures.root, MediaFixtures.Name.plainMP4, settings: settings)
        let keptTags = (try FFprobe.json(try #require(kept), ["-show_format"])["format"] as? [String: Any])?["tags"] as? [String: Any] ?? [:]
        #expect(keptTags.keys.contains { $0.lowercased().contains("location") })
    }

    @Test func vp9OpusWebMWithOptimalPolicyAndASmallTargetIsDownscaled() throws {
        let fixtures = try MediaFixtures.load()
        var settings = TranscodeSettings()
        settings.mode = .optimal
        settings.maxResolution = 16
        let (decision, result, path, _) = try transcode(fixtures.root, MediaFixtures.Name.vp9WebM, settings: settings)
        #expect(decision.action == .transcode)
        let video = try stream(try FFprobe.streams(try #require(path)), "video")
        #expect(video["width"] as? Int == 32)
        #expect(video["height"] as? Int == 16)
        #expect(result?.width == 32 && result?.height == 16)
    }

    @Test func aPQClipIsToneMappedToBT709NotLeftGrey() throws {
        let clips = try TranscodeClips.load()
        let (decision, _, path, _) = try transcode(clips.root, TranscodeClips.pq)
        #expect(decision.toneMap)
        let output = try #require(path)
        let video = try stream(try FFprobe.streams(output), "video")
        #expect(video["color_transfer"] as? String == "bt709")
        #expect(video["color_primaries"] as? String == "bt709")
        let luma = try FFprobe.meanLuma(output)
        // The PQ code values read as if they were SDR (what a player without tone-mapping shows).
        let untouched = try FFprobe.meanLuma(clips.path(TranscodeClips.pq), filter: "format=yuv420p,")
        #expect(luma > 30 && luma < 200, "mean luma \(luma)")
        #expect(untouched - luma > 15, "tone-mapped \(luma) vs untouched \(untouched)")
    }

    @Test func aClipDamagedMidStreamStillYieldsAValidOutput() throws {
        let clips = try TranscodeClips.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, result, path, _) = try transcode(clips.root, TranscodeClips.corruptTS, settings: settings)
        let output = try #require(path)
        #expect(try FFprobe.decodeErrors(output).isEmpty)
        let video = try stream(try FFprobe.streams(output), "video")
        let frames = Int(video["nb_read_frames"] as? String ?? "") ?? 0
        // 75 frames in the source: most survive around the damage.
        #expect(frames > 50, "\(frames) frames")
        #expect(result?.videoFrames == frames)
    }

    @Test func aSourceThatCannotBeDecodedAtAllIsCorruptMedia() throws {
        let clips = try TranscodeClips.load()
        let scratch = try MediaFixtures.load().makeScratchDirectory("undecodable")
        // A valid Matroska header (tracks and codec parameters) followed by noise instead of clusters.
        let source = try Data(contentsOf: URL(fileURLWithPath: clips.path(TranscodeClips.h264MKV)))
        let cluster = try #require(source.firstRange(of: Data([0x1F, 0x43, 0xB6, 0x75])))
        var data = source.prefix(upTo: cluster.lowerBound)
        var generator = SystemRandomNumberGenerator()
        data.append(contentsOf: (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try data.write(to: URL(fileURLWithPath: scratch + "/noise.mkv"))
        var settings = TranscodeSettings()
        settings.mode = .always
        let error = jobError { () throws(JobError) in
            do { _ = try transcode(scratch, "noise.mkv", settings: settings) } catch let error as JobError { throw error } catch {
                Issue.record("unexpected \(error)")
            }
        }
        #expect(error?.code == .corruptMedia, "\(String(describing: error))")
    }

    @Test func cancellingMidEncodeLeavesNoFile() throws {
        let clips = try TranscodeClips.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let outputRoot = try MediaFixtures.load().makeScratchDirectory("transcode-cancel")
        let file = try SafeFile.open(relativePath: TranscodeClips.long, in: clips.root)
        let cancellation = JobCancellation()
        let progress = JobProgress()
        let (_, decision) = try Transcoder.plan(file, settings: settings)
        let directory = try DerivedDirectory.open(derivedRoot: outputRoot, components: [])
        // Cancel as soon as the encode has reported progress with frames: mid-encode for sure.
        let watcher = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            while true {
                if case .int(let frames)? = progress.current.snapshot?.details["frames"], frames > 0 {
                    cancellation.stop(.cancelled)
                    break
                }
                usleep(1000)
            }
            watcher.signal()
        }
        let error = jobError { () throws(JobError) in
            let output = try directory.createOutput(named: "web.mp4")
            _ = try Transcoder.run(file, decision: decision, settings: settings, output: output, progress: progress,
                                   cancellation: cancellation, logger: logger)
            try output.commit()
        }
        watcher.wait()
        #expect(error?.code == .cancelled)
        #expect(directory.fileNames().isEmpty, "\(directory.fileNames())")
    }

    @Test func theTimeLimitScalesWithDurationAndStopsTheEncodeWithNoFileLeft() throws {
        let clips = try TranscodeClips.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        // 60 s of media × 1 ms per second: a 60 ms budget no encode of the clip fits in.
        settings.timeoutBase = .zero
        settings.timeoutPerSecond = 0.001
        let outputRoot = try MediaFixtures.load().makeScratchDirectory("transcode-timeout")
        let directory = try DerivedDirectory.open(derivedRoot: outputRoot, components: [])
        let cancellation = JobCancellation()
        let error = jobError { () throws(JobError) in
            let job = try TranscodeJob(try SafeFile.open(relativePath: TranscodeClips.long, in: clips.root), settings: settings, cancellation: cancellation)
            let output = try directory.createOutput(named: "web.mp4")
            _ = try job.run(output: output, logger: logger)
            try output.commit()
        }
        #expect(error?.code == .timeout)
        #expect(cancellation.stopReason == .timeout, "the job's token carries the reason to the engine")
        #expect(directory.fileNames().isEmpty)
    }

    @Test func audioAndVideoStayInSyncAtTheEndOfASixtySecondClip() throws {
        let clips = try TranscodeClips.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, _, path, _) = try transcode(clips.root, TranscodeClips.long, settings: settings)
        let streams = try FFprobe.streams(try #require(path))
        let video = try stream(streams, "video")
        let audio = try stream(streams, "audio")
        let videoStart = try #require(FFprobe.number(video["start_time"]))
        let audioStart = try #require(FFprobe.number(audio["start_time"]))
        let videoEnd = videoStart + (try #require(FFprobe.number(video["duration"])))
        let audioEnd = audioStart + (try #require(FFprobe.number(audio["duration"])))
        #expect(abs(videoStart - audioStart) <= 0.040, "start: video \(videoStart), audio \(audioStart)")
        #expect(abs(videoEnd - audioEnd) <= 0.040, "end: video \(videoEnd), audio \(audioEnd)")
        let source = try stream(try FFprobe.streams(clips.path(TranscodeClips.long)), "video")
        #expect(video["nb_read_frames"] as? String == source["nb_read_frames"] as? String)
    }

    @Test func variableFrameRateKeepsEveryFrameAtItsTime() throws {
        let scratch = try MediaFixtures.load().makeScratchDirectory("vfr")
        // 10 fps for two seconds, then 50 fps for two seconds, with B-frames.
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                                                            "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=50:duration=4",
                                                            "-vf", "select='if(lt(t,2),not(mod(n,5)),1)'", "-fps_mode", "vfr",
                                                            "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", scratch + "/vfr.mkv"])
        #expect(made.status == 0, "\(made.stderr)")
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, result, path, _) = try transcode(scratch, "vfr.mkv", settings: settings)
        let output = try #require(path)
        let frames = try FFprobe.json(output, ["-select_streams", "v", "-show_entries", "frame=best_effort_timestamp_time"])["frames"] as? [[String: Any]] ?? []
        let times = frames.compactMap { FFprobe.number($0["best_effort_timestamp_time"]) }
        #expect(times.count == 120)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 < $1 }, "monotonic")
        try #require(times.count == 120)
        #expect(abs(times[19] - 1.9) < 0.002 && abs(times[20] - 2.0) < 0.002 && abs(times[119] - 3.98) < 0.002, "\(times[19]) \(times[20]) \(times[119])")
        #expect(abs((result?.duration ?? 0) - 4.0) <= 0.02)
    }

    @Test func anEditListCutKeepsOnlyThePresentedFrames() throws {
        let fixtures = try MediaFixtures.load()
        let scratch = try fixtures.makeScratchDirectory("editlist")
        // A copy cut off a non-keyframe: the MP4 gets an edit list that hides the leading frames.
        let made = try ProcessRunner.run("/usr/bin/ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-ss", "0.53",
                                                            "-i", fixtures.path(MediaFixtures.Name.plainMP4), "-c", "copy", scratch + "/cut.mp4"])
        #expect(made.status == 0, "\(made.stderr)")
        var settings = TranscodeSettings()
        settings.mode = .always
        let (_, _, path, _) = try transcode(scratch, "cut.mp4", settings: settings)
        let source = try stream(try FFprobe.streams(scratch + "/cut.mp4"), "video")
        let video = try stream(try FFprobe.streams(try #require(path)), "video")
        #expect(video["nb_read_frames"] as? String == source["nb_read_frames"] as? String)
        let sourceDuration = try #require(FFprobe.number(source["duration"]))
        let outputDuration = try #require(FFprobe.number(video["duration"]))
        #expect(abs(sourceDuration - outputDuration) <= 1.0 / 25 + 0.001, "\(sourceDuration) vs \(outputDuration)")
    }

    @Test func progressReportsFramesSpeedOutTimeAndFraction() throws {
        let clips = try TranscodeClips.load()
        var settings = TranscodeSettings()
        settings.mode = .always
        let progress = JobProgress()
        _ = try transcode(clips.root, TranscodeClips.hevc10, settings: settings, progress: progress)
        let snapshot = try #require(progress.current.snapshot)
        #expect(snapshot.stage == "transcoding")
        #expect(snapshot.fraction.map { $0 > 0.95 } == true)
        #expect(snapshot.details["frames"] == .int(60))
        #expect(snapshot.details["out_time"]?.stringValue?.hasPrefix("00:00:02") == true)
        #expect(snapshot.details["speed"]?.doubleValue.map { $0 > 0 } == true)
    }

    @Test func audioOnlyFlacBecomesAacInM4A() throws {
        let fixtures = try MediaFixtures.load()
        let (decision, result, path, _) = try transcode(fixtures.root, MediaFixtures.Name.flac)
        #expect(decision.container == .m4a)
        let output = try #require(path)
        #expect(output.hasSuffix(".m4a"))
        let streams = try FFprobe.streams(output)
        #expect(streams.count == 1)
        #expect(streams.first?["codec_name"] as? String == "aac")
        #expect(abs((result?.duration ?? 0) - 1.0) < 0.03)
    }

    func atomOrder(_ data: Data) -> [String] {
        var types: [String] = []
        var offset = 0
        let bytes = [UInt8](data)
        while offset + 8 <= bytes.count {
            let size = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            types.append(String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self))
            guard size >= 8 else { break }
            offset += size
        }
        return types
    }
}
