import Foundation
import Logging
import MediaNestCore
import MediaNestQueue

/// A handler that does what the job's `input_data` says, for tests and benchmarks.
///
/// Keys (all optional; `{}` is a no-op that completes at once):
/// - `sleep_ms`: work this long, checking cancellation every 10 ms;
/// - `progress`: report progress while sleeping;
/// - `crash`: kill the whole process with SIGKILL (after `sleep_ms`), as a poison file would;
/// - `fail`: `{"code": "...", "message": "...", "retryable": true, "until_attempt": N}` throws that
///   error (on attempts up to N when given, on every attempt otherwise);
/// - `read_file`: after sleeping, open the item's `storage_path` under the storage root, as a media
///   handler would, and fail with `file_missing` (or `io_error`) when that does not work;
/// - `item_metadata`: an object merged into `media_items.metadata`;
/// - `provider_metadata`: an object written as the item's `local` media_metadata row.
///
/// When the environment sets `MEDIANEST_TEST_RUN_LOG`, every run that reaches the end appends
/// `job_id attempt pid` to that file (O_APPEND writes of one short line do not interleave), so
/// tests can count how often each job really ran.
struct SyntheticHandler: JobHandler {
    let jobType: JobType
    /// Read once: `ProcessInfo.environment` copies the whole environment on every call, which
    /// was a quarter of the queue bench's client CPU.
    static let runLogPath = ProcessInfo.processInfo.environment["MEDIANEST_TEST_RUN_LOG"]

    func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        let input = context.job.input
        let sleep = Int(input["sleep_ms"]?.intValue ?? 0)
        let reportsProgress = input["progress"]?.boolValue ?? false
        var slept = 0
        while slept < sleep {
            try context.cancellation.check()
            let step = min(10, sleep - slept)
            usleep(UInt32(step * 1000))
            slept += step
            if reportsProgress {
                context.progress.report(stage: "sleeping", fraction: Double(slept) / Double(sleep), details: ["slept_ms": .int(Int64(slept))])
            }
        }
        try context.cancellation.check()
        if input["crash"]?.boolValue == true {
            context.logger.critical("synthetic crash requested: SIGKILL")
            kill(getpid(), SIGKILL)
        }
        if input["read_file"]?.boolValue == true {
            let path = context.storage.root + "/" + context.mediaItem.storagePath
            let descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else {
                let reason = String(cString: strerror(errno))
                throw JobError(errno == ENOENT ? .fileMissing : .ioError, "Cannot open \(context.mediaItem.storagePath): \(reason).",
                               retryable: errno != ENOENT)
            }
            close(descriptor)
        }
        if let fail = input["fail"], fail.objectValue != nil {
            let until = fail["until_attempt"]?.intValue.map(Int.init) ?? Int.max
            if context.job.attempt <= until {
                throw JobError(JobError.Code(fail["code"]?.stringValue ?? "internal_error"),
                               fail["message"]?.stringValue ?? "Synthetic failure on attempt \(context.job.attempt).",
                               retryable: fail["retryable"]?.boolValue)
            }
        }
        var update = MediaItemUpdate()
        if let merge = input["item_metadata"]?.objectValue { update.metadataMerge = merge }
        if let provided = input["provider_metadata"], provided.objectValue != nil {
            update.providerMetadata = [ProviderMetadata(provider: "local", data: provided, confidence: 1)]
        }
        if let path = SyntheticHandler.runLogPath {
            let line = "\(context.job.id) \(context.job.attempt) \(getpid())\n"
            let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            if descriptor >= 0 {
                _ = line.withCString { write(descriptor, $0, strlen($0)) }
                close(descriptor)
            }
        }
        return JobOutcome(output: ["pid": .int(Int64(getpid())), "attempt": .int(Int64(context.job.attempt)), "type": .string(jobType.rawValue)],
                          itemUpdate: update)
    }
}
