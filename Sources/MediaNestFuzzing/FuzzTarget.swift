#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
public import MediaNestCore
import MediaNestMedia
import Synchronization

/// The fuzz targets: every place where the worker parses bytes a stranger chose, as one plain
/// function from raw bytes to an outcome.
///
/// The same functions serve two callers (see docs/FUZZING.md):
/// - the libFuzzer executables under `Fuzz/`, built only by `make fuzz` (each one's
///   `LLVMFuzzerTestOneInput` calls ``run(_:)``);
/// - the replay test in `make test`, which feeds every input kept under
///   `Tests/FuzzRegressions/<target>/` through ``run(_:)`` and checks it is handled.
///
/// A target handles an input when it returns, or when the product code rejects it with a
/// ``JobError`` (what a job would record). A crash, an ASan report, a leak, memory past the
/// fuzzer's RSS limit or a hang past its timeout is a finding.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The EXIF/TIFF reader and the JPEG, PNG and WebP header parsers (`Exif.swift`), and the
    /// ISO 6709 reader of a container's location tag (`MetadataExtractor.parseISO6709`).
    case exif
    /// The metadata job's work: safe open, MIME sniffing, the FFmpeg probe over the custom AVIO
    /// (`MediaInput`), HEIF metadata and EXIF (`MetadataExtractor`).
    case probe
    /// The dispatcher behind the thumbnail and preview jobs (`StillRendering`): TurboJPEG, PNG,
    /// WebP with the animated-WebP first-frame rewrite, GIF, BMP, TIFF, HEIF/AVIF through libheif
    /// with its grid limits, JPEG XL, camera RAW through libraw, and the video/audio stills.
    case still
    /// The ThumbHash decoder (hashes are stored in metadata and handed back to clients).
    case thumbhash
    /// The JSON reader behind `jsonb` columns (`JSONValue(parsing:)`).
    case json
    /// The motion-photo locator (`MotionPhotoLocator`): JPEG segments, XMP container directory
    /// and MicroVideo offset, Samsung's marker and trailer, HEIC top-level boxes.
    case motionphoto
    /// The TIFF still decoder (`StillImageDecoder` on a `.tif` upload): the streaming strip reader
    /// (`TIFFStripDecoder`: IFD, strip tables, deflate, predictor) for plain TIFFs, FFmpeg's TIFF
    /// decoder for the rest. Narrower and faster than `still`, which also hands every TIFF to libraw.
    case tiff
    /// The colour readers (`Colour/`): a JPEG's APP2 ICC chunks reassembled, a PNG's `iCCP`
    /// inflated (bounded), `cICP` and `sRGB`, a WebP's `ICCP`, a TIFF's ICC tag; the profile
    /// opened by LittleCMS, described for `metadata.color`, and a transform to sRGB built.
    case icc

    /// What the product made of one input.
    public enum Outcome: Sendable, Equatable {
        /// It was read (a result came back).
        case accepted
        /// It was refused with this error code, as a job would record it.
        case rejected(JobError.Code)
    }

    /// The largest input worth fuzzing (`-max_len`): what the product reads of such a file in
    /// one go, or a size that leaves room for every container structure while keeping runs fast.
    public var maxInputBytes: Int {
        switch self {
        case .exif: 65_536
        case .probe, .still, .motionphoto, .icc, .tiff: 262_144
        case .thumbhash: 64
        case .json: 16_384
        }
    }

    /// The limits of every media decode under fuzzing: the defaults, except a 10-second job
    /// timeout (so a decode that ignores its stop shows up as a libFuzzer timeout at 60 s, not
    /// as a legitimate 10-minute job) and 25 megapixels (so the largest frame the limits let
    /// through, at the worst bytes per pixel of any still path, fits the fuzzer's RSS limit).
    public static let limits = MediaLimits(maxPixels: 25_000_000, timeout: .seconds(10))

    /// Runs the target on one input.
    /// - Parameter bytes: The input; any bytes at all.
    /// - Returns: What the product made of it. Never throws: a rejection is an outcome.
    @discardableResult
    public func run(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        let input = [UInt8](bytes)
        switch self {
        case .exif: return Self.exif(input)
        case .thumbhash: return Self.thumbhash(input)
        case .json: return Self.json(input)
        case .probe: return Self.withScratchFile(input, name: "upload") { root, path in Self.probe(root: root, path: path) }
        case .still: return Self.still(input)
        case .motionphoto: return Self.motionPhoto(input)
        case .icc: return Self.icc(input)
        case .tiff: return Self.tiff(input)
        }
    }

    /// libFuzzer's call: runs the target and stops the process on an outcome that is a bug even
    /// though nothing crashed: bad input refused as `internal_error` (a code meant for the
    /// worker's own faults, retried as such) instead of a stable input error code.
    public func fuzz(_ bytes: UnsafeRawBufferPointer) {
        if case .rejected(let code) = run(bytes), code == .internalError {
            fatalError("fuzz-\(rawValue): the input was refused as internal_error; bad input must get an input error code")
        }
    }

    /// Runs the target on one input.
    @discardableResult
    public func run(_ bytes: [UInt8]) -> Outcome {
        bytes.withUnsafeBytes { run($0) }
    }

    // MARK: - The targets

    private static func exif(_ input: [UInt8]) -> Outcome {
        // As the metadata job and the still decoder call it: the file's first bytes.
        let header = ImageHeaderParser.parse(input)
        // As HEIFMetadata calls it: a TIFF block on its own (libheif hands over the Exif item).
        let exif = ImageHeaderParser.parseExif(input[...])
        _ = exif?.takenAt
        _ = header?.exif?.takenAt
        // A video's `location` tag is text from the file, too.
        let location = MetadataExtractor.parseISO6709(String(decoding: input.prefix(256), as: UTF8.self))
        return header != nil || exif != nil || location != nil ? .accepted : .rejected(.unsupportedFormat)
    }

    private static func motionPhoto(_ input: [UInt8]) -> Outcome {
        switch MotionPhotoLocator.locate(in: input) {
        case .none:
            return .rejected(.unsupportedFormat)
        case .video(let location):
            // Whatever it found must lie inside the input.
            precondition(location.offset >= 0 && location.length >= 0 && location.offset + location.length <= Int64(input.count),
                         "the motion-photo locator pointed outside the file")
            return .accepted
        case .unusable(_, let code, _):
            return .rejected(JobError.Code(code))
        }
    }

    private static func thumbhash(_ input: [UInt8]) -> Outcome {
        let image = ThumbHash.decodeToImage(input)
        _ = ThumbHash.averageColor(input)
        _ = ThumbHash.hasAlpha(input)
        // The decoded placeholder is a small picture; encoding it again must work too.
        _ = ThumbHash.encode(image)
        return .accepted
    }

    private static func icc(_ input: [UInt8]) -> Outcome {
        guard let description = ColourMetadata.describe(imageBytes: input) else { return .rejected(.unsupportedFormat) }
        _ = description.jsonText
        return .accepted
    }

    private static func json(_ input: [UInt8]) -> Outcome {
        // As a file of JSON is read: the bytes as UTF-8, repaired.
        do {
            let value = try JSONValue(parsing: String(decoding: input, as: UTF8.self))
            _ = value.jsonText
            return .accepted
        } catch {
            return .rejected(.invalidInput)
        }
    }

    private static func probe(root: String, path: String) -> Outcome {
        do throws(JobError) {
            _ = try MetadataExtractor.extract(root: root, relativePath: path, declaredMimeType: "application/octet-stream",
                                              limits: limits, computeChecksums: true, logger: quietLogger)
            return .accepted
        } catch {
            return .rejected(error.code)
        }
    }

    private static func still(_ input: [UInt8]) -> Outcome {
        // A TIFF structure is either a TIFF image or a camera RAW file, told apart by the upload's
        // name: render it both ways, so libraw sees every TIFF-shaped input too.
        let isTIFF = input.starts(with: [0x49, 0x49, 0x2A, 0x00]) || input.starts(with: [0x4D, 0x4D, 0x00, 0x2A])
        let names = isTIFF ? ["upload.tif", "upload.dng"] : ["upload"]
        var outcome = Outcome.rejected(.unsupportedFormat)
        for name in names {
            outcome = withScratchFile(input, name: name) { root, path in
                do throws(JobError) {
                    let file = try SafeFile.open(relativePath: path, in: root, limits: limits)
                    let still = try FFmpegLog.withJobLogger(quietLogger) { () throws(JobError) -> RenderedStill in
                        try StillRendering.decode(file: file, declaredMimeType: nil, fileName: name, maxLongEdge: 320, limits: limits,
                                                  decoderThreads: 1, cancellation: JobCancellation(), logger: quietLogger)
                    }
                    // The job's next steps on the picture: the ThumbHash placeholder.
                    _ = try ThumbHash.encode(fitting: still.image)
                    return .accepted
                } catch {
                    return .rejected(error.code)
                }
            }
        }
        return outcome
    }

    private static func tiff(_ input: [UInt8]) -> Outcome {
        withScratchFile(input, name: "upload.tif") { root, path in
            do throws(JobError) {
                let file = try SafeFile.open(relativePath: path, in: root, limits: limits)
                let still = try FFmpegLog.withJobLogger(quietLogger) { () throws(JobError) -> DecodedStill in
                    try StillImageDecoder.decode(file: file, limits: limits, maxLongEdge: 64, threads: 1, cancellation: JobCancellation())
                }
                // The reduced picture is what its header promised, in the size asked for.
                precondition(still.image.pixels.count == still.image.width * still.image.height * 4 && max(still.image.width, still.image.height) <= 64,
                             "the TIFF decoder returned a picture of the wrong size")
                return .accepted
            } catch {
                return .rejected(error.code)
            }
        }
    }

    // MARK: - Scratch files

    /// Logs nothing: FFmpeg's and the media layer's lines would drown the fuzzer's output.
    static let quietLogger = Logger(label: "medianest.fuzz") { _ in SwiftLogNoOpLogHandler() }

    /// A private directory on a memory-backed file system (`/dev/shm` when there is one) that
    /// stands in for the storage root, so inputs go through ``SafeFile`` and the real
    /// descriptor-based reads (pread, the custom AVIO) exactly as uploads do.
    ///
    /// It is made under `$MEDIANEST_FUZZ_SCRATCH` when set (scripts/fuzz.sh points it at a
    /// directory of its own and removes it afterwards: a crashing input never reaches `atexit`).
    private static let scratchRoot: String = {
        var base = getenv("MEDIANEST_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/dev/shm"
        var info = stat()
        if stat(base, &info) != 0 || (info.st_mode & S_IFMT) != S_IFDIR || access(base, W_OK) != 0 {
            base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        }
        var template = Array("\(base)/medianest-fuzz.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { fatalError("cannot create a scratch directory under \(base)") }
        let path = String(cString: made)
        atexit { FuzzTarget.removeScratchRoot() }
        return path
    }()

    private static let scratchCounter = Atomic<Int>(0)

    /// Writes `input` to a new file under ``scratchRoot``, runs `body` with the root and the
    /// file's relative path, and removes the file.
    private static func withScratchFile(_ input: [UInt8], name: String, _ body: (String, String) -> Outcome) -> Outcome {
        let root = scratchRoot
        let directory = "\(scratchCounter.add(1, ordering: .relaxed).newValue)"
        let directoryPath = "\(root)/\(directory)"
        guard mkdir(directoryPath, 0o700) == 0 else { fatalError("cannot create \(directoryPath): \(String(cString: strerror(errno)))") }
        let path = "\(directoryPath)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot create \(path): \(String(cString: strerror(errno)))") }
        let written = input.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == input.count else { fatalError("cannot write \(path)") }
        defer {
            unlink(path)
            rmdir(directoryPath)
        }
        return body(root, "\(directory)/\(name)")
    }

    private static func removeScratchRoot() {
        rmdir(scratchRoot)
    }
}
