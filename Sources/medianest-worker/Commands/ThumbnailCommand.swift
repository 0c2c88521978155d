import ArgumentParser
import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestWorker
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `medianest-worker thumbnail FILE…`: the thumbnail job's rendering on local files, without a database.
struct ThumbnailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thumbnail",
        abstract: "Render thumbnails of media files into a directory, without a database.",
        discussion: """
            Uses the same decoders and dispatcher as the thumbnail job (each file's directory is its storage root), in one process, so it can be timed over many files. Writes <output-dir>/<file name>.<ext> atomically (temporary name and rename, no fsync) and prints one JSON line per file.

            With --preview-size, each file is rendered as the thumbnail and preview jobs render an item together: one decode at the larger size, the thumbnail and the preview (<output-dir>/<file name>.preview.<ext>) made from it, with the ThumbHash and the perceptual hash (printed in the JSON line).
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
    @Option(help: "Files rendered at once (default: the number of cores).")
    var jobs: Int?
    @Option(help: "srgb, or p3 to keep Display P3 (profile embedded) where the source is wider (default: srgb).")
    var colorspace: String = "srgb"
    @Option(help: "Also make the preview, as the jobs do together from one decode: its long edge in pixels (the job's default is 1440).")
    var previewSize: Int?
    @Option(help: "The preview's format, webp, jpeg or png (default: jpeg).")
    var previewFormat: String = "jpeg"
    @Option(help: "The preview's quality, 1-100 (default: 80).")
    var previewQuality: Int = 80
    @Option(help: "Directory to write the thumbnails into (created if missing).")
    var outputDir: String
    @Flag(help: "Print nothing for files that succeed (errors are still printed).")
    var quiet = false
    @Argument(help: "Media files, absolute or relative to the current directory.")
    var files: [String]

    func validate() throws {
        guard StillColourSpace(rawValue: colorspace.lowercased()) != nil else {
            throw ValidationError("--colorspace must be srgb or p3 (got \(colorspace)).")
        }
        guard ImageFormat(rawValue: format.lowercased() == "jpg" ? "jpeg" : format.lowercased()) != nil else {
            throw ValidationError("--format must be webp, jpeg or png (got \(format)).")
        }
        guard (16...8192).contains(size) else { throw ValidationError("--size must be between 16 and 8192.") }
        guard ImageFormat(rawValue: previewFormat.lowercased() == "jpg" ? "jpeg" : previewFormat.lowercased()) != nil else {
            throw ValidationError("--preview-format must be webp, jpeg or png (got \(previewFormat)).")
        }
        if let previewSize, !(16...8192).contains(previewSize) { throw ValidationError("--preview-size must be between 16 and 8192.") }
        guard (1...100).contains(previewQuality) else { throw ValidationError("--preview-quality must be between 1 and 100.") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be between 1 and 100.") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be between 1 and 64.") }
        if let jobs, !(1...256).contains(jobs) { throw ValidationError("--jobs must be between 1 and 256.") }
    }

    func run() throws {
        let logger = { () -> Logger in
            var logger = Logger(label: "medianest.thumbnail")
            logger.logLevel = .error
            return logger
        }()
        FFmpegLog.install(fallback: logger)
        let outputFormat = ImageFormat(rawValue: format.lowercased() == "jpg" ? "jpeg" : format.lowercased())!
        let absoluteOutput = outputDir.hasPrefix("/") ? outputDir : FileManager.default.currentDirectoryPath + "/" + outputDir
        try FileManager.default.createDirectory(atPath: absoluteOutput, withIntermediateDirectories: true)
        let (outputParent, outputName) = LocalFile.split(absoluteOutput)
        let limits = MediaLimits()
        let lines = Mutex([JSONValue?](repeating: nil, count: files.count))
        let next = Atomic<Int>(0)
        // Files are independent: each worker thread takes the next one (as the daemon runs one job
        // per slot), decoding with `--threads` threads of its own.
        let workers = min(max(1, jobs ?? ProcessInfo.processInfo.activeProcessorCount), max(1, files.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                guard index < files.count else { return }
                let line = render(files[index], format: outputFormat, outputParent: outputParent, outputName: outputName,
                                  limits: limits, logger: logger)
                lines.withLock { $0[index] = line }
            }
        }
        var failed = false
        for line in lines.withLock({ $0 }) {
            guard let line else { continue }
            if line["error"] != nil { failed = true }
            print(line.jsonText)
        }
        if failed { throw ExitCode(1) }
    }

    /// Renders one file; returns its JSON line, or `nil` when it succeeded under `--quiet`.
    private func render(_ path: String, format outputFormat: ImageFormat, outputParent: String, outputName: String,
                        limits: MediaLimits, logger: Logger) -> JSONValue? {
        let (root, name) = LocalFile.split(path)
        var line: [String: JSONValue] = ["file": .string(path)]
        do throws(JobError) {
            let file = try SafeFile.open(relativePath: name, in: root, limits: limits)
            let cancellation = JobCancellation(timeout: limits.timeout)
            let colourSpace = StillColourSpace(rawValue: colorspace.lowercased()) ?? .srgb
            let still = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> RenderedStill in
                try StillRendering.decode(file: file, declaredMimeType: nil, fileName: name, maxLongEdge: max(size, previewSize ?? 0),
                                          limits: limits, decoderThreads: threads, cancellation: cancellation, logger: logger,
                                          colourSpace: colourSpace, reduceFully: previewSize == nil)
            }
            if let previewSize {
                return try renderWithPreview(still, previewSize: previewSize, format: outputFormat, colourSpace: colourSpace,
                                             outputDirectory: outputParent + "/" + outputName, name: name, cancellation: cancellation, line: line)
            }
            let image = try still.image.fitted(maxLongEdge: size)
            let bytes = try ImageEncoder.encode(image, as: outputFormat, quality: quality)
            // A tool's output, not the library's: written atomically (temporary name, rename) like
            // the daemon's, but without its fsyncs, as vipsthumbnail and ffmpeg write theirs.
            let target = outputParent + "/" + outputName + "/" + name + "." + outputFormat.fileExtension
            try Self.writeWithoutSync(bytes, to: target)
            if quiet { return nil }
            line["output"] = .string(target)
            line["width"] = .int(Int64(image.width))
            line["height"] = .int(Int64(image.height))
            line["bytes"] = .int(Int64(bytes.count))
            line["source_kind"] = .string(still.kind.rawValue)
        } catch {
            line["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
        }
        return .object(line)
    }

    /// The thumbnail and the preview of one decoded file, made by the jobs' own code
    /// (``StillOutputs``), written as `<name>.<ext>` and `<name>.preview.<ext>`.
    private func renderWithPreview(_ still: RenderedStill, previewSize: Int, format outputFormat: ImageFormat, colourSpace: StillColourSpace,
                                   outputDirectory: String, name: String, cancellation: JobCancellation,
                                   line: [String: JSONValue]) throws(JobError) -> JSONValue? {
        var settings = StillImageSettings()
        settings.thumbnail = StillOutputSettings(maxLongEdge: size, format: outputFormat, quality: quality)
        let previewFormat = ImageFormat(rawValue: previewFormat.lowercased() == "jpg" ? "jpeg" : previewFormat.lowercased()) ?? .jpeg
        settings.preview = StillOutputSettings(maxLongEdge: previewSize, format: previewFormat, quality: previewQuality)
        settings.colourSpace = colourSpace
        let made = try StillOutputs.make([.thumbnail, .preview], from: still, settings: settings, cancellation: cancellation)
        var line = line
        for output in made {
            let format = settings.settings(for: output.kind).format
            let target = outputDirectory + "/" + name + (output.kind == .preview ? ".preview." : ".") + format.fileExtension
            try Self.writeWithoutSync(output.bytes, to: target)
            let facts: [String: JSONValue] = ["output": .string(target), "width": .int(Int64(output.width)),
                                              "height": .int(Int64(output.height)), "bytes": .int(Int64(output.bytes.count))]
            if output.kind == .preview {
                line["preview"] = .object(facts)
            } else {
                for (key, value) in facts { line[key] = value }
                if let thumbhash = output.thumbhash { line["thumbhash"] = .string(thumbhash) }
                if let hash = output.perceptualHash { line["perceptual_hash"] = .string(PerceptualHash.hex(hash)) }
            }
        }
        if quiet { return nil }
        line["source_kind"] = .string(still.kind.rawValue)
        for (key, value) in still.details where line[key] == nil { line[key] = value }
        return .object(line)
    }

    /// Writes `bytes` to a temporary name next to `path` and renames it into place.
    private static func writeWithoutSync(_ bytes: [UInt8], to path: String) throws(JobError) {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw JobError(.ioError, "Cannot create \(temporary): \(String(cString: strerror(errno))).") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let code = errno
                close(fd)
                unlink(temporary)
                throw JobError(.ioError, "Writing \(temporary) failed: \(String(cString: strerror(code))).")
            }
            written += n
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw JobError(.ioError, "Renaming \(temporary) to \(path) failed: \(String(cString: strerror(code))).")
        }
    }
}
