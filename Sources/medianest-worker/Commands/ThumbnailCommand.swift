import ArgumentParser
import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestWorker

/// `medianest-worker thumbnail FILE…`: the thumbnail job's rendering on local files, without a database.
struct ThumbnailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thumbnail",
        abstract: "Render thumbnails of media files into a directory, without a database.",
        discussion: """
            Uses the same decoders and dispatcher as the thumbnail job (each file's directory is its storage root), in one process, so it can be timed over many files. Writes <output-dir>/<file name>.<ext> atomically (temporary name and rename, no fsync) and prints one JSON line per file.
            """
    )

    @Option(help: "Long edge in pixels (default: 320; never upscaled).")
    var size: Int = 320
    @Option(help: "webp, jpeg or png (default: webp).")
    var format: String = "webp"
    @Option(help: "Quality, 1-100 (default: 80).")
    var quality: Int = 80
    @Option(help: "Decoder threads per file (default: 1).")
    var threads: Int = 1
    @Option(help: "Directory to write the thumbnails into (created if missing).")
    var outputDir: String
    @Flag(help: "Print nothing for files that succeed (errors are still printed).")
    var quiet = false
    @Argument(help: "Media files, absolute or relative to the current directory.")
    var files: [String]

    func validate() throws {
        guard ImageFormat(rawValue: format.lowercased() == "jpg" ? "jpeg" : format.lowercased()) != nil else {
            throw ValidationError("--format must be webp, jpeg or png (got \(format)).")
        }
        guard (16...8192).contains(size) else { throw ValidationError("--size must be between 16 and 8192.") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be between 1 and 100.") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be between 1 and 64.") }
    }

    func run() throws {
        var logger = Logger(label: "medianest.thumbnail")
        logger.logLevel = .error
        FFmpegLog.install(fallback: logger)
        let outputFormat = ImageFormat(rawValue: format.lowercased() == "jpg" ? "jpeg" : format.lowercased())!
        let absoluteOutput = outputDir.hasPrefix("/") ? outputDir : FileManager.default.currentDirectoryPath + "/" + outputDir
        try FileManager.default.createDirectory(atPath: absoluteOutput, withIntermediateDirectories: true)
        let (outputParent, outputName) = LocalFile.split(absoluteOutput)
        let limits = MediaLimits()
        var failed = false
        for path in files {
            let (root, name) = LocalFile.split(path)
            var line: [String: JSONValue] = ["file": .string(path)]
            do throws(JobError) {
                let file = try SafeFile.open(relativePath: name, in: root, limits: limits)
                let cancellation = JobCancellation(timeout: limits.timeout)
                let still = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> RenderedStill in
                    try StillRendering.decode(file: file, declaredMimeType: nil, fileName: name, maxLongEdge: size, limits: limits,
                                              decoderThreads: threads, cancellation: cancellation, logger: logger)
                }
                let image = try still.image.fitted(maxLongEdge: size)
                let bytes = try ImageEncoder.encode(image, as: outputFormat, quality: quality)
                // A tool's output, not the library's: written atomically (temporary name, rename) like
                // the daemon's, but without its fsyncs, as vipsthumbnail and ffmpeg write theirs.
                let target = outputParent + "/" + outputName + "/" + name + "." + outputFormat.fileExtension
                do {
                    try Data(bytes).write(to: URL(fileURLWithPath: target), options: .atomic)
                } catch {
                    throw JobError(.ioError, "Writing \(target) failed: \(error.localizedDescription)")
                }
                line["output"] = .string(target)
                line["width"] = .int(Int64(image.width))
                line["height"] = .int(Int64(image.height))
                line["bytes"] = .int(Int64(bytes.count))
                line["source_kind"] = .string(still.kind.rawValue)
                if quiet { continue }
            } catch {
                failed = true
                line["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            }
            print(JSONValue.object(line).jsonText)
        }
        if failed { throw ExitCode(1) }
    }
}
