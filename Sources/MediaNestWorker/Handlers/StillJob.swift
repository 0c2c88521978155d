import Foundation
import Synchronization
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue

/// The work shared by the thumbnail and preview jobs: one decode, both outputs when both are due.
///
/// **One decode.** The two are separate jobs and may run on different workers, so they share
/// only the file system. Each item's derived directory holds `stills.json`, a small manifest
/// written atomically after the outputs, recording for each output its file, the settings it
/// was made with (`webp-320-q80`), the source identity (size, mtime in ns, inode) and whether it
/// was made ahead for the sibling job and not yet taken.
/// - A job whose own output was made ahead by the sibling, for the same source and settings,
///   takes it: no decode at all; it clears the "ahead" mark.
/// - Otherwise it decodes once, at the larger of the two sizes when the sibling's output is
///   missing or stale, and writes both (the sibling's marked "ahead").
/// - The two jobs of an item take turns: in one process through ``ItemGate`` (the engine usually
///   claims them in the same batch, and without turns both would decode), across processes
///   through an exclusive `flock` on the item's derived directory
///   (``DerivedDirectory/lockExclusively(waitingAtMost:cancellation:)``). Without turns, two
///   workers both decoded, and the later one renamed its copy over the earlier one's output
///   after that job was final (found by `make chaos`).
/// - A re-run of a job always renders its own output again (its entry is not marked "ahead"),
///   replacing the old file atomically.
struct StillJob: Sendable {
    let kind: StillKind
    let settings: StillImageSettings
    let limits: MediaLimits

    static let manifestName = "stills.json"
    /// How long a job waits for the item's other still job (in another worker) to finish with
    /// the item's directory: far beyond one decode and encode, short beside the job's limit.
    static let siblingWait: Duration = .seconds(30)

    func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        try ItemGate.withItem(context.mediaItem.id, cancellation: context.cancellation) { () throws(JobError) -> JobOutcome in
            try runAlone(context)
        }
    }

    private func runAlone(_ context: JobContext) throws(JobError) -> JobOutcome {
        let item = context.mediaItem
        try context.cancellation.check()
        guard context.storage.derivedRootRelativeToStorage != nil else {
            throw JobError(.internalError, "The derived root \(context.storage.derivedRoot) is not inside the storage root \(context.storage.root).", retryable: false)
        }
        let file = try SafeFile.open(relativePath: item.storagePath, in: context.storage.root, limits: limits, countingInto: context.bytesRead)
        let identity = file.sourceIdentity
        let directory = try DerivedDirectory.forMediaItem(item.id, derivedRoot: context.storage.derivedRoot, writtenBy: context.job.type.rawValue)
        // The sibling job of this item may run in another worker right now: take turns with it
        // there too (ItemGate covers this process only), so that the second job reads the
        // manifest the first one wrote and takes its output instead of decoding again and
        // renaming a second copy over a file whose job may already be final.
        if try !directory.lockExclusively(waitingAtMost: Self.siblingWait, cancellation: context.cancellation) {
            context.logger.warning("the item's other still job held its directory lock for too long; going on without it")
        }
        // Runs that died leave hidden temporaries: this job's own earlier runs' at once, anyone
        // else's after an hour, which is far beyond any thumbnail job.
        directory.removeTemporariesOfEarlierRuns()
        _ = directory.removeStaleTemporaries(olderThan: .seconds(3600))
        var manifest = StillManifest(directory.readSmallFile(named: Self.manifestName))
        let own = settings.settings(for: kind)

        if settings.oneDecode, let entry = manifest.entries[kind], entry.aheadFor == kind,
           entry.isCurrent(source: identity, settings: own), directory.fileSize(named: entry.file) == entry.bytes {
            manifest.entries[kind]?.aheadFor = nil
            _ = try directory.writeAtomically(Array(manifest.json.jsonText.utf8), named: Self.manifestName)
            context.logger.debug("took the \(kind.rawValue) made ahead by the \(kind.sibling.rawValue) job")
            return try outcome(entry, context: context, reused: true, alsoWrote: [])
        }

        let siblingSettings = settings.settings(for: kind.sibling)
        let siblingCurrent = manifest.entries[kind.sibling].map { entry in
            entry.isCurrent(source: identity, settings: siblingSettings) && directory.fileSize(named: entry.file) == entry.bytes
        } ?? false
        let alsoSibling = settings.oneDecode && !siblingCurrent
        let decodeEdge = alsoSibling ? max(own.maxLongEdge, siblingSettings.maxLongEdge) : own.maxLongEdge

        context.progress.report(stage: "decoding", fraction: 0.1)
        let logger = context.logger
        let decoded = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> RenderedStill in
            try StillRendering.decode(file: file, declaredMimeType: item.mimeType, fileName: item.originalFilename ?? item.filename,
                                      maxLongEdge: decodeEdge, limits: limits, decoderThreads: settings.decoderThreads,
                                      cancellation: context.cancellation, logger: logger, colourSpace: settings.colourSpace)
        }
        try context.cancellation.check()
        context.progress.report(stage: "encoding", fraction: 0.6)

        var kinds: [StillKind] = [kind]
        if alsoSibling { kinds.append(kind.sibling) }
        // Encode everything before committing anything: a failure or a stop here leaves no file.
        var pending: [(kind: StillKind, output: PendingOutput, entry: StillManifest.Entry)] = []
        for target in kinds {
            let targetSettings = settings.settings(for: target)
            let image = try decoded.image.fitted(maxLongEdge: targetSettings.maxLongEdge)
            let bytes = try ImageEncoder.encode(image, as: targetSettings.format, quality: targetSettings.quality)
            let name = "\(target.rawValue).\(targetSettings.format.fileExtension)"
            let output = try directory.createOutput(named: name)
            try output.write(bytes)
            var entry = StillManifest.Entry(file: name, settings: targetSettings.key, source: identity, width: image.width, height: image.height,
                                            format: targetSettings.format, bytes: Int64(bytes.count), sourceKind: decoded.kind,
                                            aheadFor: target == kind ? nil : target, details: decoded.details)
            if target == .thumbnail {
                // A placeholder clients paint before the thumbnail loads (ThumbHash, base64).
                entry.thumbhash = Data(try ThumbHash.encode(fitting: image)).base64EncodedString()
                // What `duplicates` compares (docs/DUPLICATES.md); photos only: every waveform looks alike.
                if [.image, .heif, .raw].contains(decoded.kind) {
                    entry.details["perceptual_hash"] = .string(PerceptualHash.hex(PerceptualHash.compute(image)))
                }
            }
            pending.append((target, output, entry))
            try context.cancellation.check()
        }
        context.progress.report(stage: "writing", fraction: 0.9)
        // Right before the renames: a run whose lease may have passed to another worker (it was
        // paused or cut off from the database) commits nothing over the new owner's files.
        try context.cancellation.check()
        for item in pending {
            try item.output.commit()
            manifest.entries[item.kind] = item.entry
            // An output in another format (the settings changed) is no longer anyone's.
            for format in ImageFormat.allCases where format != settings.settings(for: item.kind).format {
                directory.remove(named: "\(item.kind.rawValue).\(format.fileExtension)")
            }
        }
        _ = try directory.writeAtomically(Array(manifest.json.jsonText.utf8), named: Self.manifestName)
        let ownEntry = pending[0].entry
        return try outcome(ownEntry, context: context, reused: false, alsoWrote: pending.dropFirst().map(\.entry))
    }

    private func outcome(_ entry: StillManifest.Entry, context: JobContext, reused: Bool, alsoWrote: [StillManifest.Entry]) throws(JobError) -> JobOutcome {
        let directoryComponents = try DerivedLayout.itemComponents(mediaItemID: context.mediaItem.id)
        func storagePath(_ name: String) throws(JobError) -> String {
            guard let path = context.storage.storageRelativePath(ofDerived: (directoryComponents + [name]).joined(separator: "/")) else {
                throw JobError(.internalError, "The derived root is not inside the storage root.", retryable: false)
            }
            return path
        }
        var output = entry.outputJSON
        output["path"] = .string(try storagePath(entry.file))
        output["reused"] = .bool(reused)
        if !alsoWrote.isEmpty {
            var also: [JSONValue] = []
            for other in alsoWrote {
                var json = other.outputJSON
                json["path"] = .string(try storagePath(other.file))
                also.append(.object(json))
            }
            output["also_wrote"] = .array(also)
        }
        var update = MediaItemUpdate()
        switch kind {
        case .thumbnail:
            update.thumbnailPath = try storagePath(entry.file)
            if let hash = entry.thumbhash { update.metadataMerge["thumbhash"] = .string(hash) }
            if let hex = entry.details["perceptual_hash"]?.stringValue, let bits = UInt64(hex, radix: 16) {
                update.perceptualHash = Int64(bitPattern: bits)
            }
        case .preview:
            update.previewPath = try storagePath(entry.file)
        }
        return JobOutcome(output: .object(output), itemUpdate: update)
    }
}

/// `stills.json`: what the item's thumbnail and preview files were made from (see ``StillJob``).
struct StillManifest {
    struct Entry: Hashable {
        var file: String
        var settings: String
        var source: String
        var width: Int
        var height: Int
        var format: ImageFormat
        var bytes: Int64
        var sourceKind: StillSourceKind
        /// Set when the sibling job made this output ahead and this kind's job has not taken it.
        var aheadFor: StillKind?
        var details: [String: JSONValue]
        var thumbhash: String?

        func isCurrent(source: String, settings: StillOutputSettings) -> Bool {
            self.source == source && self.settings == settings.key
        }

        /// What the job output says about the file (the path is added by the caller).
        var outputJSON: [String: JSONValue] {
            var json: [String: JSONValue] = [
                "width": .int(Int64(width)), "height": .int(Int64(height)), "format": .string(format.rawValue),
                "bytes": .int(bytes), "source_kind": .string(sourceKind.rawValue),
            ]
            for (key, value) in details { json[key] = value }
            return json
        }

        var json: JSONValue {
            var object: [String: JSONValue] = [
                "file": .string(file), "settings": .string(settings), "source": .string(source),
                "width": .int(Int64(width)), "height": .int(Int64(height)), "format": .string(format.rawValue),
                "bytes": .int(bytes), "source_kind": .string(sourceKind.rawValue), "details": .object(details),
            ]
            if let aheadFor { object["ahead_for"] = .string(aheadFor.rawValue) }
            if let thumbhash { object["thumbhash"] = .string(thumbhash) }
            return .object(object)
        }

        init(file: String, settings: String, source: String, width: Int, height: Int, format: ImageFormat, bytes: Int64,
             sourceKind: StillSourceKind, aheadFor: StillKind?, details: [String: JSONValue], thumbhash: String? = nil) {
            self.file = file
            self.settings = settings
            self.source = source
            self.width = width
            self.height = height
            self.format = format
            self.bytes = bytes
            self.sourceKind = sourceKind
            self.aheadFor = aheadFor
            self.details = details
            self.thumbhash = thumbhash
        }

        init?(_ json: JSONValue) {
            guard let file = json["file"]?.stringValue, let settings = json["settings"]?.stringValue,
                  let source = json["source"]?.stringValue, let width = json["width"]?.intValue, let height = json["height"]?.intValue,
                  let format = json["format"]?.stringValue.flatMap(ImageFormat.init(rawValue:)), let bytes = json["bytes"]?.intValue,
                  let kind = json["source_kind"]?.stringValue.flatMap(StillSourceKind.init(rawValue:)),
                  !file.contains("/") else { return nil }
            self.init(file: file, settings: settings, source: source, width: Int(width), height: Int(height), format: format, bytes: bytes,
                      sourceKind: kind, aheadFor: json["ahead_for"]?.stringValue.flatMap(StillKind.init(rawValue:)),
                      details: json["details"]?.objectValue ?? [:], thumbhash: json["thumbhash"]?.stringValue)
        }
    }

    var entries: [StillKind: Entry] = [:]

    /// Parses the manifest's bytes; anything unreadable is an empty manifest (everything is redone).
    init(_ bytes: [UInt8]?) {
        guard let bytes, let json = try? JSONValue(parsing: String(decoding: bytes, as: UTF8.self)) else { return }
        for kind in StillKind.allCases {
            if let value = json[kind.rawValue], let entry = Entry(value) { entries[kind] = entry }
        }
    }

    var json: JSONValue {
        var object: [String: JSONValue] = ["version": 1]
        for (kind, entry) in entries { object[kind.rawValue] = entry.json }
        return .object(object)
    }
}

/// Lets the thumbnail and preview jobs of one item take turns within this process, so the second
/// finds what the first decoded for it instead of decoding at the same time.
enum ItemGate {
    private static let gates = Mutex<[String: (semaphore: DispatchSemaphore, users: Int)]>([:])

    /// Runs `body` while no other still job of `itemID` runs in this process.
    /// - Throws: What `body` throws, or the stop's error while waiting.
    static func withItem<T>(_ itemID: String, cancellation: JobCancellation, _ body: () throws(JobError) -> T) throws(JobError) -> T {
        let semaphore = gates.withLock { gates -> DispatchSemaphore in
            if let entry = gates[itemID] {
                gates[itemID] = (entry.semaphore, entry.users + 1)
                return entry.semaphore
            }
            let semaphore = DispatchSemaphore(value: 1)
            gates[itemID] = (semaphore, 1)
            return semaphore
        }
        defer {
            gates.withLock { gates in
                if let entry = gates[itemID] { gates[itemID] = entry.users > 1 ? (entry.semaphore, entry.users - 1) : nil }
            }
        }
        // Poll the job's token while waiting: a stop must not wait for the sibling to finish.
        while semaphore.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            try cancellation.check()
        }
        defer { semaphore.signal() }
        return try body()
    }
}
