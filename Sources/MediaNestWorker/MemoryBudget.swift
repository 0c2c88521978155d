import Foundation
import MediaNestCore
import MediaNestMedia
public import MediaNestQueue

/// The memory a worker's jobs may hold at once, and what the jobs in flight hold of it.
///
/// A pure value: the claim loop keeps one, fills ``reservations`` from its in-flight runs before
/// each claim (a run holds its estimate until its result is written, a few milliseconds after its
/// handler returned: so a job never starts, in the database's record, before the job whose room
/// it takes has completed), asks ``admits(_:)`` for every job it claimed, and hands back (uncharged) the jobs
/// that do not fit, recording them with ``hold(_:bytes:)`` so that their type is not claimed
/// again until that much room is free (no claim, hand back, claim loop). Estimates come from
/// ``JobMemoryEstimator``; docs/OPERATIONS.md ("Memory") has the figures behind them.
///
/// The rules:
/// - Without a capacity (no budget, no cgroup limit) every job fits.
/// - A job always fits a worker that runs nothing, even one larger than the whole budget: it
///   then runs alone.
/// - Otherwise a job fits when its estimate fits in what is left.
/// - While a job waits for room (a hold), no smaller job may take the room it needs once the
///   jobs at least its size finish: the waiting job is not starved by a stream of small ones.
///   A waiting job larger than the whole budget lets nothing new start, so the worker empties
///   and it runs alone.
public struct MemoryBudget: Sendable, Hashable {
    /// The bytes the jobs may hold at once, or `nil` for no limit.
    public var capacity: Int64?
    /// What each running job holds, by job id.
    public private(set) var reservations: [String: Int64] = [:]
    /// Per job type, the estimate of a job of that type handed back because it did not fit.
    public private(set) var holds: [JobType: Int64] = [:]

    /// A budget of `capacity` bytes (`nil`: unbounded) with nothing reserved.
    public init(capacity: Int64?) {
        self.capacity = capacity.map { max(0, $0) }
    }

    /// The bytes reserved by running jobs.
    public var reserved: Int64 { reservations.values.reduce(0, +) }

    /// The bytes left, or `nil` when unbounded.
    public var available: Int64? { capacity.map { max(0, $0 - reserved) } }

    /// The largest estimate among the held jobs (the room they wait for).
    private var largestHold: Int64? { holds.values.max() }

    /// Whether a job estimated at `bytes` may start now (the rules above).
    public func admits(_ bytes: Int64) -> Bool {
        guard let capacity else { return true }
        if reservations.isEmpty { return true }
        guard reserved + bytes <= capacity else { return false }
        if let waiting = largestHold, bytes < waiting {
            // Keep room for the waiting job: the jobs smaller than it, this one included, must
            // leave it room once the jobs at least its size are gone.
            guard waiting <= capacity else { return false }
            let smaller = reservations.values.filter { $0 < waiting }.reduce(0, +)
            return smaller + bytes + waiting <= capacity
        }
        return true
    }

    /// Whether `bytes` would fit now, the waiting jobs aside (when a held job may be claimed again).
    private func fitsIgnoringHolds(_ bytes: Int64) -> Bool {
        guard let capacity else { return true }
        return reservations.isEmpty || reserved + bytes <= capacity
    }

    /// Records that job `id` runs holding `bytes`.
    public mutating func reserve(_ id: String, bytes: Int64) {
        reservations[id] = max(0, bytes)
    }

    /// Records that job `id` no longer holds memory (its handler returned).
    public mutating func release(_ id: String) {
        reservations[id] = nil
    }

    /// Replaces the reservations with those of the runs in flight now.
    public mutating func setReservations(_ running: [String: Int64]) {
        reservations = running.mapValues { max(0, $0) }
    }

    /// Records a job of `type` estimated at `bytes` that was handed back for want of room.
    /// Its type is not claimed again until ``takeHoldsThatFit()`` finds the room.
    public mutating func hold(_ type: JobType, bytes: Int64) {
        holds[type] = max(holds[type] ?? 0, bytes)
    }

    /// The held types whose job fits now, largest first; their holds are removed (they are
    /// claimed, one job each, before anything else).
    public mutating func takeHoldsThatFit() -> [JobType] {
        let fitting = holds.filter { fitsIgnoringHolds($0.value) }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        guard let first = fitting.first else { return [] }
        // With nothing running only one can be sure to fit: the largest, alone.
        let taken = reservations.isEmpty ? [first] : fitting
        for (type, _) in taken { holds[type] = nil }
        return taken.map(\.key)
    }

    /// How many of the `wanted` jobs of a type whose smallest job is `minimum` bytes could fit now:
    /// the claim asks for no more, so that few claimed jobs have to be handed back.
    /// A held type gets none.
    public func slots(_ wanted: Int, of type: JobType, minimum: Int64) -> Int {
        guard wanted > 0, holds[type] == nil else { return 0 }
        guard capacity != nil else { return wanted }
        guard admits(minimum) else { return 0 }
        guard let available, minimum > 0 else { return wanted }
        return max(1, min(wanted, Int(available / minimum)))
    }
}

/// What a job will hold at its peak, estimated from its type and what is known of its media item
/// when it is claimed: the declared MIME type, the file size, and `media_items.metadata` once the
/// metadata job has run (`width`, `height`, `kind`, `bit_depth`; docs/METADATA.md).
///
/// Each estimate is a base (codec contexts, encoder state, I/O buffers, the output) plus bytes
/// per pixel of the decoded frame. The constants come from peak RSS measured on generated media
/// with the `thumbnail` and `transcode` commands under `/usr/bin/time -v`, minus the idle
/// process (docs/OPERATIONS.md, "Memory", has the table). When the dimensions are not known yet
/// (the metadata job has not run) a still is taken to be ``defaultStillPixels`` and a video
/// ``defaultVideoPixels``: large enough for most phones and cameras, so that an unknown job is
/// rarely under-estimated.
public struct JobMemoryEstimator: Sendable, Hashable {
    /// The pixel limit of a decode (`--max-pixels`): no frame larger is ever decoded.
    public var maxPixels: Int64
    /// The short edge a rendition is scaled to at most (`--transcode-max-resolution`).
    public var transcodeMaxResolution: Int
    /// Encoder threads per transcode (`--transcode-threads`, by default the cores).
    public var transcodeThreads: Int

    public init(maxPixels: Int64 = 100_000_000, transcodeMaxResolution: Int = 1080, transcodeThreads: Int = 1) {
        self.maxPixels = max(1, maxPixels)
        self.transcodeMaxResolution = max(1, transcodeMaxResolution)
        self.transcodeThreads = max(1, transcodeThreads)
    }

    /// The estimator for a worker's pixel limit (`--max-pixels`) and rendition size
    /// (`--transcode-max-resolution`).
    public init(configuration: WorkerConfiguration) {
        self.init(maxPixels: configuration.mediaLimits.maxPixels, transcodeMaxResolution: configuration.transcode.maxResolution,
                  transcodeThreads: configuration.transcode.threads ?? WorkerConfiguration.cores)
    }

    static let mebibyte: Int64 = 1 << 20

    /// A still whose dimensions are not known yet is taken to be this large (24 MP).
    public static let defaultStillPixels: Int64 = 6000 * 4000
    /// A video whose dimensions are not known yet is taken to be this large (2160p).
    public static let defaultVideoPixels: Int64 = 3840 * 2160

    // Calibration: docs/OPERATIONS.md, "Memory", has the measurements. Each constant is the
    // job's share of the peak (the command's peak less the idle process), rounded up.
    /// Probe and checksums (17 MiB on a 2160p clip). A probe that decodes a whole image (PNG,
    /// JPEG XL) takes more until the metadata job reads dimensions from headers only.
    static let metadataBase: Int64 = 48 * mebibyte
    static let stillBase: Int64 = 24 * mebibyte
    /// A JPEG decodes reduced (DCT scaling); a progressive one keeps its coefficients (2.4 B/px).
    static let stillBytesPerPixelJPEG: Int64 = 3
    /// Other 8-bit stills decode whole (an 8-bit 24 MP PNG: 3.8 B/px).
    static let stillBytesPerPixel8Bit: Int64 = 8
    /// High-bit-depth stills (a 16-bit PNG: 10.4 B/px; 10-bit AVIF, 16-bit JPEG XL: 25–29 B/px).
    static let stillBytesPerPixelHighBitDepth: Int64 = 28
    static let audioStillBase: Int64 = 48 * mebibyte
    /// A video still or trickplay sheet decodes frames one at a time (2160p: 19 MiB).
    static let videoStillBase: Int64 = 48 * mebibyte
    static let videoStillBytesPerPixel: Int64 = 8
    static let transcodeBase: Int64 = 32 * mebibyte
    /// The decoder's reference frames at source size (more for sources with many references).
    static let transcodeBytesPerSourcePixel: Int64 = 24
    /// The encoder's lookahead and frame threads at rendition size: this much with one thread…
    static let transcodeBytesPerOutputPixel: Int64 = 80
    /// …and this much more per further thread (1080p: 239 MiB peak with 1 thread, 470 with 8).
    static let transcodeBytesPerOutputPixelPerThread: Int64 = 20
    static let audioTranscodeBase: Int64 = 64 * mebibyte

    /// The smallest estimate a job of `type` can get: what the claim sizes its request with.
    public func minimum(for type: JobType) -> Int64 {
        switch type {
        case .metadata: JobMemoryEstimator.metadataBase
        case .transcode: min(JobMemoryEstimator.transcodeBase, JobMemoryEstimator.audioTranscodeBase)
        default: JobMemoryEstimator.stillBase
        }
    }

    /// The estimated peak of one job of `type` on `item` (`nil`: the item is gone and the job fails at once).
    public func estimate(type: JobType, item: MediaItemRecord?) -> Int64 {
        guard let item else { return 0 }
        let kind = Kind(item)
        let pixels = knownPixels(item.metadata)
        switch type {
        case .metadata:
            return JobMemoryEstimator.metadataBase
        case .thumbnail, .preview:
            switch kind {
            case .audio:
                return JobMemoryEstimator.audioStillBase
            case .video:
                let frame = min(pixels ?? JobMemoryEstimator.defaultVideoPixels, maxPixels)
                return JobMemoryEstimator.videoStillBase + JobMemoryEstimator.videoStillBytesPerPixel * frame
            case .image, .unknown:
                let frame = min(pixels ?? JobMemoryEstimator.defaultStillPixels, maxPixels)
                let perPixel = highBitDepth(item) ? JobMemoryEstimator.stillBytesPerPixelHighBitDepth
                    : isJPEG(item) ? JobMemoryEstimator.stillBytesPerPixelJPEG : JobMemoryEstimator.stillBytesPerPixel8Bit
                return JobMemoryEstimator.stillBase + perPixel * frame
            }
        case .transcode:
            if kind == .audio { return JobMemoryEstimator.audioTranscodeBase }
            let source = min(pixels ?? JobMemoryEstimator.defaultVideoPixels, maxPixels)
            let encoderPerPixel = JobMemoryEstimator.transcodeBytesPerOutputPixel
                + JobMemoryEstimator.transcodeBytesPerOutputPixelPerThread * Int64(transcodeThreads - 1)
            return JobMemoryEstimator.transcodeBase + JobMemoryEstimator.transcodeBytesPerSourcePixel * source
                + encoderPerPixel * outputPixels(source: source, metadata: item.metadata)
        default:
            // A type this estimator does not know: as much as an unknown still.
            return JobMemoryEstimator.stillBase + JobMemoryEstimator.stillBytesPerPixelHighBitDepth * min(JobMemoryEstimator.defaultStillPixels, maxPixels)
        }
    }

    private enum Kind: Equatable {
        case image, video, audio, unknown
        init(_ item: MediaItemRecord) {
            let declared = item.metadata["kind"]?.stringValue ?? String(item.mimeType.lowercased().prefix { $0 != "/" })
            switch declared {
            case "image": self = .image
            case "video": self = .video
            case "audio": self = .audio
            default: self = .unknown
            }
        }
    }

    /// `width` × `height` from the metadata job, when both are positive.
    private func knownPixels(_ metadata: JSONValue) -> Int64? {
        guard let width = metadata["width"]?.intValue, let height = metadata["height"]?.intValue, width > 0, height > 0,
              width <= 1 << 20, height <= 1 << 20 else { return nil }
        return width * height
    }

    /// The rendition's pixels: the source scaled so its short edge is at most the maximum resolution.
    private func outputPixels(source: Int64, metadata: JSONValue) -> Int64 {
        let limit = Int64(transcodeMaxResolution)
        guard let width = metadata["width"]?.intValue, let height = metadata["height"]?.intValue, width > 0, height > 0 else {
            // Unknown shape: a 16:9 frame at the limit.
            return min(source, limit * limit * 16 / 9)
        }
        let short = min(width, height)
        guard short > limit else { return source }
        return source * limit * limit / (short * short)
    }

    private func isJPEG(_ item: MediaItemRecord) -> Bool {
        (item.metadata["mime_sniffed"]?.stringValue ?? item.mimeType).lowercased() == "image/jpeg"
    }

    /// Whether a still decodes to more than 8 bits per component: the metadata job's `bit_depth`
    /// when known, else the formats that usually do.
    private func highBitDepth(_ item: MediaItemRecord) -> Bool {
        if let depth = item.metadata["bit_depth"]?.intValue { return depth > 8 }
        let mime = (item.metadata["mime_sniffed"]?.stringValue ?? item.mimeType).lowercased()
        return ["image/heic", "image/heif", "image/avif", "image/jxl", "image/tiff", "image/x-adobe-dng"].contains(mime)
            || mime.hasPrefix("image/x-") // camera RAW formats (image/x-canon-cr2, image/x-nikon-nef, …)
    }
}

/// The memory limit of the cgroup this process runs in, for the default memory budget.
///
/// cgroup v2: the `0::<path>` line of `/proc/self/cgroup`, then `memory.max` of that cgroup and
/// of each ancestor up to the root; the smallest number wins and `max` means none. cgroup v1
/// (the `memory` controller line): `memory.limit_in_bytes` of that group, or of the mount's
/// root inside a container whose namespace hides the path; values of 2^62 and more mean none.
public enum CgroupMemoryLimit {
    /// The limit in bytes, or `nil` when there is none (or no cgroup file can be read).
    /// - Parameters:
    ///   - procSelfCgroup: The text of `/proc/self/cgroup`.
    ///   - readFile: Reads a file of the cgroup filesystem, `nil` when absent.
    ///   - mount: Where the cgroup filesystem is mounted.
    public static func limit(procSelfCgroup: String, mount: String = "/sys/fs/cgroup",
                             readFile: (String) -> String?) -> Int64? {
        let lines = procSelfCgroup.split(separator: "\n").map(String.init)
        var tightest: Int64?
        func consider(_ value: Int64?) {
            guard let value else { return }
            tightest = min(tightest ?? value, value)
        }
        if let line = lines.first(where: { $0.hasPrefix("0::") }) {
            var path = String(line.dropFirst(3))
            while true {
                let directory = path == "/" || path.isEmpty ? mount : mount + path
                if let text = readFile(directory + "/memory.max") { consider(parse(text)) }
                if path == "/" || path.isEmpty { break }
                path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
                if path.isEmpty { path = "/" }
            }
        }
        if tightest == nil, let line = lines.first(where: { $0.split(separator: ":", maxSplits: 2).dropFirst().first?.split(separator: ",").contains("memory") == true }) {
            let path = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).last.map(String.init) ?? "/"
            let own = readFile(mount + "/memory" + (path == "/" ? "" : path) + "/memory.limit_in_bytes")
            consider(parse(own ?? readFile(mount + "/memory/memory.limit_in_bytes") ?? "max"))
        }
        return tightest
    }

    /// Reads the limit of this process from `/proc/self/cgroup` and `/sys/fs/cgroup`.
    public static func current() -> Int64? {
        guard let cgroup = readText("/proc/self/cgroup") else { return nil }
        return limit(procSelfCgroup: cgroup, readFile: readText)
    }

    /// `max` (none), a number of bytes, or a number of 2^62 and more (cgroup v1's "none").
    static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed != "max", let value = Int64(trimmed), value > 0, value < 1 << 62 else { return nil }
        return value
    }

    private static func readText(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// How the memory budget is set (`memory.budget`, `--memory-budget`, `MEDIANEST_MEMORY_BUDGET`).
public enum MemoryBudgetSetting: Sendable, Hashable {
    /// `auto` (the default): the cgroup's memory limit less ``MemoryBudgetSetting/idleReserve``,
    /// none without a limit.
    case automatic
    /// `none`: no budget; only the concurrency limits apply.
    case unbounded
    /// A number of bytes the jobs may hold at once.
    case bytes(Int64)

    /// What the worker itself holds beside its jobs (measured idle RSS, about 30 MiB, plus the
    /// allocator's slack): taken off a cgroup limit, never off a budget given in bytes.
    public static let idleReserve: Int64 = 96 << 20

    /// The capacity in bytes, `nil` for none, reading the cgroup limit with `cgroupLimit`.
    public func capacity(cgroupLimit: () -> Int64? = CgroupMemoryLimit.current) -> Int64? {
        switch self {
        case .automatic: cgroupLimit().map { max(0, $0 - MemoryBudgetSetting.idleReserve) }
        case .unbounded: nil
        case .bytes(let bytes): bytes
        }
    }

    /// Parses `auto`, `none` (also `off`, `max`), or a size: bytes, or a number with `K`, `M`,
    /// `G` or `T` (powers of 1024, as systemd's `MemoryMax=`; `KiB`, `MiB`, … too).
    public static func parse(_ text: String) -> MemoryBudgetSetting? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        switch trimmed.lowercased() {
        case "auto", "": return .automatic
        case "none", "off", "max", "infinity": return .unbounded
        default: break
        }
        var digits = Substring(trimmed)
        var unit = ""
        while let last = digits.last, last.isLetter { unit = String(last) + unit; digits = digits.dropLast() }
        let shifts: [String: Int64] = ["": 0, "k": 10, "kib": 10, "m": 20, "mib": 20, "g": 30, "gib": 30, "t": 40, "tib": 40]
        guard let shift = shifts[unit.lowercased()], let number = Double(digits.trimmingCharacters(in: .whitespaces)),
              number.isFinite, number > 0 else { return nil }
        let bytes = number * Double(Int64(1) << shift)
        guard bytes >= 1, bytes < Double(Int64(1) << 62) else { return nil }
        return .bytes(Int64(bytes.rounded()))
    }

    /// The setting as `config show` prints it.
    public var description: String {
        switch self {
        case .automatic: "auto"
        case .unbounded: "none"
        case .bytes(let bytes): bytes % (1 << 20) == 0 ? "\(bytes >> 20)M" : String(bytes)
        }
    }
}
