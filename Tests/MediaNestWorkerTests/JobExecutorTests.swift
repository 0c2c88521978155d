import Logging
import MediaNestCore
import MediaNestQueue
@testable import MediaNestWorker
import Synchronization
import Testing

/// A handler that does what the test says and counts its calls.
private final class ScriptedHandler: JobHandler {
    let jobType: JobType = "metadata"
    let calls = Mutex(0)
    let body: @Sendable (JobContext) throws(JobError) -> JobOutcome

    init(_ body: @escaping @Sendable (JobContext) throws(JobError) -> JobOutcome) { self.body = body }

    func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        calls.withLock { $0 += 1 }
        return try body(context)
    }
}

private let done = JobOutcome(output: ["ok": true])

private func job(attempt: Int = 1, maxAttempts: Int = 3, type: JobType = "metadata") -> ClaimedJob {
    ClaimedJob(id: "j-1", mediaItemID: "m-1", type: type, attempt: attempt, maxAttempts: maxAttempts, priority: 0, input: [:])
}

private let item = MediaItemRecord(id: "m-1", ownerID: "o-1", filename: "a.jpg", originalFilename: nil, mimeType: "image/jpeg",
                                   fileSize: 1, storagePath: "u/a.jpg", metadata: [:])

/// No jitter: a retry's delay is the policy's nominal one.
private let policy = RetryPolicy(baseDelay: .seconds(10), jitter: 0)

private func executor(_ handler: ScriptedHandler?, timeout: Duration? = nil, storageAvailable: Bool = true) -> JobExecutor {
    JobExecutor(registry: HandlerRegistry(handler.map { [$0] } ?? []), storage: StorageLayout(root: "/nonexistent"),
                retryPolicy: policy, timeouts: timeout.map { ["metadata": $0] } ?? [:],
                storageAvailable: { storageAvailable }, countBytesRead: { _, _ in }, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
}

private func run(_ job: ClaimedJob = job(), item: MediaItemRecord? = item, cancellation: JobCancellation = JobCancellation()) -> JobExecutor.Run {
    JobExecutor.Run(work: ClaimedWork(job: job, mediaItem: item, runAlone: false), cancellation: cancellation,
                    progress: JobProgress(), salvage: JobSalvage())
}

/// Every way a run can end, decided by the executor alone: no database, no pool, no writer.
@Suite("job executor")
struct JobExecutorTests {
    @Test func aSuccessCompletesUnlessTheLeaseRanOutMeanwhile() {
        #expect(RunOutcome.classify(.success(done), stopReason: nil, environmentFault: false, job: job(), policy: policy) == .complete(done))
        // A shutdown or a time limit that came as the handler returned does not undo its work.
        #expect(RunOutcome.classify(.success(done), stopReason: .shutdown, environmentFault: false, job: job(), policy: policy) == .complete(done))
        #expect(RunOutcome.classify(.success(done), stopReason: .timeout, environmentFault: false, job: job(), policy: policy) == .complete(done))
        // Another worker may own the job now: hand it back, fenced, instead of completing it.
        #expect(RunOutcome.classify(.success(done), stopReason: .leaseLost, environmentFault: false, job: job(), policy: policy) == .release(.leaseLost))
    }

    @Test func aCancelledOrDeletedJobIsDroppedWhateverTheHandlerReturned() {
        let failure = Result<JobOutcome, JobError>.failure(StopReason.cancelled.error)
        #expect(RunOutcome.classify(failure, stopReason: .cancelled, environmentFault: false, job: job(), policy: policy) == .drop(.cancelled))
        #expect(RunOutcome.classify(.success(done), stopReason: .mediaItemDeleted, environmentFault: false, job: job(), policy: policy) == .drop(.mediaItemDeleted))
    }

    @Test func shutdownAndEnvironmentFaultsAreReleasedUncharged() {
        let io = JobError(.ioError, "gone")
        #expect(RunOutcome.classify(.failure(io), stopReason: .shutdown, environmentFault: false, job: job(), policy: policy) == .release(.shutdown))
        #expect(RunOutcome.classify(.failure(StopReason.shutdown.error), stopReason: nil, environmentFault: false, job: job(), policy: policy) == .release(.shutdown))
        #expect(RunOutcome.classify(.failure(io), stopReason: nil, environmentFault: true, job: job(), policy: policy) == .release(.environmentFault(.ioError)))
    }

    @Test func retryableFailuresRetryWhileAttemptsRemainAndPermanentOnesFail() {
        for code: JobError.Code in [.ioError, .fileChanged, .timeout] {
            #expect(RunOutcome.classify(.failure(JobError(code, "x")), stopReason: nil, environmentFault: false, job: job(attempt: 2), policy: policy)
                    == .retry(JobError(code, "x"), after: .seconds(20), salvaged: MediaItemUpdate()))
            #expect(RunOutcome.classify(.failure(JobError(code, "x")), stopReason: nil, environmentFault: false, job: job(attempt: 3), policy: policy)
                    == .fail(JobError(code, "x"), salvaged: MediaItemUpdate()))
        }
        let corrupt = JobError(.corruptMedia, "broken")
        #expect(RunOutcome.classify(.failure(corrupt), stopReason: nil, environmentFault: false, job: job(attempt: 1), policy: policy)
                == .fail(corrupt, salvaged: MediaItemUpdate()))
        // The worker's --max-attempts replaces the job's own.
        var once = policy
        once.maxAttemptsOverride = 1
        #expect(RunOutcome.classify(.failure(JobError(.ioError, "x")), stopReason: nil, environmentFault: false, job: job(attempt: 1), policy: once)
                == .fail(JobError(.ioError, "x"), salvaged: MediaItemUpdate()))
    }

    @Test func executeCallsTheHandlerAndKeepsWhatAFailedRunSalvaged() {
        let handler = ScriptedHandler { _ in done }
        #expect(executor(handler).execute(run()) == .complete(done))
        var update = MediaItemUpdate()
        update.checksumSHA256 = "abc"
        let salvaging = ScriptedHandler { [update] context throws(JobError) in
            context.salvage.record(update)
            throw JobError(.corruptMedia, "unreadable")
        }
        #expect(executor(salvaging).execute(run()) == .fail(JobError(.corruptMedia, "unreadable"), salvaged: update))
    }

    @Test func theClockStartsWhenTheRunStartsNotAtTheClaim() {
        // A token made long before (its own limit long passed) is forgiven the wait.
        let handler = ScriptedHandler { context throws(JobError) in
            try context.cancellation.check()
            return done
        }
        #expect(executor(handler, timeout: .seconds(3600)).execute(run(cancellation: JobCancellation(timeout: .zero))) == .complete(done))
        // The type's limit applies from the start: a zero limit stops the handler at its first check.
        #expect(executor(handler, timeout: .zero).execute(run()) == .retry(StopReason.timeout.error, after: .seconds(10), salvaged: MediaItemUpdate()))
    }

    @Test func aRunStoppedBeforeItStartsOrThatCannotRunNeverCallsTheHandler() {
        let handler = ScriptedHandler { _ in done }
        let stopped = JobCancellation()
        stopped.stop(.shutdown)
        #expect(executor(handler).execute(run(cancellation: stopped)) == .release(.shutdown))
        #expect(executor(handler).execute(run(), storageGone: true) == .release(.environmentFault(.ioError)))
        guard case .fail(let missing, _) = executor(handler).execute(run(item: nil)) else { Issue.record("not a failure"); return }
        #expect(missing.code == .mediaItemMissing)
        guard case .fail(let unknown, _) = executor(nil).execute(run()) else { Issue.record("not a failure"); return }
        #expect(unknown.code == .unknownJobType)
        #expect(handler.calls.withLock { $0 } == 0)
    }

    @Test func anIOFailureIsTheEnvironmentsFaultOnlyWhenTheStorageRootIsGone() {
        let handler = ScriptedHandler { _ throws(JobError) in throw JobError(.ioError, "EIO") }
        #expect(executor(handler, storageAvailable: false).execute(run()) == .release(.environmentFault(.ioError)))
        #expect(executor(handler, storageAvailable: true).execute(run()) == .retry(JobError(.ioError, "EIO"), after: .seconds(10), salvaged: MediaItemUpdate()))
    }
}
