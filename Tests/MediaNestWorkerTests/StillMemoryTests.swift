import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MediaNestCore
import MediaNestTestSupport
import Testing

/// The memory a still costs at its peak, per source pixel, measured where it cannot be confused
/// with other tests: in a child process of the real binary (`medianest-worker thumbnail` and
/// `probe`), whose peak RSS `wait4` reports. The sources are generated here at 20 MP (5472×3648,
/// a camera's size) in 8, 10 and 16 bits.
@Suite("peak memory of stills per source pixel", .enabled(if: executablesAvailable, "needs the built executables"),
       .timeLimit(.minutes(5)))
struct StillMemoryTests {
    /// The budget of issue 15: bytes of peak RSS, above a tiny picture's, per source pixel.
    static let maxBytesPerPixel = 12.0

    /// One generated source.
    struct Source: CustomTestStringConvertible, Sendable {
        var file: String
        var label: String
        var testDescription: String { label }
    }

    static let sources: [Source] = [
        Source(file: "photo8.jpg", label: "8-bit JPEG"),
        Source(file: "photo16.png", label: "16-bit PNG"),
        Source(file: "photo16.jxl", label: "16-bit JPEG XL (libjxl)"),
        Source(file: "photo8-420.avif", label: "8-bit 4:2:0 AVIF (libheif)"),
        // One deflated strip, as FFmpeg, GIMP and many scanners write them: FFmpeg's decoder held
        // the file, the strip inflated whole and the frame at once (16.1 bytes per pixel).
        Source(file: "photo16.tif", label: "16-bit TIFF, one deflated strip"),
        // libheif 1.15 held libde265's picture, its own copy and a 4:4:4 conversion (13.4); now
        // libavcodec decodes it and it is reduced before libheif sees it (HEVCReducingDecoder).
        Source(file: "photo10.heic", label: "10-bit 4:2:0 HEIC (libheif, x265)"),
    ]

    @Test(arguments: sources)
    func aStillPeaksAtMostTwelveBytesPerSourcePixel(_ source: Source) async throws {
        let perPixel = try await offCooperativePool { try peakBytesPerPixel(rendering: source) }
        #expect(perPixel <= Self.maxBytesPerPixel, "\(source.label): \(String(format: "%.1f", perPixel)) bytes per source pixel at peak")
    }

    /// libheif 1.15 cannot hand over a 10-bit picture without copies of its own: the decoder's
    /// picture, libheif's copy and its 4:4:4 conversion (about 12 bytes per pixel for 10-bit
    /// samples) are alive at once, whatever is asked of it. What the worker controls is the rest:
    /// no RGBA copies, and libdav1d without frame threads, whose coefficient buffer alone is
    /// 12 bytes per pixel for 10-bit 4:4:4 (24.7 bytes per pixel before, about 12 after).
    @Test func aTenBitAVIFPeaksAtLibheifsOwnFloor() async throws {
        let perPixel = try await offCooperativePool { try peakBytesPerPixel(rendering: Source(file: "photo10.avif", label: "10-bit 4:4:4 AVIF (libheif)")) }
        #expect(perPixel <= 14, "\(String(format: "%.1f", perPixel)) bytes per source pixel at peak")
    }

    /// Renders `source` at the preview's edge (the size a still job decodes at when it makes both
    /// outputs) and returns the peak RSS above a tiny picture's, per source pixel.
    func peakBytesPerPixel(rendering source: Source) throws -> Double {
        let corpus = try GeneratedStills.shared.get()
        let output = corpus.path("out-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: output) }
        let baseline = try measure(["thumbnail", "--size", "1440", "--jobs", "1", "--output-dir", output, corpus.path("tiny.png")])
        let run = try measure(["thumbnail", "--size", "1440", "--jobs", "1", "--output-dir", output, corpus.path(source.file)])
        #expect(run.status == 0 && run.stdout.contains("\"width\":1440"), "\(source.label): \(run.stdout)")
        return Double(run.peakBytes - baseline.peakBytes) / Double(GeneratedStills.pixels)
    }

    @Test func probingAJPEGXLReadsItsHeaderWithoutDecodingThePicture() async throws {
        let (baseline, run) = try await offCooperativePool {
            let corpus = try GeneratedStills.shared.get()
            return (try measure(["probe", "--no-checksums", corpus.path("tiny.jxl")]), try measure(["probe", "--no-checksums", corpus.path("photo16.jxl")]))
        }
        #expect(run.status == 0)
        let line = try JSONValue(parsing: run.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let summary = line["summary"]
        #expect(summary?["width"] == .int(5472) && summary?["height"] == .int(3648) && summary?["bit_depth"] == .int(16),
                "size and depth from the header: \(run.stdout)")
        // A decoded frame alone is 6 bytes per pixel (RGB48); a header read costs next to nothing.
        let perPixel = Double(run.peakBytes - baseline.peakBytes) / Double(GeneratedStills.pixels)
        #expect(perPixel < 1, "probe peaked \(String(format: "%.2f", perPixel)) bytes per pixel above a tiny file's: it decoded the picture")
    }

    /// Runs `medianest-worker` with `arguments` and returns its exit status, standard output and
    /// peak resident set size (`ru_maxrss` from `wait4`, which counts that child alone).
    func measure(_ arguments: [String]) throws -> (status: Int32, stdout: String, peakBytes: Int) {
        let executable = binDirectory.appendingPathComponent("medianest-worker").path
        let stdoutPath = FileManager.default.temporaryDirectory.appendingPathComponent("stillmem-\(UUID().uuidString.prefix(8)).out").path
        defer { try? FileManager.default.removeItem(atPath: stdoutPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw MediaNestTestSupport.FixtureError("cannot start \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw MediaNestTestSupport.FixtureError("wait4 failed: \(String(cString: strerror(errno)))") }
        }
        let exitStatus: Int32 = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        let stdout = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        return (exitStatus, stdout, usage.ru_maxrss * 1024)
    }
}

/// The 20 MP sources, generated once per test process with ffmpeg and avifenc/heif-enc from one
/// 16-bit picture (smooth gradients with grain, so the files compress like photos do).
final class GeneratedStills: Sendable {
    static let width = 5472
    static let height = 3648
    static let pixels = width * height

    static let shared = GeneratedStills()
    static let directoryPath = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-stillmem-\(getpid())").path

    /// The generated files' directory.
    struct Corpus: Sendable {
        var directory: String
        func path(_ name: String) -> String { directory + "/" + name }
    }

    private let result: Result<Corpus, MediaNestTestSupport.FixtureError>

    private init() {
        result = Result { () throws(MediaNestTestSupport.FixtureError) -> Corpus in try GeneratedStills.generate() }
    }

    func get() throws(MediaNestTestSupport.FixtureError) -> Corpus { try result.get() }

    private static func generate() throws(MediaNestTestSupport.FixtureError) -> Corpus {
        let scratch = Corpus(directory: directoryPath)
        // About 240 MB of pictures: removed when the test process exits.
        atexit { try? FileManager.default.removeItem(atPath: GeneratedStills.directoryPath) }
        do {
            try FileManager.default.createDirectory(atPath: scratch.directory, withIntermediateDirectories: true)
        } catch {
            throw MediaNestTestSupport.FixtureError("cannot create \(scratch.directory): \(error)")
        }
        func tool(_ path: String, _ arguments: [String]) throws(MediaNestTestSupport.FixtureError) {
            let run = try ProcessRunner.run(path, arguments)
            guard run.status == 0 else { throw MediaNestTestSupport.FixtureError("\(path) \(arguments.joined(separator: " ")) failed: \(run.stderr)") }
        }
        let ffmpeg = "/usr/bin/ffmpeg"
        let quiet = ["-v", "error", "-nostdin", "-y"]
        let base = scratch.path("photo16.png")
        try tool(ffmpeg, quiet + ["-f", "lavfi", "-i", "gradients=s=\(width)x\(height):seed=1:c0=0x3050a0:c1=0xe0a040:c2=0x20a060:n=3,format=gbrp,noise=alls=10:allf=t",
                                  "-frames:v", "1", "-pix_fmt", "rgb48be", base])
        try tool(ffmpeg, quiet + ["-i", base, "-q:v", "2", scratch.path("photo8.jpg")])
        try tool(ffmpeg, quiet + ["-i", base, "-c:v", "libjxl", "-distance", "1", "-effort", "3", "-pix_fmt", "rgb48le", scratch.path("photo16.jxl")])
        try tool(ffmpeg, quiet + ["-i", base, "-compression_algo", "deflate", "-pix_fmt", "rgb48le", scratch.path("photo16.tif")])
        // x265's fast preset, with its in-loop filters on as cameras encode: libheif 1.15's own decode
        // of it peaked at 13.4 bytes per pixel (12.1 for ultrafast, which turns some of them off).
        try tool("/usr/bin/heif-enc", ["-b", "10", "-p", "preset=fast", "-o", scratch.path("photo10.heic"), base])
        try tool("/usr/bin/avifenc", ["-d", "10", "-s", "10", "-j", "1", base, scratch.path("photo10.avif")])
        try tool("/usr/bin/avifenc", ["-d", "8", "-y", "420", "-s", "10", "-j", "1", base, scratch.path("photo8-420.avif")])
        try tool(ffmpeg, quiet + ["-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1", scratch.path("tiny.png")])
        try tool(ffmpeg, quiet + ["-i", scratch.path("tiny.png"), "-c:v", "libjxl", "-pix_fmt", "rgb48le", scratch.path("tiny.jxl")])
        return scratch
    }
}
