import Foundation
public import Logging
import MediaNestCore
public import MediaNestDB
import Synchronization

/// A fault of the worker's environment that no retry will fix: a storage root that is missing,
/// a database that does not exist, a role or password that is wrong, a schema that is not
/// migrated. The worker refuses to start with one line saying what to do.
public struct WorkerStartupError: Error, Sendable, CustomStringConvertible {
    /// What is wrong and what to do about it, one line.
    public var message: String
    /// The process exit status to use: 78 (`EX_CONFIG` from sysexits.h) for configuration faults.
    public var exitCode: Int32

    /// `EX_CONFIG`: a configuration error. systemd can be told not to restart on it
    /// (`RestartPreventExitStatus=78`).
    public static let configurationExitCode: Int32 = 78

    public init(_ message: String, exitCode: Int32 = WorkerStartupError.configurationExitCode) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}

// MARK: - Storage root

/// Watches the storage root so that a volume that goes away (unmounted, renamed, a network
/// share that dropped) stops the worker from claiming instead of failing every job it claims.
///
/// ``isAvailable()`` costs one or two `stat(2)` calls; the scheduler calls it once per claim
/// cycle. The root counts as gone when it no longer exists, is no longer a directory, was a
/// mount point at start and no longer is (an unmounted volume leaves its empty mount-point
/// directory behind, which `stat` alone would accept), or was writable at start and is now on a
/// read-only file system (`statvfs`, `ST_RDONLY`: a volume remounted read-only after an I/O
/// error), where every job that writes would fail. Transitions are logged once each.
public final class StorageRootMonitor: Sendable {
    /// The absolute path of the root.
    public let root: String
    private let wasMountPoint: Bool
    /// A root that was read-only at start (a deliberately read-only worker) is not judged by it.
    private let wasWritable: Bool
    private let logger: Logger
    private let available = Mutex(true)

    /// Creates a monitor for a root that ``StorageRootMonitor/validateAtStart(_:)`` accepted.
    public init(root: String, logger: Logger) {
        self.root = root
        self.logger = logger
        self.wasMountPoint = StorageRootMonitor.isMountPoint(root) ?? false
        self.wasWritable = StorageRootMonitor.isReadOnly(root) == false
    }

    /// Refuses a root that cannot work: relative, missing, or not a directory.
    /// - Throws: ``WorkerStartupError`` with exit code 78.
    public static func validateAtStart(_ root: String) throws(WorkerStartupError) {
        guard root.hasPrefix("/") else {
            throw WorkerStartupError("storage root \"\(LogText.escaped(root))\" is a relative path; --storage-root (MEDIANEST_STORAGE_ROOT) must be absolute, such as /srv/medianest/media.")
        }
        var info = stat()
        guard stat(root, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            throw WorkerStartupError("storage root \(LogText.escaped(root)) cannot be used: \(reason). Is the volume mounted? Check --storage-root (MEDIANEST_STORAGE_ROOT).")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw WorkerStartupError("storage root \(LogText.escaped(root)) is not a directory; --storage-root (MEDIANEST_STORAGE_ROOT) must name the directory media_items.storage_path is relative to.")
        }
    }

    /// Refuses a derived root that jobs could not write into. It must be a directory; when it
    /// does not exist yet (the first job creates it) its parent must be one, unless `mustExist`
    /// (a reader such as `gallery`, which has nothing to read from a derived root that is not there).
    /// - Throws: ``WorkerStartupError`` with exit code 78.
    public static func validateDerivedRootAtStart(_ derivedRoot: String, mustExist: Bool = false) throws(WorkerStartupError) {
        let advice = "Check --derived-root (MEDIANEST_DERIVED_ROOT); by default it is <storage root>/.derived."
        var info = stat()
        if stat(derivedRoot, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw WorkerStartupError("derived root \(LogText.escaped(derivedRoot)) is not a directory. \(advice)")
            }
            return
        }
        let error = errno
        let reason = String(cString: strerror(error))
        let parent = (derivedRoot as NSString).deletingLastPathComponent
        guard !mustExist, error == ENOENT, stat(parent.isEmpty ? "/" : parent, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw WorkerStartupError("derived root \(LogText.escaped(derivedRoot)) cannot be used: \(reason). Is the volume mounted? \(advice)")
        }
    }

    /// Whether the root is usable now; logs when that changes.
    @discardableResult
    public func isAvailable() -> Bool {
        let now = probe()
        let before = available.withLock { value -> Bool in
            let old = value
            value = now
            return old
        }
        if before && !now {
            logger.error("storage root is unavailable (unmounted, removed or read-only?); claiming no jobs until it is back, and jobs that fail for it are released without charging an attempt",
                         metadata: ["storage_root": "\(LogText.escaped(root))"])
        } else if !before && now {
            logger.notice("storage root is back; claiming again", metadata: ["storage_root": "\(LogText.escaped(root))"])
        }
        return now
    }

    /// The result of the last ``isAvailable()``, without a new `stat`.
    public var isAvailableCached: Bool { available.withLock { $0 } }

    private func probe() -> Bool {
        var info = stat()
        guard stat(root, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return false }
        if wasMountPoint, StorageRootMonitor.isMountPoint(root) == false { return false }
        if wasWritable, StorageRootMonitor.isReadOnly(root) == true { return false }
        return true
    }

    /// Whether `path` is on a file system mounted read-only; `nil` when unknown.
    private static func isReadOnly(_ path: String) -> Bool? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return info.f_flag & UInt(ST_RDONLY) != 0
    }

    /// Whether `path` is on another device than its parent directory; `nil` when unknown.
    private static func isMountPoint(_ path: String) -> Bool? {
        var own = stat()
        var parent = stat()
        let parentPath = (path as NSString).deletingLastPathComponent
        guard path != "/", stat(path, &own) == 0, stat(parentPath.isEmpty ? "/" : parentPath, &parent) == 0 else { return nil }
        return own.st_dev != parent.st_dev
    }
}

/// Escapes control characters in a value before it goes into a log line or a message, so that a
/// hostile path cannot forge a log line or send terminal escapes.
enum LogText {
    static func escaped(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value) {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

// MARK: - Database

/// Checks at start what would otherwise make a worker retry forever: a database that does not
/// exist, a role that does not exist or a wrong password, a schema that is not migrated.
public enum DatabasePreflight {
    /// The lowest `schema_migrations` version this build works with.
    public static let requiredSchemaVersion: Int64 = 16

    /// The outcome of one try.
    public enum Outcome: Sendable {
        /// The database is reachable and migrated.
        case ready
        /// The server cannot be reached now (refused, timed out, starting up): try again later.
        case unreachable(DatabaseError)
    }

    /// Connects once and checks the schema.
    /// - Returns: ``Outcome/ready`` or ``Outcome/unreachable(_:)`` for faults that may pass.
    /// - Throws: ``WorkerStartupError`` (exit 78) for faults that never fix themselves.
    public static func check(_ configuration: DatabaseConfiguration, logger: Logger) throws(WorkerStartupError) -> Outcome {
        do {
            _ = try connectMigrated(configuration.with("application_name", "medianest-worker preflight"), logger: logger)
            return .ready
        } catch let error as WorkerStartupError {
            throw error
        } catch let error as DatabaseError {
            return .unreachable(error)
        } catch {
            throw WorkerStartupError("cannot check the database schema: \(error). Run `medianest-worker migrate up`, and check the role's privileges.")
        }
    }

    /// Connects for an operator command (`import`, `status`, `enqueue`, …) and checks the schema
    /// the way `run` does at start, so that every command says the same sentence about the same
    /// fault instead of a raw `relation "…" does not exist`.
    /// - Returns: The connection, on a migrated database.
    /// - Throws: ``WorkerStartupError`` (exit 78) for what no retry fixes (no such database or
    ///   role, a wrong password, an unmigrated schema); ``DatabaseError`` when the server cannot be
    ///   reached now.
    public static func connectMigrated(_ configuration: DatabaseConfiguration, logger: Logger = Logger(label: "medianest.preflight")) throws -> PGConnection {
        let connection: PGConnection
        do {
            connection = try PGConnection.connect(configuration, logger: logger)
        } catch {
            if error.isConfigurationProblem {
                throw WorkerStartupError("cannot use the database: \(error.message). Check --database-url (DATABASE_URL) or the PG* variables.")
            }
            throw error
        }
        do {
            if let problem = try schemaProblem(on: connection) { throw problem }
            return connection
        } catch let error as WorkerStartupError {
            throw error
        } catch let error as DatabaseError where error.isConnectionProblem {
            throw error
        } catch {
            throw WorkerStartupError("cannot check the database schema: \(error). Run `medianest-worker migrate up`, and check the role's privileges.")
        }
    }

    /// What is wrong with the schema this connection sees, or `nil` when it is migrated far
    /// enough for this build.
    public static func schemaProblem(on connection: PGConnection) throws -> WorkerStartupError? {
        let row = try connection.query("""
            SELECT to_regclass('schema_migrations') IS NOT NULL AS tracked,
                   to_regclass('processing_jobs') IS NOT NULL AS jobs,
                   to_regclass('processing_workers') IS NOT NULL AS workers,
                   current_database() AS name
            """)[0]
        let name = try row.decode("name", as: String.self)
        var version: Int64 = 0
        if try row.decode("tracked", as: Bool.self) {
            version = try connection.query("SELECT coalesce(max(version), 0)::bigint AS v FROM schema_migrations")[0].decode("v", as: Int64.self)
        }
        let tablesPresent = try row.decode("jobs", as: Bool.self) && row.decode("workers", as: Bool.self)
        guard tablesPresent, version >= requiredSchemaVersion else {
            return WorkerStartupError("the database \(name) is not migrated for this worker (schema version \(version), needs \(requiredSchemaVersion)\(tablesPresent ? "" : "; processing_jobs or processing_workers is missing")): run `medianest-worker migrate up`.")
        }
        return nil
    }
}
