import Logging
import MediaNestCore
import MediaNestQueue
@testable import MediaNestWorker
import Synchronization
import Testing

/// A one-type handler that counts its calls.
private final class CountingHandler: JobHandler {
    let jobType: JobType
    let calls = Mutex(0)
    init(_ type: JobType) { jobType = type }

    func run(_ context: JobContext) throws(JobError) -> JobOutcome {
        calls.withLock { $0 += 1 }
        return JobOutcome(output: ["alone": .string(context.job.id)])
    }
}

/// A joint thumbnail + preview handler that does what the test says with the contexts it gets.
private final class ScriptedJointHandler: JointJobHandler {
    let jobTypes: Set<JobType> = [.thumbnail, .preview]
    let calls = Mutex<[[String]]>([])
    let body: @Sendable ([JobContext]) -> [Result<JobOutcome, JobError>]

    init(_ body: @escaping @Sendable ([JobContext]) -> [Result<JobOutcome, JobError>]) { self.body = body }

    func run(together contexts: [JobContext]) -> [Result<JobOutcome, JobError>] {
        calls.withLock { $0.append(contexts.map(\.job.id)) }
        return body(contexts)
    }
}

private let done = JobOutcome(output: ["ok": true])
private let policy = RetryPolicy(baseDelay: .seconds(10), jitter: 0)
private let item = MediaItemRecord(id: "m-1", ownerID: "o-1", filename: "a.jpg", originalFilename: nil, mimeType: "image/jpeg",
                                   fileSize: 1, storagePath: "u/a.jpg", metadata: [:])

/// The runs of one claimed unit: the item's thumbnail (the lead) and its preview.
private func unit(thumbnail: JobCancellation = JobCancellation(), preview: JobCancellation = JobCancellation()) -> [JobExecutor.Run] {
    [("t-1", JobType.thumbnail, thumbnail), ("p-1", JobType.preview, preview)].map { id, type, cancellation in
        JobExecutor.Run(work: ClaimedWork(job: ClaimedJob(id: id, mediaItemID: "m-1", type: type, attempt: 1, maxAttempts: 3, priority: 0, input: [:]),
                                          mediaItem: item, runAlone: false),
                        cancellation: cancellation, progress: JobProgress(), salvage: JobSalvage())
    }
}

/// The registry of a worker serving both still types, with the joint handler.
private func executor(_ joint: ScriptedJointHandler, alone: [CountingHandler], storageAvailable: Bool = true) -> JobExecutor {
    var registry = HandlerRegistry(alone)
    registry.register(joint)
    return JobExecutor(registry: registry, storage: StorageLayout(root: "/nonexistent"), retryPolicy: policy, timeouts: [:],
                       storageAvailable: { storageAvailable }, countBytesRead: { _, _ in },
                       logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
}

/// A claimed unit's run: one call of the joint handler, one outcome per job, each decided by
/// that job's own end and its own cancellation. No database, no pool.
@Suite("job executor: claimed units")
struct JobExecutorUnitTests {
    @Test func aUnitRunsInOneCallOfTheJointHandlerAndEachJobGetsItsOwnOutcome() {
        let alone = [CountingHandler(.thumbnail), CountingHandler(.preview)]
        let corrupt = JobError(.corruptMedia, "no preview")
        let joint = ScriptedJointHandler { _ in [.success(done), .failure(corrupt)] }
        let outcomes = executor(joint, alone: alone).execute(unit: unit())
        #expect(outcomes == [.complete(done), .fail(corrupt, salvaged: MediaItemUpdate())])
        #expect(joint.calls.withLock { $0 } == [["t-1", "p-1"]])
        #expect(alone.allSatisfy { $0.calls.withLock { $0 } == 0 })
    }

    @Test func aJobStoppedBeforeTheStartIsLeftOutAndItsSiblingRendersAlone() {
        let alone = [CountingHandler(.thumbnail), CountingHandler(.preview)]
        let joint = ScriptedJointHandler { contexts in contexts.map { _ in .success(done) } }
        let cancelled = JobCancellation()
        cancelled.stop(.cancelled)
        let outcomes = executor(joint, alone: alone).execute(unit: unit(preview: cancelled))
        #expect(outcomes == [.complete(JobOutcome(output: ["alone": "t-1"])), .drop(.cancelled)])
        #expect(joint.calls.withLock { $0 }.isEmpty)
        #expect(alone[0].calls.withLock { $0 } == 1)
        #expect(alone[1].calls.withLock { $0 } == 0)
    }

    @Test func aLeaseLostByOneJobWhileTheUnitRunsHandsBackThatJobOnly() {
        let preview = JobCancellation()
        // The heartbeat finds the preview's row taken while the decode runs.
        let joint = ScriptedJointHandler { contexts in
            preview.stop(.leaseLost)
            return contexts.map { _ in .success(done) }
        }
        let outcomes = executor(joint, alone: [CountingHandler(.thumbnail), CountingHandler(.preview)]).execute(unit: unit(preview: preview))
        #expect(outcomes == [.complete(done), .release(.leaseLost)])
    }

    @Test func aUnitClaimedWhileTheStorageRootWasGoneGoesBackWhole() {
        let joint = ScriptedJointHandler { contexts in contexts.map { _ in .success(done) } }
        let outcomes = executor(joint, alone: [CountingHandler(.thumbnail), CountingHandler(.preview)]).execute(unit: unit(), storageGone: true)
        #expect(outcomes == [.release(.environmentFault(.ioError)), .release(.environmentFault(.ioError))])
        #expect(joint.calls.withLock { $0 }.isEmpty)
    }
}
