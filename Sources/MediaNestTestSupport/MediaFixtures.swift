import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small media corpus generated with the ffmpeg CLI, once per process, for media tests.
///
/// Layout: ``root`` is the storage root the tests open files under; ``outside`` is a sibling
/// directory that must never be read (symlinks and playlists point into it). Generation takes
/// a few seconds on two cores; ffmpeg is the only tool needed (EXIF blocks are built here).
public final class MediaFixtures: Sendable {
    /// The storage root.
    public let root: String
    /// A directory next to the root that no test may cause to be opened.
    public let outside: String

    /// Media files under ``root``, by name.
    public enum Name {
        public static let png8 = "png8.png"
        public static let png16Alpha = "png16a.png"
        public static let gif = "anim.gif"
        public static let webp = "image.webp"
        public static let rotatedMP4 = "rotated.mp4"
        public static let plainMP4 = "plain.mp4"
        public static let hevc10MKV = "hevc10.mkv"
        public static let vp9WebM = "vp9opus.webm"
        public static let taggedMP3 = "tagged.mp3"
        public static let flac = "audio.flac"
        public static let truncatedMP4 = "truncated.mp4"
        public static let emptyFile = "empty.mp4"
        public static let randomBytes = "random.mp4"
        public static let textAsJPEG = "text.jpg"
        public static let zipAsPNG = "archive.png"
        public static let directory = "a-directory"
        public static let fifo = "fifo.mp4"
        public static let escapingLink = "escape-link.mp4"
        public static let insideLink = "inside-link.mp4"
        public static let linkedDirectory = "linked-dir"
        public static let secretOutside = "secret.mp4"
        /// `exif-o1.jpg` … `exif-o8.jpg`: 64x32 JPEGs with EXIF Orientation 1…8.
        public static func exifJPEG(orientation: Int) -> String { "exif-o\(orientation).jpg" }
        public static let plainJPEG = "plain.jpg"
        /// 64x32 H.264 with a 2:1 sample aspect ratio (displays 128x32).
        public static let anamorphicMP4 = "anamorphic.mp4"
        /// The 48x24 PNG with an `eXIf` chunk (Orientation 8).
        public static let pngWithExif = "exif.png"
        /// A 700x500 CMYK JPEG from Pillow whose first marker is APP14 "Adobe" (no JFIF, no EXIF);
        /// FFmpeg's content probe alone calls it raw AMR-NB. Committed: Tests/Fixtures/cmyk-adobe.jpg.
        public static let cmykAdobeJPEG = "cmyk-adobe.jpg"
        /// ``cmykAdobeJPEG`` without its APP14: SOI is followed directly by a quantisation table.
        public static let cmykBareJPEG = "cmyk-bare.jpg"
        /// ``cmykAdobeJPEG`` with an EXIF APP1 (Orientation 1) before its APP14.
        public static let cmykExifFirstJPEG = "cmyk-exif-first.jpg"
        /// ``plainJPEG`` (64x32) with its JFIF APP0 replaced by an APP14 "Adobe" segment.
        public static let adobeFirstJPEG = "adobe-first.jpg"
        /// ``plainJPEG`` (64x32) without its JFIF APP0.
        public static let noAPP0JPEG = "no-app0.jpg"
        /// ``plainJPEG`` (64x32) without APP0, with an EXIF APP1 (Orientation 1) as first marker.
        public static let exifFirstJPEG = "exif-first.jpg"
        /// A 48x24 JPEG XL still (bare codestream). Committed: Tests/Fixtures/image.jxl, so that a
        /// build without libjxl still has the file to refuse.
        public static let jpegXL = "image.jxl"
    }

    /// The EXIF values written into every `exif-o*.jpg`.
    public enum ExifValues {
        public static let make = "MediaNest"
        public static let model = "Fixture Cam 1"
        public static let dateTimeOriginal = "2024:05:01 12:34:56"
        public static let offsetTimeOriginal = "+02:00"
        public static let takenAt = "2024-05-01T12:34:56+02:00"
        /// 48°51'30.24" N
        public static let latitude = 48.0 + 51.0 / 60 + 30.24 / 3600
        /// 2°17'40.2" W
        public static let longitude = -(2.0 + 17.0 / 60 + 40.2 / 3600)
    }

    /// The absolute path of a file under ``root``.
    public func path(_ name: String) -> String { root + "/" + name }

    /// The corpus of this process, generated on first use.
    /// - Throws: ``FixtureError`` when ffmpeg is missing or a command fails.
    public static func load() throws -> MediaFixtures { try shared.get() }

    private static let shared: Result<MediaFixtures, FixtureError> = Result { () throws(FixtureError) -> MediaFixtures in
        try MediaFixtures.generate()
    }

    private init(root: String, outside: String) {
        self.root = root
        self.outside = outside
    }

    private static func generate() throws(FixtureError) -> MediaFixtures {
        let ffmpeg = try findTool("ffmpeg")
        let base = NSTemporaryDirectory() + "medianest-fixtures-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let root = base + "/storage"
        let outside = base + "/outside"
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        } catch {
            throw FixtureError("cannot create fixture directories under \(base): \(error)")
        }
        let fixtures = MediaFixtures(root: root, outside: outside)
        // The corpus lives as long as the test process; remove it when the process exits.
        fixtureDirectoryToRemove.withLock { $0 = base }
        atexit {
            if let base = fixtureDirectoryToRemove.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: base) }
        }
        let q = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1"]
        let lavfi = { (source: String) in ["-f", "lavfi", "-i", source] }
        let video = "testsrc=size=64x32:rate=25:duration=1"

        let chapters = base + "/chapters.ffmeta"
        do {
            try ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=400\ntitle=Opening\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=400\nEND=1000\ntitle=Finale\n"
                .write(toFile: chapters, atomically: true, encoding: .utf8)
        } catch {
            throw FixtureError("cannot write \(chapters): \(error)")
        }

        // Independent ffmpeg runs, two at a time (one per core).
        let jobs: [[String]] = [
            q + lavfi("testsrc=size=64x32") + ["-frames:v", "1", "-q:v", "3", fixtures.path(Name.plainJPEG)],
            q + lavfi("testsrc=size=48x24") + ["-frames:v", "1", "-pix_fmt", "rgb24", fixtures.path(Name.png8)],
            q + lavfi("testsrc=size=40x20") + ["-frames:v", "1", "-pix_fmt", "rgba64be", fixtures.path(Name.png16Alpha)],
            q + lavfi("testsrc=size=32x16:rate=10:duration=0.3") + [fixtures.path(Name.gif)],
            q + lavfi("testsrc=size=50x30") + ["-frames:v", "1", "-c:v", "libwebp", fixtures.path(Name.webp)],
            q + lavfi(video) + lavfi("sine=frequency=440:sample_rate=44100:duration=1")
                + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
                   "-metadata", "title=Fixture Clip", "-metadata", "location=+48.8584+002.2945/",
                   fixtures.path(Name.plainMP4)],
            q + lavfi("testsrc=size=64x64:rate=25:duration=1") + ["-i", chapters, "-map", "0:v", "-map_chapters", "1"]
                + ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
                   "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", fixtures.path(Name.hevc10MKV)],
            q + lavfi(video) + lavfi("sine=frequency=440:sample_rate=48000:duration=1")
                + ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "100k", "-c:a", "libopus", "-ac", "2",
                   fixtures.path(Name.vp9WebM)],
            q + lavfi("sine=frequency=440:sample_rate=44100:duration=1") + lavfi("testsrc=size=32x32:rate=1:duration=1")
                + ["-map", "0:a", "-map", "1:v", "-frames:v", "1", "-c:a", "libmp3lame", "-c:v", "png", "-disposition:v", "attached_pic",
                   "-id3v2_version", "3", "-metadata", "title=Fixture Song", "-metadata", "artist=Fixture Band",
                   "-metadata", "album=Fixture Album", fixtures.path(Name.taggedMP3)],
            q + lavfi("sine=frequency=440:sample_rate=48000:duration=1") + ["-ac", "2", fixtures.path(Name.flac)],
            q + lavfi(video) + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", fixtures.path(Name.secretOutside + ".tmp.mp4")],
            q + lavfi(video) + ["-vf", "setsar=2/1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", fixtures.path(Name.anamorphicMP4)],
        ]
        let failures = FailureBox()
        DispatchQueue.concurrentPerform(iterations: jobs.count) { index in
            do throws(FixtureError) { try run(ffmpeg, jobs[index]) } catch { failures.add(error) }
        }
        if let first = failures.first { throw first }

        // 5.1's mov muxer writes the "rotate" tag as a counter-clockwise matrix: 270 here is 90 clockwise.
        try run(ffmpeg, q + ["-i", fixtures.path(Name.plainMP4), "-c", "copy", "-metadata:s:v:0", "rotate=270", fixtures.path(Name.rotatedMP4)])

        do {
            let fm = FileManager.default
            try fm.moveItem(atPath: fixtures.path(Name.secretOutside + ".tmp.mp4"), toPath: outside + "/" + Name.secretOutside)

            let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(Name.plainJPEG)))
            for orientation in 1...8 {
                let exif = ExifBuilder.app1(orientation: orientation, littleEndian: orientation % 2 == 1)
                try ExifBuilder.insert(app1: exif, into: jpeg).write(to: URL(fileURLWithPath: fixtures.path(Name.exifJPEG(orientation: orientation))))
            }

            let exifOne = ExifBuilder.app1(orientation: 1, littleEndian: true)
            let withoutAPP0 = try JPEGSegments.removingLeading(marker: 0xE0, from: [UInt8](jpeg))
            try Data(JPEGSegments.insertingAfterSOI(JPEGSegments.adobeAPP14(transform: 1), into: withoutAPP0))
                .write(to: URL(fileURLWithPath: fixtures.path(Name.adobeFirstJPEG)))
            try Data(withoutAPP0).write(to: URL(fileURLWithPath: fixtures.path(Name.noAPP0JPEG)))
            try Data(JPEGSegments.insertingAfterSOI(exifOne, into: withoutAPP0)).write(to: URL(fileURLWithPath: fixtures.path(Name.exifFirstJPEG)))

            let cmyk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: committedFixture(Name.cmykAdobeJPEG))))
            try Data(cmyk).write(to: URL(fileURLWithPath: fixtures.path(Name.cmykAdobeJPEG)))
            try Data(JPEGSegments.removingLeading(marker: 0xEE, from: cmyk)).write(to: URL(fileURLWithPath: fixtures.path(Name.cmykBareJPEG)))
            try Data(JPEGSegments.insertingAfterSOI(exifOne, into: cmyk)).write(to: URL(fileURLWithPath: fixtures.path(Name.cmykExifFirstJPEG)))
            try fm.copyItem(atPath: committedFixture(Name.jpegXL), toPath: fixtures.path(Name.jpegXL))

            let png = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(Name.png8)))
            try ExifBuilder.insertPNG(exif: ExifBuilder.tiff(orientation: 8, littleEndian: false), into: png)
                .write(to: URL(fileURLWithPath: fixtures.path(Name.pngWithExif)))

            let mp4 = try Data(contentsOf: URL(fileURLWithPath: fixtures.path(Name.rotatedMP4)))
            try mp4.prefix(mp4.count * 3 / 10).write(to: URL(fileURLWithPath: fixtures.path(Name.truncatedMP4)))
            try Data().write(to: URL(fileURLWithPath: fixtures.path(Name.emptyFile)))
            var generator = SplitMix64(seed: 0x6D65_6469_616E_6573)
            try Data((0..<65536).map { _ in UInt8(truncatingIfNeeded: generator.next()) }).write(to: URL(fileURLWithPath: fixtures.path(Name.randomBytes)))
            try Data("This is a plain text file, not a photo.\nIt has a .jpg name anyway.\n".utf8).write(to: URL(fileURLWithPath: fixtures.path(Name.textAsJPEG)))
            try ZipBuilder.storedZip(name: "readme.txt", contents: Data("hello from inside a zip\n".utf8)).write(to: URL(fileURLWithPath: fixtures.path(Name.zipAsPNG)))
            try fm.createDirectory(atPath: fixtures.path(Name.directory), withIntermediateDirectories: true)
            guard mkfifo(fixtures.path(Name.fifo), 0o644) == 0 else { throw FixtureError("mkfifo failed: \(errno)") }
            try fm.createSymbolicLink(atPath: fixtures.path(Name.escapingLink), withDestinationPath: outside + "/" + Name.secretOutside)
            try fm.createSymbolicLink(atPath: fixtures.path(Name.insideLink), withDestinationPath: Name.plainMP4)
            try fm.createSymbolicLink(atPath: fixtures.path(Name.linkedDirectory), withDestinationPath: outside)
        } catch let error as FixtureError {
            throw error
        } catch {
            throw FixtureError("cannot write fixture files: \(error)")
        }
        return fixtures
    }

    /// The path of a file committed under `Tests/Fixtures` (media the ffmpeg CLI cannot make).
    public static func committedFixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Fixtures/\(name)").path
    }

    /// Creates an empty directory under the fixture base for one test's own files.
    /// - Returns: Its absolute path.
    public func makeScratchDirectory(_ label: String) throws -> String {
        let path = (root as NSString).deletingLastPathComponent + "/scratch-\(label)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs a tool and fails with its stderr when it exits non-zero.
    static func run(_ tool: String, _ arguments: [String]) throws(FixtureError) {
        let result = try ProcessRunner.run(tool, arguments)
        guard result.status == 0 else {
            throw FixtureError("\(tool) \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
        }
    }

    static func findTool(_ name: String) throws(FixtureError) -> String {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw FixtureError("\(name) is required to generate the media test corpus but was not found in PATH; install it (Debian: apt-get install ffmpeg).")
    }
}

private let fixtureDirectoryToRemove = Mutex<String?>(nil)

/// Why the fixture corpus could not be generated.
public struct FixtureError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [FixtureError] = []
    func add(_ error: FixtureError) { lock.withLock { errors.append(error) } }
    var first: FixtureError? { lock.withLock { errors.first } }
}

/// Runs a command and captures its output.
public enum ProcessRunner {
    /// What a command printed and how it exited.
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `tool` with `arguments` and waits for it.
    /// - Throws: ``FixtureError`` when the tool cannot be started.
    public static func run(_ tool: String, _ arguments: [String]) throws(FixtureError) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw FixtureError("cannot start \(tool): \(error)") }
        // Read both pipes before waiting so a chatty tool cannot block on a full pipe.
        let group = DispatchGroup()
        let errBox = DataBox()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    private final class DataBox: @unchecked Sendable { var data = Data() }
}

/// SplitMix64: a small deterministic generator, so that generated fixtures and mutated inputs are
/// the same on every run and a failure names a reproducible case.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `value` with `bits` distinct random bits flipped.
    public mutating func flip(_ value: UInt64, bits: Int) -> UInt64 {
        var result = value, flipped: Set<UInt64> = []
        while flipped.count < bits { flipped.insert(next() % 64) }
        for bit in flipped { result ^= 1 << bit }
        return result
    }
}

/// Builds a JPEG APP1 EXIF segment with Orientation, DateTimeOriginal, OffsetTimeOriginal,
/// Make, Model and GPS, in either byte order.
public enum ExifBuilder {
    struct Entry {
        var tag: UInt16
        var type: UInt16
        var count: UInt32
        var data: [UInt8]
    }

    /// The APP1 segment (marker included) for one orientation.
    public static func app1(orientation: Int, littleEndian: Bool) -> [UInt8] {
        let tiff = tiff(orientation: orientation, littleEndian: littleEndian)
        let length = 2 + 6 + tiff.count
        return [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + Array("Exif".utf8) + [0, 0] + tiff
    }

    /// The TIFF block alone.
    public static func tiff(orientation: Int, littleEndian le: Bool) -> [UInt8] {
        func u16(_ v: UInt16) -> [UInt8] { le ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)] }
        func u32(_ v: UInt32) -> [UInt8] {
            let b = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
            return le ? b.reversed() : b
        }
        func ascii(_ tag: UInt16, _ s: String) -> Entry { let b = Array(s.utf8) + [0]; return Entry(tag: tag, type: 2, count: UInt32(b.count), data: b) }
        func short(_ tag: UInt16, _ v: UInt16) -> Entry { Entry(tag: tag, type: 3, count: 1, data: u16(v) + [0, 0]) }
        func long(_ tag: UInt16, _ v: UInt32) -> Entry { Entry(tag: tag, type: 4, count: 1, data: u32(v)) }
        func rationals(_ tag: UInt16, _ values: [(UInt32, UInt32)]) -> Entry {
            Entry(tag: tag, type: 5, count: UInt32(values.count), data: values.flatMap { u32($0.0) + u32($0.1) })
        }
        func size(_ entries: [Entry]) -> Int {
            2 + 12 * entries.count + 4 + entries.reduce(0) { $0 + ($1.data.count > 4 ? ($1.data.count + 1) & ~1 : 0) }
        }
        func layout(_ entries: [Entry], at offset: Int) -> [UInt8] {
            var out = u16(UInt16(entries.count))
            var extra: [UInt8] = []
            let dataStart = offset + 2 + 12 * entries.count + 4
            for e in entries.sorted(by: { $0.tag < $1.tag }) {
                out += u16(e.tag) + u16(e.type) + u32(e.count)
                if e.data.count <= 4 {
                    out += e.data + [UInt8](repeating: 0, count: 4 - e.data.count)
                } else {
                    out += u32(UInt32(dataStart + extra.count))
                    extra += e.data
                    if extra.count % 2 == 1 { extra.append(0) }
                }
            }
            return out + u32(0) + extra
        }

        let exifIFD = [ascii(0x9003, MediaFixtures.ExifValues.dateTimeOriginal), ascii(0x9011, MediaFixtures.ExifValues.offsetTimeOriginal)]
        let gpsIFD = [
            ascii(1, "N"), rationals(2, [(48, 1), (51, 1), (3024, 100)]),
            ascii(3, "W"), rationals(4, [(2, 1), (17, 1), (402, 10)]),
        ]
        var ifd0 = [ascii(0x010F, MediaFixtures.ExifValues.make), ascii(0x0110, MediaFixtures.ExifValues.model), short(0x0112, UInt16(orientation)),
                    long(0x8769, 0), long(0x8825, 0)]
        let exifOffset = 8 + size(ifd0)
        let gpsOffset = exifOffset + size(exifIFD)
        ifd0[3] = long(0x8769, UInt32(exifOffset))
        ifd0[4] = long(0x8825, UInt32(gpsOffset))
        let header: [UInt8] = (le ? [0x49, 0x49] : [0x4D, 0x4D]) + u16(42) + u32(8)
        return header + layout(ifd0, at: 8) + layout(exifIFD, at: exifOffset) + layout(gpsIFD, at: gpsOffset)
    }

    /// Inserts an APP1 segment after the JPEG's SOI (and its JFIF APP0, if any).
    public static func insert(app1: [UInt8], into jpeg: Data) throws -> Data {
        let bytes = [UInt8](jpeg)
        guard bytes.count > 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { throw FixtureError("not a JPEG") }
        var at = 2
        if bytes[2] == 0xFF, bytes[3] == 0xE0 { at = 4 + (Int(bytes[4]) << 8 | Int(bytes[5])) }
        return Data(bytes[0..<at] + app1 + bytes[at...])
    }
}

extension ExifBuilder {
    /// Inserts an `eXIf` chunk right after a PNG's IHDR chunk.
    public static func insertPNG(exif tiff: [UInt8], into png: Data) throws -> Data {
        let bytes = [UInt8](png)
        guard bytes.count > 33, Array(bytes[12..<16]) == Array("IHDR".utf8) else { throw FixtureError("not a PNG") }
        let afterIHDR = 8 + 8 + 13 + 4
        let type = Array("eXIf".utf8)
        let length = UInt32(tiff.count)
        let crc = ZipBuilder.crc32(type + tiff)
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        return Data(bytes[0..<afterIHDR] + be(length) + type + tiff + be(crc) + bytes[afterIHDR...])
    }
}

/// Splices JPEG marker segments, to make files whose first marker is not JFIF APP0.
public enum JPEGSegments {
    /// An APP14 "Adobe" segment (marker included), as Photoshop and Pillow write it.
    /// - Parameter transform: 0 for CMYK/RGB, 1 for YCbCr, 2 for YCCK.
    public static func adobeAPP14(transform: UInt8) -> [UInt8] {
        [0xFF, 0xEE, 0x00, 0x0E] + Array("Adobe".utf8) + [0x00, 0x64, 0x00, 0x00, 0x00, 0x00, transform]
    }

    /// Removes the segment right after SOI when it has `marker` (e.g. 0xE0 for APP0).
    public static func removingLeading(marker: UInt8, from jpeg: [UInt8]) throws -> [UInt8] {
        guard jpeg.count > 6, jpeg[0] == 0xFF, jpeg[1] == 0xD8 else { throw FixtureError("not a JPEG") }
        guard jpeg[2] == 0xFF, jpeg[3] == marker else { throw FixtureError("the first segment is not 0xFF\(String(marker, radix: 16))") }
        let end = 4 + (Int(jpeg[4]) << 8 | Int(jpeg[5]))
        return Array(jpeg[0..<2] + jpeg[end...])
    }

    /// Inserts a whole segment (marker included) right after SOI.
    public static func insertingAfterSOI(_ segment: [UInt8], into jpeg: [UInt8]) throws -> [UInt8] {
        guard jpeg.count > 2, jpeg[0] == 0xFF, jpeg[1] == 0xD8 else { throw FixtureError("not a JPEG") }
        return Array(jpeg[0..<2]) + segment + Array(jpeg[2...])
    }
}

/// A one-entry "stored" zip archive (enough for libmagic to say application/zip).
enum ZipBuilder {
    static func storedZip(name: String, contents: Data) -> Data {
        func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func u32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)] }
        let nameBytes = Array(name.utf8)
        let data = [UInt8](contents)
        let crc = crc32(data)
        let local = [0x50, 0x4B, 0x03, 0x04] + u16(10) + u16(0) + u16(0) + u16(0) + u16(0) + u32(crc)
            + u32(UInt32(data.count)) + u32(UInt32(data.count)) + u16(nameBytes.count) + u16(0) + nameBytes + data
        let central = [0x50, 0x4B, 0x01, 0x02] + u16(20) + u16(10) + u16(0) + u16(0) + u16(0) + u16(0) + u32(crc)
            + u32(UInt32(data.count)) + u32(UInt32(data.count)) + u16(nameBytes.count) + u16(0) + u16(0) + u16(0) + u16(0)
            + u32(0) + u32(0) + nameBytes
        let end = [0x50, 0x4B, 0x05, 0x06] + u16(0) + u16(0) + u16(1) + u16(1) + u32(UInt32(central.count))
            + u32(UInt32(local.count)) + u16(0)
        return Data(local + central + end)
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 { HostileFiles.crc32(bytes) }
}

// MARK: - Video and audio stills (representative frames, HDR, trickplay, cover art)

extension MediaFixtures {
    /// Files for the video-stills tests, under ``root``/`video-stills/`; generated on first use by
    /// ``loadStills()``, separately from the base corpus so that other suites do not pay for them.
    public enum StillsName {
        /// 160x90 H.264, 25 fps, keyframe every second: 5 s of black, then 3 s of testsrc2.
        public static let blackStart = "video-stills/blackstart.mp4"
        /// Like ``blackStart`` (4 s black, 4 s testsrc2) but with a single keyframe at 0 (no
        /// scene-cut keyframes): only decoding in order can find a real frame.
        public static let blackStartOneKeyframe = "video-stills/blackstart-onekey.mp4"
        /// 64x36 testsrc2, 2 fps, keyframe every 2 s, 20 s long.
        public static let shortClip = "video-stills/short.mp4"
        /// The same as ``shortClip`` but 30 minutes long.
        public static let longClip = "video-stills/long.mp4"
        /// 160x90 testsrc2, 10 fps, 2 s, 8-bit BT.709 H.264: the SDR reference of the HDR clips.
        public static let sdrReference = "video-stills/sdr.mp4"
        /// ``sdrReference`` converted to PQ (SMPTE 2084, BT.2020, SDR white at 203 cd/m²), 10-bit HEVC.
        public static let pq = "video-stills/pq.mkv"
        /// ``sdrReference`` converted to HLG (ARIB STD-B67, BT.2020), 10-bit HEVC.
        public static let hlg = "video-stills/hlg.mkv"
        /// 64x36 H.264, 10 fps, keyframe every second, 9.5 s; luma grows with time (Y = 25·t).
        public static let lumaRamp = "video-stills/ramp.mp4"
        /// The cover picture: 64x64, red top half, blue bottom half.
        public static let coverPNG = "video-stills/cover.png"
        /// MP3 with ``coverPNG`` as an ID3 APIC (PNG).
        public static let coverMP3 = "video-stills/cover.mp3"
        /// M4A (AAC) with ``coverPNG`` as `covr` (JPEG).
        public static let coverM4A = "video-stills/cover.m4a"
        /// FLAC with ``coverPNG`` as a PICTURE block (PNG).
        public static let coverFLAC = "video-stills/cover.flac"
        /// Ogg Opus with ``coverPNG`` in a METADATA_BLOCK_PICTURE comment.
        public static let coverOpus = "video-stills/cover.opus"
    }

    /// The base corpus plus the video-stills files.
    /// - Throws: ``FixtureError`` when ffmpeg is missing or a command fails.
    public static func loadStills() throws -> MediaFixtures {
        let fixtures = try load()
        try stillsGenerated.get()
        return fixtures
    }

    private static let stillsGenerated: Result<Void, FixtureError> = Result { () throws(FixtureError) in
        let fixtures: MediaFixtures
        do { fixtures = try load() } catch let error as FixtureError { throw error } catch { throw FixtureError("\(error)") }
        try generateStills(fixtures)
    }

    private static func generateStills(_ fixtures: MediaFixtures) throws(FixtureError) {
        let ffmpeg = try findTool("ffmpeg")
        do {
            try FileManager.default.createDirectory(atPath: fixtures.path("video-stills"), withIntermediateDirectories: true)
        } catch {
            throw FixtureError("cannot create \(fixtures.path("video-stills")): \(error)")
        }
        let q = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1"]
        let x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        let x265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
                    "-color_primaries", "bt2020", "-colorspace", "bt2020nc"]
        // testsrc2 draws BT.601 YUV; going through RGB makes every clip an exact conversion of the same pictures.
        let fromSDR = "format=gbrpf32le,zscale=tin=bt709:pin=bt709:p=bt2020:m=bt2020nc:r=tv:npl=203"
        let sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=1"]
        let blackThen = { (black: Int, content: Int) in
            ["-filter_complex", "color=c=black:s=160x90:r=25:d=\(black)[a];testsrc2=s=160x90:r=25:d=\(content)[b];[a][b]concat=n=2:v=1:a=0"]
        }
        let jobs: [[String]] = [
            q + blackThen(5, 3) + x264 + ["-g", "25", fixtures.path(StillsName.blackStart)],
            q + blackThen(4, 4) + x264 + ["-x264-params", "keyint=1000:min-keyint=1000:scenecut=0", fixtures.path(StillsName.blackStartOneKeyframe)],
            q + ["-f", "lavfi", "-i", "testsrc2=size=64x36:rate=2:duration=20"] + x264 + ["-g", "4", fixtures.path(StillsName.shortClip)],
            q + ["-f", "lavfi", "-i", "testsrc2=size=64x36:rate=2:duration=1800"] + x264 + ["-g", "4", fixtures.path(StillsName.longClip)],
            q + ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2", "-vf", "format=gbrpf32le,zscale=tin=bt709:pin=bt709:t=bt709:p=bt709:m=bt709:r=tv,format=yuv420p"]
                + x264 + ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", fixtures.path(StillsName.sdrReference)],
            q + ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2", "-vf", fromSDR + ":t=smpte2084,format=yuv420p10le"] + x265
                + ["-color_trc", "smpte2084", fixtures.path(StillsName.pq)],
            q + ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2", "-vf", fromSDR + ":t=arib-std-b67,format=yuv420p10le"] + x265
                + ["-color_trc", "arib-std-b67", fixtures.path(StillsName.hlg)],
            q + ["-f", "lavfi", "-i", "color=c=black:s=64x36:r=10:d=9.5", "-vf", "geq=lum='clip(T*25,0,255)':cb=128:cr=128"] + x264
                + ["-g", "10", fixtures.path(StillsName.lumaRamp)],
            q + ["-filter_complex", "color=c=red:s=64x32:d=1[a];color=c=blue:s=64x32:d=1[b];[a][b]vstack,format=rgb24", "-frames:v", "1",
                 fixtures.path(StillsName.coverPNG)],
        ]
        let failures = FailureBox()
        DispatchQueue.concurrentPerform(iterations: jobs.count) { index in
            do throws(FixtureError) { try run(ffmpeg, jobs[index]) } catch { failures.add(error) }
        }
        if let first = failures.first { throw first }

        let cover = fixtures.path(StillsName.coverPNG)
        let withCover = ["-i", cover, "-map", "0", "-map", "1", "-disposition:v", "attached_pic"]
        try run(ffmpeg, q + sine + withCover + ["-c:a", "libmp3lame", "-c:v", "png", "-id3v2_version", "3", fixtures.path(StillsName.coverMP3)])
        try run(ffmpeg, q + sine + withCover + ["-c:a", "aac", "-c:v", "mjpeg", fixtures.path(StillsName.coverM4A)])
        try run(ffmpeg, q + sine + withCover + ["-c:a", "flac", "-c:v", "png", fixtures.path(StillsName.coverFLAC)])
        // The ogg muxer of 5.1 cannot write attached pictures; the Vorbis-comment picture block can
        // be written as plain metadata, and the demuxer turns it back into an attached picture.
        let png: [UInt8]
        do { png = try [UInt8](Data(contentsOf: URL(fileURLWithPath: cover))) } catch { throw FixtureError("cannot read \(cover): \(error)") }
        try run(ffmpeg, q + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1", "-c:a", "libopus",
                             "-metadata", "METADATA_BLOCK_PICTURE=" + flacPictureBlock(png: png, width: 64, height: 64).base64EncodedString(),
                             fixtures.path(StillsName.coverOpus)])
    }

    /// A FLAC PICTURE block (type 3, front cover) around a PNG, as METADATA_BLOCK_PICTURE carries it.
    static func flacPictureBlock(png: [UInt8], width: UInt32, height: UInt32) -> Data {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        let mime = Array("image/png".utf8)
        let description = Array("Cover (front)".utf8)
        return Data(be(3) + be(UInt32(mime.count)) + mime + be(UInt32(description.count)) + description
            + be(width) + be(height) + be(24) + be(0) + be(UInt32(png.count)) + png)
    }
}
