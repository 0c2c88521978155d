import MediaNestCore
import MediaNestMedia
import MediaNestQueue

/// The metadata job's motion-photo step: a photo with a video hidden inside (Samsung, Google)
/// gets that video extracted into its derived directory and described in
/// `metadata.motion_photo` (see ``MediaNestMedia/MotionPhotoExtraction``).
///
/// It runs in the metadata job because that job already reads every photo once, first, and owns
/// the item's metadata; the thumbnail and preview jobs only make pictures. A video that cannot be
/// used never fails the job: the photo keeps its still, and the record says why.
enum MotionPhotoStep {
    /// Runs the step for a still image; `nil` when the photo is not a motion photo.
    static func run(_ context: JobContext, limits: MediaLimits, transcodeSettings: TranscodeSettings) throws(JobError) -> JSONValue? {
        guard let prefix = context.storage.derivedRootRelativeToStorage else {
            throw JobError(.internalError, "The derived root \(context.storage.derivedRoot) is not inside the storage root \(context.storage.root).", retryable: false)
        }
        let item = context.mediaItem
        let file = try SafeFile.open(relativePath: item.storagePath, in: context.storage.root, limits: limits, countingInto: context.bytesRead)
        let record = try MotionPhotoExtraction.extract(
            file: file,
            into: { () throws(JobError) in
                let directory = try DerivedDirectory.forMediaItem(item.id, derivedRoot: context.storage.derivedRoot, writtenBy: context.job.type.rawValue)
                _ = directory.removeTemporariesOfEarlierRuns()
                return directory
            },
            derivedRoot: context.storage.derivedRoot, storageRelativePrefix: prefix, limits: limits,
            transcodeSettings: transcodeSettings, cancellation: context.cancellation, logger: context.logger)
        try file.checkUnchanged()
        return record
    }
}
