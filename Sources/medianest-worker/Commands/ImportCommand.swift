import ArgumentParser
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestWorker

/// `medianest-worker import`: brings existing files into the library.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Bring existing photos, videos and songs into the library and queue their processing.",
        discussion: """
            Walks the given files and directories, hard-links (or copies) each file into the storage root under imports/<owner id>/<sha256[0..2]>/<sha256[0..16]>-<name>, creates its media item with the sniffed MIME type, size and checksums, and enqueues its jobs. Content the owner already has (same SHA-256) is not added again, so importing a folder twice adds nothing. Hidden files are skipped; what cannot be imported is listed at the end with the reason. See docs/FIRST-RUN.md.
            """)

    @Argument(help: "Files and directories to import.") var paths: [String]
    @Option(help: "The owner's e-mail; the user is created if missing (default: $MEDIANEST_IMPORT_OWNER, else <login>@localhost).")
    var owner: String?
    @Flag(help: "Hard-link only (default: hard-link when on the storage root's file system, else copy).") var link = false
    @Flag(help: "Always copy.") var copy = false
    @Option(help: "Absolute path of the media storage root (default: $MEDIANEST_STORAGE_ROOT).") var storageRoot: String?
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if link && copy { throw ValidationError("give --link or --copy, not both") }
        if paths.isEmpty { throw ValidationError("give at least one file or directory to import") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let root = storageRoot ?? environment["MEDIANEST_STORAGE_ROOT"], !root.isEmpty else {
            throw ValidationError("no storage root: pass --storage-root or set MEDIANEST_STORAGE_ROOT")
        }
        let absoluteRoot = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
        let ownerEmail = owner ?? environment["MEDIANEST_IMPORT_OWNER"] ?? "\(environment["USER"] ?? "owner")@localhost"
        let importer = LibraryImporter(storageRoot: absoluteRoot, ownerEmail: ownerEmail, mode: link ? .link : copy ? .copy : .auto)
        let display = ImportProgressDisplay(interactive: isatty(STDERR_FILENO) == 1)
        var finished: ImportReport?
        try operatorAction {
            try StorageRootMonitor.validateAtStart(absoluteRoot)
            let db = try connection.connect()
            // The bar ends its line before any error is printed.
            defer { display.finish() }
            finished = try importer.run(paths: paths, on: db) { done, total, bytes, totalBytes in
                display.update(done: done, total: total, bytes: bytes, totalBytes: totalBytes)
            }
        }
        guard let report = finished else { return }
        for line in ImportSummary.lines(report, ownerEmail: ownerEmail) { print(line) }
    }
}

/// The lines `import` prints at the end.
enum ImportSummary {
    static func lines(_ report: ImportReport, ownerEmail: String) -> [String] {
        var lines: [String] = []
        let bytes = ByteCountFormatter.string(fromByteCount: report.bytes, countStyle: .file)
        if report.imported == 0 && report.alreadyInLibrary > 0 {
            lines.append("Nothing new: all \(report.alreadyInLibrary) file\(plural(report.alreadyInLibrary)) found are already in \(ownerEmail)'s library.")
        } else {
            var how: [String] = []
            if report.linked > 0 { how.append("\(report.linked) hard-linked") }
            if report.copied > 0 { how.append("\(report.copied) copied") }
            lines.append("Imported \(report.imported) file\(plural(report.imported)) (\(bytes)\(how.isEmpty ? "" : ", " + how.joined(separator: ", "))) for \(ownerEmail); \(report.jobs) job\(plural(report.jobs)) queued.")
            if report.alreadyInLibrary > 0 {
                lines.append("\(report.alreadyInLibrary) file\(plural(report.alreadyInLibrary)) already in the library (same content): not added again.")
            }
        }
        if report.hiddenSkipped > 0 { lines.append("\(report.hiddenSkipped) hidden file\(plural(report.hiddenSkipped)) or folder\(plural(report.hiddenSkipped)) skipped.") }
        if !report.skipped.isEmpty {
            lines.append("Not imported (\(report.skipped.count)):")
            for skip in report.skipped {
                lines.append("  \(skip.path.escapingControlCharacters()): \(skip.reason)")
            }
        }
        return lines
    }

    private static func plural(_ n: Int) -> String { n == 1 ? "" : "s" }
}

/// A progress bar with rate and ETA on a terminal; a plain line every few seconds otherwise.
final class ImportProgressDisplay: @unchecked Sendable {
    private let interactive: Bool
    private let lock = NSLock()
    private let started = Date()
    private var lastDraw = Date.distantPast
    private var drewBar = false

    init(interactive: Bool) { self.interactive = interactive }

    func update(done: Int, total: Int, bytes: Int64, totalBytes: Int64) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        let finished = done == total
        guard finished || now.timeIntervalSince(lastDraw) >= (interactive ? 0.1 : 5) else { return }
        lastDraw = now
        let line = ProgressLine.render(done: done, total: total, bytes: bytes, totalBytes: totalBytes,
                                       elapsed: now.timeIntervalSince(started), width: interactive ? 30 : 0)
        if interactive {
            FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8))
            drewBar = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drewBar { FileHandle.standardError.write(Data("\n".utf8)) }
        drewBar = false
    }
}
