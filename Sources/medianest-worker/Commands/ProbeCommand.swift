import ArgumentParser
import Foundation
import Logging
import MediaNestCore
import MediaNestMedia

/// `medianest-worker probe FILE…`: the metadata job's extraction on local files, without a database.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Print the metadata summary (or --full probe) of media files as JSON lines, without a database."
    )

    @Argument(help: "Media files, absolute or relative to the current directory. Each file's directory is its storage root.")
    var files: [String]

    @Flag(help: "Print the full probe (every stream, tag and chapter) instead of the summary.")
    var full = false

    @Flag(help: "Skip MD5 and SHA-256 (the slowest step).")
    var noChecksums = false

    @Option(help: "The declared MIME type to compare against (default: none, so no mismatch is reported).")
    var declaredMime: String?

    @Flag(help: "Log FFmpeg's warnings and the extractor's notes to stderr (errors are always in the JSON).")
    var verbose = false

    func run() throws {
        var logger = Logger(label: "medianest.probe")
        logger.logLevel = verbose ? .debug : .critical
        FFmpegLog.install(fallback: logger)
        let limits = MediaLimits()
        for path in files {
            let (root, name) = LocalFile.split(path)
            var line: [String: JSONValue] = ["file": .string(path)]
            do {
                let result = try MetadataExtractor.extract(
                    root: root, relativePath: name, declaredMimeType: declaredMime ?? "application/octet-stream",
                    limits: limits, computeChecksums: !noChecksums,
                    cancellation: JobCancellation(timeout: limits.timeout), logger: logger)
                if full {
                    line["probe"] = result.fullProbe
                } else {
                    var summary = result.summary
                    if declaredMime == nil { summary["mime_declared_matches"] = nil }
                    line["summary"] = .object(summary)
                }
                line["size"] = .int(result.fileSize)
                if let checksums = result.checksums {
                    line["md5"] = .string(checksums.md5)
                    line["sha256"] = .string(checksums.sha256)
                }
            } catch {
                line["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            }
            print(JSONValue.object(line).jsonText)
        }
    }
}

/// `medianest-worker checksum FILE…`: MD5 and SHA-256 of files, one read each, on two cores.
struct ChecksumCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checksum",
        abstract: "Print 'md5  sha256  path' for each file, computed in one read on two cores."
    )

    @Argument(help: "Files, absolute or relative to the current directory.")
    var files: [String]

    func run() throws {
        var failed = false
        for path in files {
            let (root, name) = LocalFile.split(path)
            do {
                let file = try SafeFile.open(relativePath: name, in: root)
                let sums = try Checksummer.compute(file)
                print("\(sums.md5)  \(sums.sha256)  \(path)")
            } catch {
                failed = true
                FileHandle.standardError.write(Data("\(path): \(error.code): \(error.message)\n".utf8))
            }
        }
        if failed { throw ExitCode(1) }
    }
}

/// Splits a command-line path into (storage root, relative path): the file's directory is the root.
enum LocalFile {
    static func split(_ path: String) -> (root: String, name: String) {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let url = URL(fileURLWithPath: absolute).standardizedFileURL
        return (url.deletingLastPathComponent().path, url.lastPathComponent)
    }
}
