public import Logging
public import MediaNestCore
import Synchronization

/// The kind of work a job asks for: the seed's `processing_jobs.job_type` values.
public struct JobType: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public static func < (lhs: JobType, rhs: JobType) -> Bool { lhs.rawValue < rhs.rawValue }

    public static let metadata: JobType = "metadata"
    public static let thumbnail: JobType = "thumbnail"
    public static let preview: JobType = "preview"
    public static let transcode: JobType = "transcode"

    /// Every type the schema allows, in the order an item's jobs usually run.
    public static let all: [JobType] = [.metadata, .thumbnail, .preview, .transcode]
}

/// A job as the engine claimed it.
public struct ClaimedJob: Sendable, Hashable {
    /// `processing_jobs.id`.
    public var id: String
    /// `processing_jobs.media_item_id`.
    public var mediaItemID: String
    public var type: JobType
    /// The attempt this run is (1 for the first run), for messages and backoff. It does not
    /// fence anything: rescue and release give an attempt back, so two runs can share it.
    public var attempt: Int
    public var maxAttempts: Int
    public var priority: Int
    /// `processing_jobs.input_data` (`{}` when NULL).
    public var input: JSONValue
    /// `processing_jobs.lease_id`: the token of this claim, new on every claim. Every write the
    /// run makes (heartbeat, complete, fail, release) is fenced on it.
    public var leaseID: String

    /// A lease id that no claim ever gets, for jobs made up outside the database (handler tests).
    public static let unclaimedLeaseID = "00000000-0000-0000-0000-000000000000"

    public init(id: String, mediaItemID: String, type: JobType, attempt: Int, maxAttempts: Int, priority: Int, input: JSONValue,
                leaseID: String = ClaimedJob.unclaimedLeaseID) {
        self.id = id
        self.mediaItemID = mediaItemID
        self.type = type
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.priority = priority
        self.input = input
        self.leaseID = leaseID
    }
}

/// The columns of the job's `media_items` row that handlers need.
public struct MediaItemRecord: Sendable, Hashable {
    public var id: String
    public var ownerID: String
    public var filename: String
    public var originalFilename: String?
    /// The MIME type the upload pipeline declared.
    public var mimeType: String
    /// The size the upload pipeline recorded; the metadata job checks it.
    public var fileSize: Int64?
    /// Relative to the storage root. Never trusted: resolve it with the media module's safe open.
    public var storagePath: String
    public var metadata: JSONValue

    public init(id: String, ownerID: String, filename: String, originalFilename: String?, mimeType: String,
                fileSize: Int64?, storagePath: String, metadata: JSONValue) {
        self.id = id
        self.ownerID = ownerID
        self.filename = filename
        self.originalFilename = originalFilename
        self.mimeType = mimeType
        self.fileSize = fileSize
        self.storagePath = storagePath
        self.metadata = metadata
    }
}

/// Where media lives on this host.
public struct StorageLayout: Sendable, Hashable {
    /// Absolute path of the storage root; `media_items.storage_path` is relative to it.
    public var root: String
    /// Absolute path under which derived files (thumbnails, previews, renditions) are written.
    public var derivedRoot: String

    public init(root: String, derivedRoot: String? = nil) {
        self.root = root
        self.derivedRoot = derivedRoot ?? (root.hasSuffix("/") ? root + ".derived" : root + "/.derived")
    }

    /// The derived root relative to the storage root (`.derived` by default), or `nil` when the
    /// derived root lies outside the storage root.
    ///
    /// `media_items.thumbnail_path`, `preview_path` and rendition paths are stored relative to
    /// the storage root, so the web tier serves every file from one place; a derived root outside
    /// the storage root is therefore refused by the configuration.
    public var derivedRootRelativeToStorage: String? {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        let derived = derivedRoot.hasSuffix("/") ? String(derivedRoot.dropLast()) : derivedRoot
        guard derived.hasPrefix(base + "/") else { return nil }
        let relative = String(derived.dropFirst(base.count + 1))
        return relative.split(separator: "/").contains("..") || relative.isEmpty ? nil : relative
    }

    /// The storage-relative path of a file whose path relative to the derived root is `relative`.
    public func storageRelativePath(ofDerived relative: String) -> String? {
        derivedRootRelativeToStorage.map { $0 + "/" + relative }
    }
}

/// Everything a handler gets for one run of one job.
public struct JobContext: Sendable {
    public var job: ClaimedJob
    public var mediaItem: MediaItemRecord
    public var storage: StorageLayout
    /// Report progress here; the heartbeat writes it to `progress_info`.
    public var progress: JobProgress
    /// Poll this between units of work and from C interrupt callbacks.
    public var cancellation: JobCancellation
    /// Carries `job_id`, `job_type` and `media_id` metadata.
    public var logger: Logger
    /// Item changes worth keeping even though the run fails (checksums of a file that could be
    /// read but not parsed); the engine applies ``JobSalvage/current`` with the failure.
    public var salvage: JobSalvage
    /// Where the run's reads of its media file are counted: open the file with it (the media
    /// module's `SafeFile.open(…, countingInto:)`). The engine adds the total to
    /// `medianest_bytes_read_total{type}` once the handler returned.
    public var bytesRead: ByteCounter

    public init(job: ClaimedJob, mediaItem: MediaItemRecord, storage: StorageLayout, progress: JobProgress,
                cancellation: JobCancellation, logger: Logger, salvage: JobSalvage = JobSalvage(), bytesRead: ByteCounter = ByteCounter()) {
        self.job = job
        self.mediaItem = mediaItem
        self.storage = storage
        self.progress = progress
        self.cancellation = cancellation
        self.logger = logger
        self.salvage = salvage
        self.bytesRead = bytesRead
    }
}

/// What a failing run still wants recorded on its media item.
///
/// A handler that learns something true about the item before it fails (the metadata job's
/// checksums of a file that is intact on disk but cannot be parsed) records it here before
/// throwing. The engine reads ``current`` once the handler returned and applies it together with
/// the failure, fenced like a completion, so a run that lost its job writes nothing. A successful
/// run's ``JobOutcome/itemUpdate`` is what counts; the salvage is ignored then.
///
/// Safe to use from any thread: the handler runs on one of the worker's job threads.
public final class JobSalvage: Sendable {
    private let update = Mutex(MediaItemUpdate())

    /// Creates an empty salvage.
    public init() {}

    /// Replaces what is recorded.
    /// - Parameter update: The item changes to apply with the failure.
    public func record(_ update: MediaItemUpdate) {
        self.update.withLock { $0 = update }
    }

    /// Forgets what was recorded, e.g. when the file turned out to have changed underneath.
    public func clear() {
        update.withLock { $0 = MediaItemUpdate() }
    }

    /// What is recorded now; ``MediaItemUpdate/isEmpty`` when nothing is.
    public var current: MediaItemUpdate {
        update.withLock { $0 }
    }
}

/// A `media_metadata` row a handler wants written.
public struct ProviderMetadata: Sendable, Hashable {
    /// One of the seed's providers: `tmdb`, `tvdb`, `imdb`, `local`.
    public var provider: String
    public var externalID: String?
    public var data: JSONValue
    public var confidence: Double

    public init(provider: String, externalID: String? = nil, data: JSONValue, confidence: Double) {
        self.provider = provider
        self.externalID = externalID
        self.data = data
        self.confidence = confidence
    }
}

/// Changes to the job's `media_items` row, applied by the engine in the same transaction as the
/// job's completion, and only if this run still owns the job.
public struct MediaItemUpdate: Sendable, Hashable {
    /// Merged into `media_items.metadata` (top-level keys replace).
    public var metadataMerge: [String: JSONValue] = [:]
    public var checksumMD5: String?
    public var checksumSHA256: String?
    /// The size actually read, when it differs from what was recorded.
    public var fileSize: Int64?
    /// Relative to the storage root (for example `.derived/3f/<id>/thumbnail.webp`).
    public var thumbnailPath: String?
    /// Relative to the storage root (for example `.derived/3f/<id>/preview.jpg`).
    public var previewPath: String?
    /// Rows to upsert into `media_metadata` (one per provider).
    public var providerMetadata: [ProviderMetadata] = []
    /// Merged into `media_items.processing_info` (top-level keys replace), e.g. `renditions`.
    public var processingInfoMerge: [String: JSONValue] = [:]
    /// Set by the metadata job when the file is half of a Live Photo: the engine pairs it with
    /// the other half of the same owner in the same transaction (see ``LivePhotoLink``).
    public var livePhoto: LivePhotoLink?
    /// `media_items.perceptual_hash`: the still's 64-bit perceptual hash, its bits as a signed
    /// integer (see docs/DUPLICATES.md).
    public var perceptualHash: Int64?

    public init() {}

    public var isEmpty: Bool { self == MediaItemUpdate() }
}

/// One half of an Apple Live Photo, as the metadata job found it: the still (HEIC or JPEG whose
/// Apple MakerNote has a ContentIdentifier) or the motion (a MOV whose QuickTime
/// `com.apple.quicktime.content.identifier` is the same identifier).
///
/// When the run completes, the engine looks for the other half (same owner, same identifier,
/// the other kind) and, when it exists, links both in the same transaction: the still's
/// `metadata.live_photo.video_id`, the video's `metadata.live_photo.still_id` and
/// `metadata.live_photo.role = "motion"`. docs/QUEUE.md (lock order) says why two halves
/// completed at the same moment on two workers still find each other.
public struct LivePhotoLink: Sendable, Hashable {
    /// Which half an item is.
    public enum Role: String, Sendable, Hashable {
        /// The photo (`metadata.kind = "image"`).
        case still
        /// The short video (`metadata.kind = "video"`).
        case motion

        /// The `metadata.kind` of the other half.
        var partnerKind: String { self == .still ? "video" : "image" }
    }

    /// The identifier both halves carry (`metadata.live_photo.content_id`).
    public var contentID: String
    /// This item's half.
    public var role: Role

    /// Creates a link request.
    public init(contentID: String, role: Role) {
        self.contentID = contentID
        self.role = role
    }
}

/// What a successful run returns.
public struct JobOutcome: Sendable, Hashable {
    /// Stored in `processing_jobs.output_data`.
    public var output: JSONValue
    public var itemUpdate: MediaItemUpdate

    public init(output: JSONValue, itemUpdate: MediaItemUpdate = MediaItemUpdate()) {
        self.output = output
        self.itemUpdate = itemUpdate
    }
}

/// Does the work of one job type.
///
/// The worker calls ``run(_:)`` on one of its own job threads (exactly one per slot of
/// `--concurrency`), never on Swift's cooperative pool nor a Dispatch queue, so a handler may
/// block in C code (FFmpeg, libmagic, file reads). It must:
/// - poll ``JobContext/cancellation`` often enough to stop within a heartbeat interval;
/// - throw ``JobError`` for every failure, with a stable code and a message a person understands;
/// - write outputs to a temporary file, fsync and rename them into place, so that a killed run
///   leaves nothing half-written;
/// - be safe to run again: a job may run more than once after a crash.
public protocol JobHandler: Sendable {
    /// The job type this handler serves.
    var jobType: JobType { get }
    /// Does the work.
    /// - Parameter context: The job, its media item, storage paths, progress, cancellation, logger.
    /// - Returns: The job's output and the media item changes to apply with its completion.
    /// - Throws: ``JobError``.
    func run(_ context: JobContext) throws(JobError) -> JobOutcome
}

/// Runs the claimed jobs of one media item as one execution: the item's thumbnail and preview
/// from one decode of its file.
///
/// The engine claims an item's pending jobs of ``jobTypes`` together (see
/// ``JobStore/claimUnits(slots:limit:together:on:)``) and hands them to ``run(together:)`` on one
/// thread of its pool; a job claimed without its sibling (retried alone, or its sibling held or
/// already done) goes to the type's ordinary ``JobHandler``. Every job keeps its own context: its
/// lease and ``JobCancellation`` (a cancel, a lost lease or a time limit stops that job only),
/// its progress, logger and salvage. A handler must:
/// - go on with the shared work while any of the jobs may go on, and check each job's own
///   cancellation right before committing that job's outputs;
/// - return one result per context, in the same order; a job that must stop gets its stop's error.
public protocol JointJobHandler: Sendable {
    /// The job types it runs together (at least two).
    var jobTypes: Set<JobType> { get }
    /// Does the work of the jobs of one media item.
    /// - Parameter contexts: One context per job, all of the same media item, of distinct types
    ///   in ``jobTypes``.
    /// - Returns: One result per context, in the order of `contexts`.
    func run(together contexts: [JobContext]) -> [Result<JobOutcome, JobError>]
}
