/// Why a job failed, in a form that can be stored, shown to a person, and acted on.
///
/// Every failure a handler or the engine reports is a ``JobError``. Its ``code`` is stable
/// (operators grep and alert on it), its ``message`` is written for a person and names the file
/// and the limit involved, and ``isRetryable`` says whether running the job again can help.
///
/// Codes follow the pattern of postgres-nio's `PSQLError.Code`: a struct with static members, so
/// new codes can be added without breaking callers that switch over known ones.
public struct JobError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable failure code such as `unsupported_format`.
    public struct Code: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
        /// The code as stored in `output_data.error.code`.
        public let rawValue: String

        public init(_ rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        // Input problems: permanent, retrying cannot help.
        /// The file's container or codec is not one the worker accepts.
        public static let unsupportedFormat: Code = "unsupported_format"
        /// The file is truncated or damaged.
        public static let corruptMedia: Code = "corrupt_media"
        /// The file is empty.
        public static let emptyFile: Code = "empty_file"
        /// The file's content is not media, or not the media its declared MIME type says.
        public static let mimeMismatch: Code = "mime_mismatch"
        /// The file exceeds the configured maximum input size.
        public static let tooLarge: Code = "too_large"
        /// A frame exceeds the configured pixel limit.
        public static let pixelLimit: Code = "pixel_limit"
        /// The media's duration exceeds the configured limit.
        public static let durationLimit: Code = "duration_limit"
        /// The storage path resolves outside the storage root.
        public static let pathOutsideStorage: Code = "path_outside_storage"
        /// The storage path names a directory, device, FIFO or socket.
        public static let notARegularFile: Code = "not_a_regular_file"
        /// The file named by the media item does not exist.
        public static let fileMissing: Code = "file_missing"
        /// The job's media item no longer exists.
        public static let mediaItemMissing: Code = "media_item_missing"
        /// No handler is registered for the job's type.
        public static let unknownJobType: Code = "unknown_job_type"
        /// The job's input_data is malformed.
        public static let invalidInput: Code = "invalid_input"

        // Environment problems: usually transient.
        /// The job ran past its wall-clock limit.
        public static let timeout: Code = "timeout"
        /// A read or write failed.
        public static let ioError: Code = "io_error"
        /// The output disk is full.
        public static let diskFull: Code = "disk_full"
        /// The file changed (size, modification time, inode or device) while the job was reading
        /// it; nothing was recorded, and a later run reads the new file.
        public static let fileChanged: Code = "file_changed"
        /// The database connection was lost.
        public static let databaseUnavailable: Code = "database_unavailable"
        /// The worker process died while running the job (set by crash recovery).
        public static let workerLost: Code = "worker_lost"
        /// Anything not classified above.
        public static let internalError: Code = "internal_error"

        // Control flow: not failures in the usual sense.
        /// The job was cancelled by an operator.
        public static let cancelled: Code = "cancelled"
        /// The worker is shutting down; the job is released, not failed.
        public static let shutdown: Code = "shutdown"
        /// The worker lost its lease; another worker owns the job now.
        public static let leaseLost: Code = "lease_lost"
    }

    /// The stable machine-readable code.
    public var code: Code
    /// A sentence for a person: what was wrong, with which file, against which limit.
    ///
    /// Control characters are escaped (``Swift/String/escapingControlCharacters()``) whenever it
    /// is set: messages quote untrusted text (storage paths, tags, libpq and FFmpeg messages) and
    /// end up in logs, `processing_jobs` and user notifications.
    public var message: String {
        get { escapedMessage }
        set { escapedMessage = newValue.escapingControlCharacters() }
    }
    private var escapedMessage: String
    /// Whether running the job again may succeed.
    public var isRetryable: Bool

    /// Creates an error.
    /// - Parameters:
    ///   - code: The stable code.
    ///   - message: A message a person understands; control characters are escaped.
    ///   - retryable: Whether a retry can help; defaults to the code's usual answer.
    public init(_ code: Code, _ message: String, retryable: Bool? = nil) {
        self.code = code
        self.escapedMessage = message.escapingControlCharacters()
        self.isRetryable = retryable ?? JobError.defaultRetryable(code)
    }

    /// Whether a code is retryable when the thrower does not say.
    public static func defaultRetryable(_ code: Code) -> Bool {
        switch code {
        case .timeout, .ioError, .fileChanged, .diskFull, .databaseUnavailable, .internalError, .workerLost:
            return true
        default:
            return false
        }
    }

    public var description: String { "\(code): \(message)" }

    /// Turns any error into a ``JobError``, classifying what it can.
    ///
    /// A ``JobError`` passes through unchanged; anything else becomes `internal_error` with the
    /// error's description, marked retryable so that a bug in one release does not fail jobs
    /// forever.
    public static func wrapping(_ error: any Error) -> JobError {
        if let jobError = error as? JobError { return jobError }
        if error is CancellationError { return JobError(.cancelled, "The job was cancelled.") }
        return JobError(.internalError, String(describing: error), retryable: true)
    }

    /// The JSON stored in `output_data.error`.
    /// - Parameter attempt: The attempt number that failed.
    public func json(attempt: Int) -> JSONValue {
        [
            "code": .string(code.rawValue),
            "message": .string(message),
            "retryable": .bool(isRetryable),
            "attempt": .int(Int64(attempt)),
        ]
    }
}
