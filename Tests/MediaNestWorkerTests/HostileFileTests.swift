import Foundation
import MediaNestTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hostile corpus, run through the real `medianest-worker` binary one child process per
/// file and job path, as the jobs run them: `probe` (the metadata job's extraction, checksums
/// included), `thumbnail` at the thumbnail's and the preview's size (the still jobs' dispatcher)
/// and `transcode`.
///
/// Every run must end with the case's stable error code, a peak RSS of at most 300 MiB (read
/// with `wait4` from the child's own `ru_maxrss`), no connection to the loopback listener the
/// hostile references name, no open of the directory beside the storage root they point into,
/// and no file left anywhere but the output directory (the child's working directory and
/// `TMPDIR` must stay empty). Every file is generated here; the only big one is sparse.
///
/// Set `MEDIANEST_HOSTILE_REPORT=FILE` to have each run's code and peak RSS appended to FILE (the
/// README's table comes from it); the tests themselves print nothing.
@Suite("Hostile files fail with a stable code, in bounded memory, touching nothing outside the storage root",
       .enabled(if: executablesAvailable, "needs the built medianest-worker"), .timeLimit(.minutes(10)))
struct HostileFileTests {
    /// The job a run stands for.
    enum JobPath: String, Sendable, CaseIterable {
        case metadata, thumbnail, preview, transcode

        func arguments(file: String, output: String) -> [String] {
            switch self {
            case .metadata: return ["probe", file]
            case .thumbnail: return ["thumbnail", "--jobs", "1", "--output-dir", output, file]
            case .preview: return ["thumbnail", "--jobs", "1", "--size", "1440", "--format", "jpeg", "--output-dir", output, file]
            case .transcode: return ["transcode", "--threads", "1", "--output", output + "/rendition.mp4", file]
            }
        }
    }

    /// Where a hostile file may point: the loopback listener's port and the directory beside the
    /// storage root.
    struct Targets {
        let port: UInt16
        let outside: String
    }

    /// One hostile file and the code each job path must end with (`ok` for success).
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let expected: [JobPath: String]
        /// Text every failure's message must contain, when the code alone says too little.
        var messageContains: String? = nil
        /// Runs the metadata path without checksums: the job hashes every byte of a file it
        /// refuses (to record its checksums), which for 10 GB is minutes of CPU by design.
        var skipChecksums = false
        let make: @Sendable (_ path: String, _ targets: Targets) throws -> Void
        var testDescription: String { name }

        static func bytes(_ name: String, _ expected: [JobPath: String], messageContains: String? = nil,
                          _ bytes: @escaping @Sendable (Targets) throws -> [UInt8]) -> Case {
            Case(name: name, expected: expected, messageContains: messageContains) { path, targets in
                try Data(try bytes(targets)).write(to: URL(fileURLWithPath: path))
            }
        }
    }

    static let peakRSSLimitKiB = 300 * 1024

    /// Whether a child's peak RSS is the product's memory: not under `make sanitize`, which sets
    /// `MEDIANEST_SANITIZER`. AddressSanitizer's shadow memory and its 256 MiB quarantine of
    /// freed blocks put every instrumented worker near 850 MiB whatever the file, so the limit
    /// is checked by `make test` only (the figure is still reported).
    static let peakRSSIsTheProducts = ProcessInfo.processInfo.environment["MEDIANEST_SANITIZER"] == nil

    /// The ffmpeg-made files some cases are patched from, made once per process.
    static let sources: Result<HostileFiles.Sources, FixtureError> = {
        do { return .success(try HostileFiles.makeSources()) } catch { return .failure(FixtureError("\(error)")) }
    }()

    static func committed(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: repositoryRoot.appendingPathComponent("Tests/MediaNestMediaTests/Fixtures/HEIF/" + name)))
    }

    static func still(_ code: String) -> [JobPath: String] { [.metadata: code, .thumbnail: code, .preview: code] }
    static func media(_ code: String) -> [JobPath: String] { [.metadata: code, .thumbnail: code, .preview: code, .transcode: code] }

    static let playlistReferences = """
        OUTSIDE/segment.ts
        file:OUTSIDE/segment.ts
        subfile,,start,0,end,188,,:OUTSIDE/segment.ts
        data:video/mp2t;base64,R0dHRw==
        http://127.0.0.1:PORT/segment.ts
        """

    static func fill(_ text: String, _ targets: Targets) -> [UInt8] {
        Array(text.replacingOccurrences(of: "OUTSIDE", with: targets.outside).replacingOccurrences(of: "PORT", with: String(targets.port)).utf8)
    }

    static let cases: [Case] = [
        // Bombs: headers that claim huge frames over a few bytes of data.
        .bytes("bomb-65535.png", still("pixel_limit")) { _ in HostileFiles.png(width: 65535, height: 65535) },
        .bytes("bomb-65535.gif", still("pixel_limit")) { _ in HostileFiles.gif(width: 65535, height: 65535) },
        .bytes("bomb-16384.webp", still("pixel_limit")) { _ in HostileFiles.webp(width: 16384, height: 16384) },
        .bytes("bomb-65535.jpg", still("pixel_limit")) { _ in
            try #require(HostileFiles.jpeg(patching: try sources.get().jpeg, width: 65535, height: 65535))
        },
        .bytes("bomb-65535.tif", still("pixel_limit")) { _ in HostileFiles.tiff(width: 65535, height: 65535) },
        // FFmpeg 5.1 reads no JPEG XL size before decoding, but the worker reads the codestream's
        // header itself (libjxl's basic info) for the probe and the still decoder alike.
        .bytes("bomb-65535.jxl", still("pixel_limit")) { _ in
            HostileFiles.jpegXL(width: 65535, height: 65535)
        },
        .bytes("bomb-65535.avif", still("pixel_limit")) { _ in
            HostileFiles.heifPatchingSpatialExtents(try committed("rotated.avif"), width: 65535, height: 65535)
        },
        .bytes("grid-bomb-65535.heic", still("pixel_limit")) { _ in
            try #require(HostileFiles.heifGrid(patching: try committed("iphone-grid-irot.heic"), width: 65535, height: 65535))
        },
        .bytes("frames-10000.gif", still("ok")) { _ in HostileFiles.animatedGIF(frames: 10_000) },
        .bytes("frame-65535.mkv", media("pixel_limit")) { _ in
            try #require(HostileFiles.matroskaClaiming65535(patching: try sources.get().mkv))
        },
        .bytes("tracks-10000.mkv", media("corrupt_media"), messageContains: "more than 1000 streams") { _ in HostileFiles.matroska(tracks: 10_000) },
        .bytes("samples-2p32.mp4", media("corrupt_media")) { _ in HostileFiles.mp4(claimingSamples: UInt32.max) },
        .bytes("samples-2p24.mp4", media("corrupt_media")) { _ in HostileFiles.mp4(claimingSamples: 1 << 24) },
        .bytes("fragment-samples-2p24.mp4", media("corrupt_media")) { _ in HostileFiles.fragmentedMP4(claimingSamples: 1 << 24) },
        .bytes("channels-65535.wav", media("corrupt_media")) { _ in HostileFiles.wav(channels: 65535, sampleRate: 48000) },
        .bytes("rate-2ghz.wav", media("corrupt_media")) { _ in HostileFiles.wav(channels: 2, sampleRate: 2_000_000_000) },
        // Protocol escapes: playlists disguised as video, and a movie whose data references point out.
        .bytes("hls-playlist.mp4", media("unsupported_format")) { targets in
            fill("#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + playlistReferences.split(separator: "\n").map { "#EXTINF:1.0,\n\($0)" }.joined(separator: "\n")
                 + "\n#EXT-X-ENDLIST\n", targets)
        },
        // libmagic calls an ffconcat list text/plain: not media at all for the metadata job.
        .bytes("ffconcat.mp4", media("unsupported_format").merging([.metadata: "mime_mismatch"]) { $1 }) { targets in
            fill("ffconcat version 1.0\n" + playlistReferences.split(separator: "\n").map { "file '\($0)'" }.joined(separator: "\n") + "\n", targets)
        },
        // The headers describe the track, so the metadata job records them; its samples live in
        // another file, which is never opened, so no picture can be made.
        .bytes("reference.mov", media("corrupt_media").merging([.metadata: "ok"]) { $1 }) { targets in
            try #require(HostileFiles.movReferencing(patching: try sources.get().mov, path: targets.outside + "/secret.mov",
                                                     url: "http://127.0.0.1:\(targets.port)/secret.mov"))
        },
        // Awkward files.
        Case(name: "sparse-10g.mp4", expected: media("corrupt_media"), skipChecksums: true) { path, _ in
            // ftyp, then an mdat whose 64-bit size covers the whole 10 GB (all of it a hole), no moov.
            let size: UInt64 = 10 << 30
            let mdatSize = size - 24
            let header = HostileFilesBytes.box("ftyp", Array("isom".utf8) + [0, 0, 2, 0] + Array("isom".utf8))
                + [0, 0, 0, 1] + Array("mdat".utf8) + (0..<8).reversed().map { UInt8((mdatSize >> (UInt64($0) * 8)) & 0xFF) }
            try Data(header).write(to: URL(fileURLWithPath: path))
            try #require(truncate(path, off_t(size)) == 0)
        },
        Case(name: "fifo.mp4", expected: media("not_a_regular_file")) { path, _ in
            try #require(mkfifo(path, 0o644) == 0)
        },
    ]

    /// The escape watchers of MediaNestTestSupport (EscapeWatchers.swift).
    typealias Listener = LoopbackListener

    /// The directories of one run: the storage root holding the hostile file, the directory
    /// beside it that the file points into, the output directory, and the child's working
    /// directory and TMPDIR.
    struct Sandbox {
        let base: String
        var storage: String { base + "/storage" }
        var outside: String { base + "/outside" }
        var output: String { base + "/output" }
        var work: String { base + "/work" }
        var tmp: String { base + "/tmp" }

        init() throws {
            base = NSTemporaryDirectory() + "medianest-hostile-\(UUID().uuidString.prefix(8))"
            for directory in [base + "/storage", base + "/outside", base + "/output", base + "/work", base + "/tmp"] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            try Data(repeating: 0x47, count: 188).write(to: URL(fileURLWithPath: outside + "/segment.ts"))
            try Data(repeating: 0, count: 64).write(to: URL(fileURLWithPath: outside + "/secret.mov"))
        }

        func contents(_ directory: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted() }
        /// Removes the sandbox, unless `MEDIANEST_HOSTILE_KEEP` is set (to look at a failing case).
        func remove() {
            if ProcessInfo.processInfo.environment["MEDIANEST_HOSTILE_KEEP"] != nil { return }
            try? FileManager.default.removeItem(atPath: base)
        }
    }

    /// What one child run ended with.
    struct Outcome {
        var code: String
        var message: String?
        var child: MeasuredChild
    }

    /// Runs `path` over the file at `file` in a child process; returns the code it reported.
    static func run(_ path: JobPath, file: String, sandbox: Sandbox, skipChecksums: Bool = false,
                    whileRunning: (pid_t) -> Void = { _ in }) throws -> Outcome {
        let binary = binDirectory.appendingPathComponent("medianest-worker").path
        var environment = ProcessInfo.processInfo.environment
        environment["TMPDIR"] = sandbox.tmp
        environment["HOME"] = sandbox.work
        var arguments = path.arguments(file: file, output: sandbox.output)
        if skipChecksums && path == .metadata { arguments.insert("--no-checksums", at: 1) }
        let child = try MeasuredChild.run(binary, arguments, environment: environment,
                                          directory: sandbox.work, deadline: .seconds(240), whileRunning: whileRunning)
        let line = child.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        let error = json?["error"] as? [String: Any]
        let code = json.map { _ in (error?["code"] as? String) ?? "ok" } ?? "no JSON line"
        return Outcome(code: code, message: error?["message"] as? String, child: child)
    }

    /// Appends one line to `MEDIANEST_HOSTILE_REPORT`, when it is set.
    static func report(_ name: String, _ path: String, _ code: String, _ peakRSSMiB: Double) {
        guard let file = ProcessInfo.processInfo.environment["MEDIANEST_HOSTILE_REPORT"], !file.isEmpty else { return }
        let line = "\(name)\t\(path)\t\(code)\t\(String(format: "%.1f", peakRSSMiB))\n"
        let fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return }
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    @Test(arguments: cases)
    func hostileFileFailsWithItsCodeInBoundedMemoryAndTouchesNothingOutside(_ hostile: Case) async throws {
        try await offCooperativePool {
            for (path, expected) in hostile.expected.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                try Self.check(hostile, path: path, expected: expected)
            }
        }
    }

    /// Whether this process may create device nodes (root with CAP_MKNOD, as in CI).
    static let canMakeDevices: Bool = {
        let path = NSTemporaryDirectory() + "medianest-mknod-probe-\(getpid())"
        defer { unlink(path) }
        return mknod(path, S_IFCHR | 0o600, dev_t(1 << 8 | 5)) == 0
    }()

    @Test(.enabled(if: canMakeDevices, "mknod of a character device needs root with CAP_MKNOD (CI runs as root)"))
    func characterDeviceNamedAsVideoIsNotARegularFile() async throws {
        // /dev/zero's numbers: a reader that followed it would read zeros forever.
        let device = Case(name: "zero-device.mp4", expected: Self.media("not_a_regular_file")) { path, _ in
            try #require(mknod(path, S_IFCHR | 0o644, dev_t(1 << 8 | 5)) == 0)
        }
        try await offCooperativePool {
            for (path, expected) in device.expected { try Self.check(device, path: path, expected: expected) }
        }
    }

    /// Runs one job path over a freshly made hostile file and checks everything the suite promises.
    /// - Parameter prepare: Called with the file's path once it exists, before the child starts;
    ///   what it returns is called with the child's pid right after the start.
    static func check(_ hostile: Case, path: JobPath, expected: String, prepare: ((String) throws -> (pid_t) -> Void)? = nil) throws {
        let listener = try Listener()
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        let file = sandbox.storage + "/" + hostile.name
        try hostile.make(file, Targets(port: listener.port, outside: sandbox.outside))
        let watch = try OpenWatch(directory: sandbox.outside)
        let whileRunning = try prepare?(file) ?? { _ in }
        let outcome = try run(path, file: file, sandbox: sandbox, skipChecksums: hostile.skipChecksums, whileRunning: whileRunning)
        report(hostile.name, path.rawValue, outcome.code, outcome.child.maxRSSMiB)
        let child = outcome.child
        let context = "\(hostile.name) \(path.rawValue): stdout \(child.stdout) stderr \(child.stderr.suffix(2000))"
        #expect(!child.timedOut, "hung: \(context)")
        #expect(child.signal == nil, "killed by signal \(child.signal ?? 0): \(context)")
        #expect(outcome.code == expected, "\(context)")
        if let text = hostile.messageContains, expected != "ok" {
            #expect(outcome.message?.contains(text) == true, "\(context)")
        }
        if peakRSSIsTheProducts { #expect(child.maxRSSKiB <= peakRSSLimitKiB, "peak RSS \(child.maxRSSKiB) KiB: \(context)") }
        #expect(!listener.wasContacted, "connected to the loopback listener: \(context)")
        #expect(!watch.sawOpen, "opened a file outside the storage root: \(context)")
        #expect(sandbox.contents(sandbox.storage) == [hostile.name], "\(context)")
        #expect(sandbox.contents(sandbox.work).isEmpty && sandbox.contents(sandbox.tmp).isEmpty,
                "left \(sandbox.contents(sandbox.work)) \(sandbox.contents(sandbox.tmp)): \(context)")
        let outputs = sandbox.contents(sandbox.output)
        if expected == "ok" && path != .metadata {
            #expect(outputs.count == 1 && !outputs[0].contains(".tmp"), "\(outputs): \(context)")
        } else {
            #expect(outputs.isEmpty, "a failed run left \(outputs): \(context)")
        }
        if hostile.name.hasPrefix("sparse") {
            var info = stat()
            try #require(stat(file, &info) == 0)
            #expect(info.st_size == 10 << 30 && info.st_blocks * 512 < 1 << 20, "the sparse file uses \(info.st_blocks * 512) bytes of disk")
        }
    }
}

/// ISO BMFF helpers for the cases built inline.
enum HostileFilesBytes {
    static func box(_ type: String, _ payload: [UInt8]) -> [UInt8] {
        let size = UInt32(8 + payload.count)
        return [UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)] + Array(type.utf8) + payload
    }
}

// MARK: - A file replaced while its job runs

/// Holds a process's open of one file until the test has acted: a fanotify permission event
/// (`FAN_OPEN_PERM`) blocks the `open` inside the kernel until it is answered. The path is
/// resolved before the event, so the opener gets the file that was there; whatever the test
/// does before answering happens, deterministically, while that job runs.
///
/// Needs CAP_SYS_ADMIN (root, as in CI). The libc functions are looked up at run time: the
/// Glibc module does not export `<sys/fanotify.h>`.
final class OpenGate {
    typealias InitFunction = @convention(c) (UInt32, UInt32) -> Int32
    typealias MarkFunction = @convention(c) (Int32, UInt32, UInt64, Int32, UnsafePointer<CChar>?) -> Int32
    static let classContent: UInt32 = 0x08, cloexec: UInt32 = 0x01, markAdd: UInt32 = 0x01
    static let openPermission: UInt64 = 0x0001_0000, allow: UInt32 = 0x01

    let fd: Int32

    static let functions: (InitFunction, MarkFunction)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let initSymbol = dlsym(handle, "fanotify_init"),
              let markSymbol = dlsym(handle, "fanotify_mark") else { return nil }
        return (unsafeBitCast(initSymbol, to: InitFunction.self), unsafeBitCast(markSymbol, to: MarkFunction.self))
    }()

    /// Whether this process may hold opens (a probe at start-up).
    static let isAvailable: Bool = {
        guard let functions else { return false }
        let fd = functions.0(classContent | cloexec, UInt32(O_RDONLY))
        if fd >= 0 { close(fd) }
        return fd >= 0
    }()

    /// Starts holding every open of the file at `path`.
    init(path: String) throws {
        let (initialise, mark) = try #require(Self.functions)
        fd = initialise(Self.classContent | Self.cloexec, UInt32(O_RDONLY | O_CLOEXEC))
        try #require(fd >= 0, "fanotify_init: \(String(cString: strerror(errno)))")
        try #require(mark(fd, Self.markAdd, Self.openPermission, AT_FDCWD, path) == 0, "fanotify_mark: \(String(cString: strerror(errno)))")
    }

    /// Waits for an open by `pid` (answering anyone else's at once), runs `action` while that
    /// open is held, then lets it through. Returns whether `pid` opened the file.
    func holdOpen(by pid: pid_t, _ action: () throws -> Void) throws -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // A guard against a child that never opens the file (it exited first), not a timing.
            guard poll(&poller, 1, 60_000) == 1 else { return false }
            let count = read(fd, &buffer, buffer.count)
            guard count >= 24 else { return false }
            var offset = 0
            var held = false
            while offset + 24 <= count {
                let length = buffer[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
                let eventFD = buffer[offset + 16..<offset + 20].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
                let eventPID = buffer[offset + 20..<offset + 24].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
                if eventPID == pid && !held {
                    held = true
                    try action()
                }
                var response: (Int32, UInt32) = (eventFD, Self.allow)
                _ = withUnsafeBytes(of: &response) { write(fd, $0.baseAddress, 8) }
                close(eventFD)
                offset += max(Int(length), 24)
            }
            if held { return true }
        }
    }

    deinit { close(fd) }
}

extension HostileFileTests {
    @Test(.enabled(if: OpenGate.isAvailable, "holding an open with fanotify needs CAP_SYS_ADMIN (CI runs as root)"),
          arguments: [JobPath.metadata])
    func fileRenamedOverWhileItsJobRunsFailsWithFileChanged(path: JobPath) throws {
        let replaced = Case(name: "replaced.mp3", expected: [path: "file_changed"]) { file, _ in
            try Data(try Self.sources.get().mp3).write(to: URL(fileURLWithPath: file))
        }
        var gateFailure: (any Error)?
        var held = false
        try Self.check(replaced, path: path, expected: "file_changed") { file in
            let gate = try OpenGate(path: file)
            return { pid in
                do {
                    // Held at the job's open of the file: another upload is renamed over the path.
                    held = try gate.holdOpen(by: pid) {
                        try Data(try Self.sources.get().mp3 + [0, 0, 0, 0]).write(to: URL(fileURLWithPath: file + ".new"))
                        try #require(rename(file + ".new", file) == 0)
                    }
                } catch {
                    gateFailure = error
                }
            }
        }
        #expect(gateFailure == nil, "\(String(describing: gateFailure))")
        #expect(held, "the child never opened the file")
    }
}
