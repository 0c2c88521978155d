import MediaNestCore

/// The resource limits every media job enforces on untrusted input.
///
/// The defaults suit a home media library: large enough for any camera or phone file, small
/// enough that a hostile upload cannot make the worker read, decode or wait forever.
public struct MediaLimits: Sendable, Hashable {
    /// Largest input file accepted, in bytes (`too_large` above it). Default 64 GiB.
    public var maxInputBytes: Int64
    /// How many bytes FFmpeg may read to recognise the container and its streams. Default 5 MB.
    public var probeSize: Int64
    /// How much media time FFmpeg may analyse to fill in stream parameters. Default 5 s.
    public var analyzeDuration: Duration
    /// Largest frame accepted, in pixels (`pixel_limit` above it). Default 100 megapixels.
    public var maxPixels: Int64
    /// Longest media accepted (`duration_limit` above it). Default 24 h.
    public var maxDuration: Duration
    /// Wall-clock limit of one job (`timeout` after it). Default 10 min.
    public var timeout: Duration

    /// Creates limits; every parameter defaults to the documented default.
    /// - Parameters:
    ///   - maxInputBytes: Largest input file, in bytes.
    ///   - probeSize: Bytes FFmpeg may read while probing.
    ///   - analyzeDuration: Media time FFmpeg may analyse while probing.
    ///   - maxPixels: Largest frame, in pixels.
    ///   - maxDuration: Longest media duration.
    ///   - timeout: Wall-clock limit of one job.
    public init(
        maxInputBytes: Int64 = 64 << 30,
        probeSize: Int64 = 5_000_000,
        analyzeDuration: Duration = .seconds(5),
        maxPixels: Int64 = 100_000_000,
        maxDuration: Duration = .seconds(24 * 3600),
        timeout: Duration = .seconds(600)
    ) {
        self.maxInputBytes = maxInputBytes
        self.probeSize = probeSize
        self.analyzeDuration = analyzeDuration
        self.maxPixels = maxPixels
        self.maxDuration = maxDuration
        self.timeout = timeout
    }

    /// The documented defaults.
    public static let `default` = MediaLimits()

    /// Whether a frame of `width` × `height` is over ``maxPixels``. Never overflows: dimensions
    /// read from a header go up to 2^32 - 1 each (PNG, TIFF), whose product is past `Int64.max`.
    public func exceedsPixelLimit(width: Int, height: Int) -> Bool {
        let (pixels, overflow) = Int64(width).multipliedReportingOverflow(by: Int64(height))
        return overflow || pixels > maxPixels
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

/// The stop condition of one media operation: the job's token plus the limits' own deadline.
///
/// C callbacks (FFmpeg's interrupt callback, the AVIO read function) receive an unretained
/// pointer to this object; its owner keeps it alive for as long as the C object exists.
final class StopGuard: Sendable {
    let cancellation: JobCancellation
    private let deadline: ContinuousClock.Instant?

    init(cancellation: JobCancellation?, timeout: Duration?) {
        self.cancellation = cancellation ?? JobCancellation()
        self.deadline = timeout.map { ContinuousClock.now + $0 }
    }

    /// The reason to stop, or `nil`. Cheap: one lock and one clock read.
    var stopReason: StopReason? {
        if let reason = cancellation.stopReason { return reason }
        if let deadline, ContinuousClock.now >= deadline {
            // Record it on the job's token so the engine and every later check agree.
            cancellation.stop(.timeout)
            return cancellation.stopReason
        }
        return nil
    }

    /// Throws the stop's error if the operation must stop.
    func check() throws(JobError) {
        if let reason = stopReason { throw reason.error }
    }
}
