import Foundation
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Hostile input fails with the right code and never reaches outside the file")
struct HostileInputTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    func code(_ name: String, declared: String = "video/mp4", limits: MediaLimits = .default, cancellation: JobCancellation? = nil) -> JobError.Code? {
        jobError { () throws(JobError) in _ = try extract(fixtures, name, declared: declared, limits: limits, cancellation: cancellation) }?.code
    }

    /// The escape watchers of MediaNestTestSupport (EscapeWatchers.swift).
    typealias Listener = LoopbackListener

    func hostileRoot(playlist: String, listener: Listener) throws -> (root: String, outside: String) {
        let root = try fixtures.makeScratchDirectory("hls-root")
        let outside = try fixtures.makeScratchDirectory("hls-outside")
        try FileManager.default.copyItem(atPath: fixtures.outside + "/" + Name.secretOutside, toPath: outside + "/segment.ts")
        try playlist.replacingOccurrences(of: "PORT", with: String(listener.port)).replacingOccurrences(of: "OUTSIDE", with: outside)
            .write(toFile: root + "/movie.mp4", atomically: true, encoding: .utf8)
        return (root, outside)
    }

    static let hls = """
        #EXTM3U
        #EXT-X-VERSION:3
        #EXT-X-TARGETDURATION:2
        #EXT-X-MEDIA-SEQUENCE:0
        #EXTINF:1.0,
        OUTSIDE/segment.ts
        #EXTINF:1.0,
        file:OUTSIDE/segment.ts
        #EXTINF:1.0,
        http://127.0.0.1:PORT/segment.ts
        #EXT-X-ENDLIST

        """

    @Test func hlsPlaylistNamedMP4IsUnsupportedAndNothingItReferencesIsOpened() throws {
        let listener = try Listener()
        let (root, outside) = try hostileRoot(playlist: Self.hls, listener: listener)
        let watch = try OpenWatch(directory: outside)
        let error = jobError { () throws(JobError) in
            _ = try MetadataExtractor.extract(root: root, relativePath: "movie.mp4", declaredMimeType: "video/mp4")
        }
        #expect(error?.code == .unsupportedFormat)
        #expect(error?.message.contains("movie.mp4") == true)
        #expect(!listener.wasContacted, "the playlist's http:// entry was fetched")
        #expect(!watch.sawOpen, "a file outside the storage root was opened")

        // Control: the detectors do notice an open and a connection.
        _ = FileManager.default.contents(atPath: outside + "/segment.ts")
        #expect(watch.sawOpen)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = listener.port.bigEndian
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(connected == 0)
        #expect(listener.wasContacted)
    }

    @Test func ffmpegLayerAloneRefusesPlaylistsWithoutFollowingThem() throws {
        // The extractor refuses playlists before FFmpeg sees them; this checks FFmpeg's own guard.
        let listener = try Listener()
        let concat = "ffconcat version 1.0\nfile 'OUTSIDE/segment.ts'\nfile 'http://127.0.0.1:PORT/x.ts'\n"
        for playlist in [Self.hls, concat] {
            let (root, outside) = try hostileRoot(playlist: playlist, listener: listener)
            let watch = try OpenWatch(directory: outside)
            let error = jobError { () throws(JobError) in
                let file = try SafeFile.open(relativePath: "movie.mp4", in: root)
                _ = try MediaInput.open(file)
            }
            #expect(error?.code == .unsupportedFormat, "\(String(describing: error))")
            #expect(!listener.wasContacted)
            #expect(!watch.sawOpen)
        }
    }

    @Test func randomBytesAreUnsupportedFormat() {
        #expect(code(Name.randomBytes) == .unsupportedFormat)
    }

    @Test func textNamedJPEGIsMimeMismatch() {
        let error = jobError { () throws(JobError) in _ = try extract(fixtures, Name.textAsJPEG, declared: "image/jpeg") }
        #expect(error?.code == .mimeMismatch)
        #expect(error?.message.contains("image/jpeg") == true)
        #expect(error?.message.contains("text/plain") == true)
    }

    @Test func zipNamedPNGIsMimeMismatch() {
        #expect(code(Name.zipAsPNG, declared: "image/png") == .mimeMismatch)
    }

    @Test func truncatedMP4IsCorruptMedia() {
        #expect(code(Name.truncatedMP4) == .corruptMedia)
    }

    @Test func emptyFileIsEmptyFile() {
        #expect(code(Name.emptyFile) == .emptyFile)
    }

    @Test func hostilePathsAreRefusedByTheExtractorToo() {
        #expect(code("../outside/" + Name.secretOutside) == .pathOutsideStorage)
        #expect(code(Name.escapingLink) == .pathOutsideStorage)
        #expect(code(Name.insideLink) == .pathOutsideStorage)
        #expect(code(Name.directory) == .notARegularFile)
        #expect(code(Name.fifo) == .notARegularFile)
    }

    @Test(arguments: [Name.rotatedMP4, Name.plainJPEG, Name.png8, Name.hevc10MKV])
    func framesOverThePixelLimitFailBeforeDecoding(name: String) {
        let error = jobError { () throws(JobError) in _ = try extract(fixtures, name, limits: MediaLimits(maxPixels: 1000)) }
        #expect(error?.code == .pixelLimit)
        #expect(error?.message.contains("1000 pixels") == true)
    }

    @Test func mediaOverTheDurationLimitFails() {
        let error = jobError { () throws(JobError) in _ = try extract(fixtures, Name.flac, limits: MediaLimits(maxDuration: .milliseconds(500))) }
        #expect(error?.code == .durationLimit)
    }

    @Test func pastDeadlineStopsTheProbeWithTimeout() throws {
        let file = try SafeFile.open(relativePath: Name.rotatedMP4, in: fixtures.root)
        let error = jobError { () throws(JobError) in _ = try MediaInput.open(file, cancellation: JobCancellation(timeout: .zero)) }
        #expect(error?.code == .timeout)
        #expect(code(Name.rotatedMP4, cancellation: JobCancellation(timeout: .zero)) == .timeout)
    }

    @Test func limitsTimeoutAloneAlsoStopsTheJob() {
        let cancellation = JobCancellation()
        #expect(code(Name.rotatedMP4, limits: MediaLimits(timeout: .zero), cancellation: cancellation) == .timeout)
        #expect(cancellation.stopReason == .timeout)
    }

    @Test(arguments: [StopReason.cancelled, .shutdown, .leaseLost])
    func stopReasonsSurfaceAsTheirOwnCodes(reason: StopReason) {
        let cancellation = JobCancellation()
        cancellation.stop(reason)
        #expect(code(Name.rotatedMP4, cancellation: cancellation) == reason.error.code)
    }
}
