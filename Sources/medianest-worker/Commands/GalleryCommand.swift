import ArgumentParser
import Foundation
import MediaNestDB
import MediaNestWorker

/// `medianest-worker gallery`: a static HTML page of the whole library.
struct GalleryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gallery",
        abstract: "Write a static HTML gallery of every media item: pictures, trickplay, playable video, metadata and errors.",
        discussion: "The page and copies of the files it shows go into --output, so it opens from file:// anywhere, also after the storage root is gone. See docs/FIRST-RUN.md.")

    @Option(help: "Directory to write index.html and media/ into (created if missing).") var output: String
    @Option(help: "Absolute path of the media storage root (default: $MEDIANEST_STORAGE_ROOT).") var storageRoot: String?
    @Option(help: "Absolute path of the derived-files root (default: $MEDIANEST_DERIVED_ROOT, else <storage root>/.derived).") var derivedRoot: String?
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let root = storageRoot ?? environment["MEDIANEST_STORAGE_ROOT"], !root.isEmpty else {
            throw ValidationError("no storage root: pass --storage-root or set MEDIANEST_STORAGE_ROOT")
        }
        let cwd = FileManager.default.currentDirectoryPath
        let absolute = { (path: String) in path.hasPrefix("/") ? path : cwd + "/" + path }
        let derived = (derivedRoot ?? environment["MEDIANEST_DERIVED_ROOT"]).flatMap { $0.isEmpty ? nil : absolute($0) }
        try operatorAction {
            // A gallery of an unmounted volume would be a page of broken pictures: say so instead.
            try StorageRootMonitor.validateAtStart(absolute(root))
            if let derived { try StorageRootMonitor.validateDerivedRootAtStart(derived, mustExist: true) }
            let items = try GalleryItem.loadAll(on: try connection.connect())
            let writer = GalleryWriter(storageRoot: absolute(root), derivedRoot: derived)
            do {
                let index = try writer.write(items, to: absolute(output))
                print("Gallery of \(items.count) item\(items.count == 1 ? "" : "s"): \(index)")
            } catch {
                printError("cannot write the gallery into \(output): \(error.localizedDescription)")
                throw ExitCode(1)
            }
        }
    }
}
