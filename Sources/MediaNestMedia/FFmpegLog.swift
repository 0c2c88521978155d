import CFFmpeg
public import Logging
import Synchronization

/// Routes FFmpeg's own log into swift-log, tagged with the job that is running on the thread.
///
/// FFmpeg never writes to stderr once ``install(fallback:)`` ran. A message logged on a thread
/// that runs a job (inside ``withJobLogger(_:_:)``) goes to that job's logger, with its
/// `job_id` and `media_id` metadata; anything else (FFmpeg's own worker threads, library
/// initialisation) goes to the fallback logger.
///
/// Levels: FFmpeg panic → critical; fatal and error → error (FFmpeg's "fatal" is fatal to one
/// stream, such as "No JPEG data found in image" for a corrupt upload: that job's error, not the
/// daemon's); warning → warning, info → debug (FFmpeg's informational lines are version banners
/// and stream dumps), verbose → trace; FFmpeg debug and trace lines are dropped before they are
/// formatted.
public enum FFmpegLog {
    private static let fallback = Mutex<Logger>(Logger(label: "medianest.ffmpeg"))
    private static let installed = Mutex(false)
    /// The `av_log` level ``install(fallback:)`` sets: FFmpeg formats no line below it.
    private static let minimumFFmpegLevel = Mutex<Int32>(AV_LOG_VERBOSE)
    static let current = ThreadLocal<LoggerBox>()

    final class LoggerBox {
        let logger: Logger
        init(_ logger: Logger) { self.logger = logger }
    }

    /// Installs the log callback. Idempotent; later calls only replace the fallback logger.
    /// - Parameter fallback: The logger for lines not logged on behalf of a job.
    public static func install(fallback logger: Logger? = nil) {
        if let logger { fallback.withLock { $0 = logger } }
        installed.withLock { done in
            guard !done else { return }
            done = true
            av_log_set_level(minimumFFmpegLevel.withLock { $0 })
            av_log_set_callback(ffmpegLogCallback)
        }
    }

    /// Makes FFmpeg drop lines below `level` before it formats them, and installs the callback.
    ///
    /// Without it FFmpeg hands every line up to verbose to the callback, which drops what the
    /// receiving logger does not want; a process whose loggers all share one level (the tests,
    /// a quiet command) says so here and FFmpeg does not format them at all.
    /// - Parameter level: The lowest swift-log level any logger of the process writes.
    public static func setLevel(_ level: Logger.Level) {
        let value = ffmpegLevel(for: level)
        minimumFFmpegLevel.withLock { $0 = value }
        install()
        av_log_set_level(value)
    }

    /// The `av_log` level whose lines map to `level` or above (the inverse of ``level(for:)``).
    static func ffmpegLevel(for level: Logger.Level) -> Int32 {
        switch level {
        case .trace: AV_LOG_VERBOSE
        case .debug: AV_LOG_INFO
        case .info, .notice, .warning: AV_LOG_WARNING
        case .error: AV_LOG_ERROR
        case .critical: AV_LOG_PANIC
        }
    }

    /// Runs `body` with `logger` as the destination of FFmpeg lines logged on this thread.
    /// - Parameters:
    ///   - logger: The job's logger.
    ///   - body: The work that calls into FFmpeg.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public static func withJobLogger<T, E: Error>(_ logger: Logger, _ body: () throws(E) -> T) throws(E) -> T {
        install()
        let previous = current.value
        current.value = LoggerBox(logger)
        defer { current.value = previous }
        return try body()
    }

    static var logger: Logger {
        current.value?.logger ?? fallback.withLock { $0 }
    }

    // MARK: Codec threads

    /// Job loggers of open codec contexts, by the small number stored in their `opaque` field.
    ///
    /// FFmpeg's codec threads (frame and slice threads) are not the job's thread, so the
    /// thread-local logger does not reach them. Every `AVCodecContext` they log with is the job's
    /// context or a copy of it that keeps its `opaque`, so `opaque` names the job instead. It holds
    /// a key into this table, never a pointer: a line logged after the context was closed finds
    /// nothing and goes to the fallback logger.
    private static let attached = Mutex<(next: UInt, loggers: [UInt: Logger])>((1, [:]))

    /// Ties a codec context to the job logger of the calling thread, so lines its codec threads
    /// log keep the job's metadata. Does nothing outside ``withJobLogger(_:_:)``.
    /// - Parameter context: A codec context whose `opaque` nobody else uses.
    /// - Returns: The key to pass to ``detach(_:)`` when the context is freed, or `nil`.
    static func attach(_ context: UnsafeMutablePointer<AVCodecContext>) -> UInt? {
        guard let logger = current.value?.logger else { return nil }
        let key = attached.withLock { table -> UInt in
            let key = table.next
            table.next &+= 1
            table.loggers[key] = logger
            return key
        }
        context.pointee.opaque = UnsafeMutableRawPointer(bitPattern: key)
        return key
    }

    /// Forgets a key returned by ``attach(_:)``.
    static func detach(_ key: UInt) {
        _ = attached.withLock { $0.loggers.removeValue(forKey: key) }
    }

    /// The logger for a line logged with `context` as its `AVClass` context: the thread's job
    /// logger, else the job logger attached to the codec context, else the fallback.
    static func logger(for context: UnsafeMutableRawPointer?) -> Logger {
        if let box = current.value { return box.logger }
        if let context, let codecClass = avcodec_get_class(),
           context.assumingMemoryBound(to: UnsafePointer<AVClass>?.self).pointee == codecClass,
           let opaque = context.assumingMemoryBound(to: AVCodecContext.self).pointee.opaque {
            let key = UInt(bitPattern: opaque)
            if let logger = attached.withLock({ $0.loggers[key] }) { return logger }
        }
        return fallback.withLock { $0 }
    }

    static func level(for ffmpegLevel: Int32) -> Logger.Level? {
        switch ffmpegLevel {
        case ...AV_LOG_PANIC: .critical
        case ...AV_LOG_ERROR: .error
        case ...AV_LOG_WARNING: .warning
        case ...AV_LOG_INFO: .debug
        case ...AV_LOG_VERBOSE: .trace
        default: nil
        }
    }
}

private func ffmpegLogCallback(_ context: UnsafeMutableRawPointer?, _ level: Int32, _ format: UnsafePointer<CChar>?, _ arguments: CVaListPointer?) {
    guard let format, let arguments, let swiftLevel = FFmpegLog.level(for: level) else { return }
    let logger = FFmpegLog.logger(for: context)
    guard swiftLevel >= logger.logLevel else { return }
    var line = [CChar](repeating: 0, count: 1024)
    _ = line.withUnsafeMutableBufferPointer { buffer in
        CFFmpeg_format_log_line(context, level, format, arguments, buffer.baseAddress, Int32(buffer.count))
    }
    var text = cString(line)
    while text.last == "\n" || text.last == "\r" { text.removeLast() }
    guard !text.trimmingSpaces().isEmpty else { return }
    logger.log(level: swiftLevel, "\(text)", metadata: ["source": "ffmpeg"])
}
