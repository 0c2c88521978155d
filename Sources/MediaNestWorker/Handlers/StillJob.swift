import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestQueue

/// The work behind the thumbnail and preview jobs: one decode of the item's file, and the
/// outputs of the jobs being run, each committed under that job's own lease.
///
/// **One decode, by the claim.** The engine claims an item's pending thumbnail and preview jobs
/// together (``JobStore/claimUnits(slots:limit:together:on:)``) and ``StillJobsHandler`` runs
/// them here as one execution: the file is decoded once, at the larger of the two sizes, and
/// both outputs are made from that picture. A job claimed without its sibling (retried alone,
/// its sibling rescued, held by another transaction, already finished) runs here alone and
/// renders only its own output, at its own size. So a run only ever writes the outputs of jobs
/// it holds the lease of: no manifest, no output made ahead for another run, no turns to take
/// with another worker.
///
/// **Stops.** The decode and the encoding go on while any of the jobs may go on (a token that
/// stops when all of theirs do, ``JobCancellation/init(stoppingWhenAllOf:)``). Each job's own
/// token is checked right before its output is renamed into place: a job cancelled, timed out or
/// whose lease may have passed to another worker commits nothing, and its sibling is not held
/// back by it.
struct StillJob: Sendable {
    /// One job of the run and the output it makes.
    struct Member: Sendable {
        var kind: StillKind
        var context: JobContext
    }

    let settings: StillImageSettings
    /// The limits of each kind's job (their time limits may differ).
    let limits: [StillKind: MediaLimits]

    /// Left in item directories by workers before still jobs were claimed together; deleted when
    /// a still job next runs for the item.
    static let retiredManifestName = "stills.json"

    /// Runs one job on its own.
    func run(_ kind: StillKind, _ context: JobContext) throws(JobError) -> JobOutcome {
        try run([Member(kind: kind, context: context)])[0].get()
    }

    /// Runs the still jobs of one item from one decode.
    /// - Parameter members: The jobs, of distinct kinds, all of one media item.
    /// - Returns: One result per member, in order.
    func run(_ members: [Member]) -> [Result<JobOutcome, JobError>] {
        precondition(!members.isEmpty && Set(members.map(\.kind)).count == members.count, "one job per kind")
        do {
            return try render(members)
        } catch {
            // A job that was told to stop reports its own stop, whatever the shared work threw.
            return members.map { .failure($0.context.cancellation.stopReason?.error ?? error) }
        }
    }

    private func render(_ members: [Member]) throws(JobError) -> [Result<JobOutcome, JobError>] {
        let lead = members[0].context
        let item = lead.mediaItem
        let shared = members.count == 1 ? lead.cancellation : JobCancellation(stoppingWhenAllOf: members.map(\.context.cancellation))
        try shared.check()
        guard lead.storage.derivedRootRelativeToStorage != nil else {
            throw JobError(.internalError, "The derived root \(lead.storage.derivedRoot) is not inside the storage root \(lead.storage.root).", retryable: false)
        }
        var decodeLimits = limits[members[0].kind] ?? .default
        decodeLimits.timeout = members.map { limits[$0.kind]?.timeout ?? decodeLimits.timeout }.max() ?? decodeLimits.timeout
        let file = try SafeFile.open(relativePath: item.storagePath, in: lead.storage.root, limits: decodeLimits, countingInto: lead.bytesRead)
        // Each output is written through a handle named after its own job, so that the job's next
        // run deletes what a killed run of it left, and nothing of the other job's.
        var directories: [DerivedDirectory] = []
        for member in members {
            let directory = try DerivedDirectory.forMediaItem(item.id, derivedRoot: member.context.storage.derivedRoot,
                                                              writtenBy: member.context.job.type.rawValue)
            directory.removeTemporariesOfEarlierRuns()
            directories.append(directory)
        }
        // Anyone else's temporaries after an hour, which is far beyond any still job.
        _ = directories[0].removeStaleTemporaries(olderThan: .seconds(3600))
        directories[0].remove(named: Self.retiredManifestName)

        func report(_ stage: String, _ fraction: Double) {
            for member in members { member.context.progress.report(stage: stage, fraction: fraction) }
        }
        let decodeEdge = members.map { settings.settings(for: $0.kind).maxLongEdge }.max() ?? 0
        report("decoding", 0.1)
        let logger = lead.logger
        let decoded = try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> RenderedStill in
            try StillRendering.decode(file: file, declaredMimeType: item.mimeType, fileName: item.originalFilename ?? item.filename,
                                      maxLongEdge: decodeEdge, limits: decodeLimits, decoderThreads: settings.decoderThreads,
                                      cancellation: shared, logger: logger, colourSpace: settings.colourSpace, reduceFully: false)
        }
        try shared.check()
        report("encoding", 0.6)

        // Encode everything before committing anything: a failure or a stop here leaves no file.
        var pending: [(output: PendingOutput, json: [String: JSONValue], thumbhash: String?)] = []
        let made = try StillOutputs.make(members.map(\.kind), from: decoded, settings: settings, cancellation: shared)
        for ((member, directory), still) in zip(zip(members, directories), made) {
            let target = settings.settings(for: member.kind)
            let output = try directory.createOutput(named: "\(member.kind.rawValue).\(target.format.fileExtension)")
            try output.write(still.bytes)
            var json: [String: JSONValue] = [
                "width": .int(Int64(still.width)), "height": .int(Int64(still.height)), "format": .string(target.format.rawValue),
                "bytes": .int(Int64(still.bytes.count)), "source_kind": .string(decoded.kind.rawValue),
            ]
            for (key, value) in decoded.details { json[key] = value }
            // Which jobs this decode served, at which size: a person reading either job's output
            // sees that the two were made together.
            json["decode"] = ["long_edge": .int(Int64(decodeEdge)), "jobs": .array(members.map { .string($0.context.job.type.rawValue) })]
            if let hash = still.perceptualHash { json["perceptual_hash"] = .string(PerceptualHash.hex(hash)) }
            pending.append((output, json, still.thumbhash))
            try shared.check()
        }
        report("writing", 0.9)

        var results: [Result<JobOutcome, JobError>] = []
        for (index, member) in members.enumerated() {
            let (output, json, thumbhash) = pending[index]
            do throws(JobError) {
                // Right before the rename: a job whose lease may have passed to another worker (its
                // run was paused or cut off from the database), or that was cancelled, commits
                // nothing over the new owner's file.
                try member.context.cancellation.check()
                try output.commit()
                // An output in another format (the settings changed) is no longer anyone's.
                for format in ImageFormat.allCases where format != settings.settings(for: member.kind).format {
                    directories[index].remove(named: "\(member.kind.rawValue).\(format.fileExtension)")
                }
                results.append(.success(try outcome(member, file: output.name, json: json, thumbhash: thumbhash)))
            } catch {
                output.discard()
                results.append(.failure(member.context.cancellation.stopReason?.error ?? error))
            }
        }
        return results
    }

    private func outcome(_ member: Member, file: String, json: [String: JSONValue], thumbhash: String?) throws(JobError) -> JobOutcome {
        let context = member.context
        let directoryComponents = try DerivedLayout.itemComponents(mediaItemID: context.mediaItem.id)
        guard let path = context.storage.storageRelativePath(ofDerived: (directoryComponents + [file]).joined(separator: "/")) else {
            throw JobError(.internalError, "The derived root is not inside the storage root.", retryable: false)
        }
        var output = json
        output["path"] = .string(path)
        var update = MediaItemUpdate()
        switch member.kind {
        case .thumbnail:
            update.thumbnailPath = path
            if let thumbhash { update.metadataMerge["thumbhash"] = .string(thumbhash) }
            if let hex = json["perceptual_hash"]?.stringValue, let bits = UInt64(hex, radix: 16) {
                update.perceptualHash = Int64(bitPattern: bits)
            }
        case .preview:
            update.previewPath = path
        }
        return JobOutcome(output: .object(output), itemUpdate: update)
    }
}

/// Runs an item's thumbnail and preview jobs, claimed together, as one execution: one decode
/// makes both outputs, and each job's output is committed under its own lease (see ``StillJob``).
/// The preview of a video then gets its trickplay sheets, as from ``PreviewHandler``.
public struct StillJobsHandler: JointJobHandler {
    /// Thumbnail and preview.
    public let jobTypes: Set<JobType> = [.thumbnail, .preview]
    /// Output sizes, formats and decoder threads.
    public var settings: StillImageSettings
    /// The limits of each job type (their time limits may differ).
    public var limits: [JobType: MediaLimits]

    /// Creates the handler.
    /// - Parameters:
    ///   - settings: Output sizes, formats and decoder threads.
    ///   - limits: Size, pixel and time limits per job type; a type missing gets the defaults.
    public init(settings: StillImageSettings = StillImageSettings(), limits: [JobType: MediaLimits] = [:]) {
        self.settings = settings
        self.limits = limits
    }

    /// Makes the outputs of the item's thumbnail and preview jobs from one decode.
    /// - Parameter contexts: The jobs (a thumbnail and a preview of one item, or either alone).
    /// - Returns: One result per context, in order.
    public func run(together contexts: [JobContext]) -> [Result<JobOutcome, JobError>] {
        var members: [StillJob.Member] = []
        for context in contexts {
            switch context.job.type {
            case .thumbnail: members.append(StillJob.Member(kind: .thumbnail, context: context))
            case .preview: members.append(StillJob.Member(kind: .preview, context: context))
            default:
                // Not claimed together by the engine (jobTypes); answered rather than trapped on.
                return contexts.map { _ in .failure(JobError(.internalError, "The still jobs handler got a \(context.job.type) job.", retryable: false)) }
            }
        }
        var kindLimits: [StillKind: MediaLimits] = [:]
        kindLimits[.thumbnail] = limits[.thumbnail] ?? .default
        kindLimits[.preview] = limits[.preview] ?? .default
        var results = StillJob(settings: settings, limits: kindLimits).run(members)
        for (index, member) in members.enumerated() where member.kind == .preview {
            guard case .success(var outcome) = results[index] else { continue }
            do throws(JobError) {
                try PreviewHandler.addTrickplay(to: &outcome, context: member.context, settings: settings, limits: kindLimits[.preview] ?? .default)
                results[index] = .success(outcome)
            } catch {
                results[index] = .failure(error)
            }
        }
        return results
    }
}

/// One still output made from a decoded picture: the encoded file and what the job records of it.
public struct MadeStill: Sendable {
    /// Which output.
    public var kind: StillKind
    /// The output's size in pixels.
    public var width: Int
    public var height: Int
    /// The encoded file (format and quality from the settings).
    public var bytes: [UInt8]
    /// The ThumbHash placeholder, base64 (thumbnails only).
    public var thumbhash: String?
    /// The 64-bit perceptual hash `duplicates` compares (thumbnails of photos only).
    public var perceptualHash: UInt64?
}

/// What the thumbnail and preview jobs make from one decoded picture, shared by ``StillJob`` and
/// the `thumbnail` command (so `make bench` times the job's own path).
public enum StillOutputs {
    /// Makes the outputs of `kinds` from `decoded`, which must be at least as large as the largest.
    ///
    /// Each output is reduced from `decoded` with the decoders' Lanczos filter. The preview (WebP
    /// or JPEG) is reduced and converted to the encoder's YUV in one libswscale pass, so no
    /// preview-sized RGBA picture is made; `decoded` may thus be larger than the preview (a JPEG
    /// left at its DCT-scaled size, `reduceFully: false`). The thumbnail is an RGBA picture,
    /// because the ThumbHash and the perceptual hash are computed from it, the smallest at hand.
    /// - Parameters:
    ///   - kinds: The outputs, in the order of the result.
    ///   - decoded: The picture (``StillRendering/decode(file:declaredMimeType:fileName:maxLongEdge:limits:decoderThreads:cancellation:logger:colourSpace:)``).
    ///   - settings: Sizes, formats and qualities.
    ///   - cancellation: Checked between outputs.
    /// - Returns: One output per kind, in order.
    /// - Throws: ``JobError`` from the scaler or an encoder, or the stop's code.
    public static func make(_ kinds: [StillKind], from decoded: RenderedStill, settings: StillImageSettings,
                            cancellation: JobCancellation?) throws(JobError) -> [MadeStill] {
        var made: [MadeStill] = []
        for kind in kinds {
            let target = settings.settings(for: kind)
            if kind == .preview {
                let size = RGBAImage.fittedSize(width: decoded.image.width, height: decoded.image.height, maxLongEdge: target.maxLongEdge)
                let bytes = try ImageEncoder.encode(decoded.image, as: target.format, quality: target.quality, fittingLongEdge: target.maxLongEdge)
                made.append(MadeStill(kind: kind, width: size.width, height: size.height, bytes: bytes))
                try cancellation?.check()
                continue
            }
            let image = try decoded.image.fitted(maxLongEdge: target.maxLongEdge)
            let bytes = try ImageEncoder.encode(image, as: target.format, quality: target.quality)
            var still = MadeStill(kind: kind, width: image.width, height: image.height, bytes: bytes)
            if kind == .thumbnail {
                // A placeholder clients paint before the thumbnail loads (ThumbHash, base64).
                still.thumbhash = Data(try ThumbHash.encode(fitting: image)).base64EncodedString()
                // What `duplicates` compares (docs/DUPLICATES.md); photos only: every waveform looks alike.
                if [.image, .heif, .raw].contains(decoded.kind) { still.perceptualHash = PerceptualHash.compute(image) }
            }
            made.append(still)
            try cancellation?.check()
        }
        return made
    }
}
