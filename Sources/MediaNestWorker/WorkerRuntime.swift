import Dispatch
import Foundation
public import Logging
import MediaNestCore
import MediaNestDB
public import MediaNestQueue

/// How a worker run ended.
public enum WorkerExit: Sendable, Hashable {
    /// `--drain`: nothing was runnable and nothing was in flight.
    case drained
    /// A signal (or ``WorkerRuntime/requestShutdown(immediately:)``) stopped the worker.
    case shutdown
    /// A fault no retry can fix appeared while running (the schema was reverted or dropped, the
    /// role lost its privileges): the worker released what it could and stopped. The message
    /// says what to do; exit with ``WorkerStartupError/configurationExitCode``.
    case fatal(String)
}

/// The worker daemon: claims jobs, runs them on a bounded Dispatch pool, keeps their leases
/// alive, writes their results, rescues crashed workers' jobs and shuts down gracefully.
///
/// Threads, each with its own PostgreSQL connection, so that no blocking libpq call ever runs on
/// Swift's cooperative pool and one slow call never delays another kind of work:
/// - the *scheduler* thread claims, writes results (retrying them while the database is down),
///   rescues expired leases and decides when to stop; it writes one batch of results on a
///   second connection while it claims on the first, so the two overlap;
/// - the *heartbeat* thread extends all in-flight leases in one statement per interval and stops
///   jobs that were cancelled or taken over;
/// - the *listener* thread sleeps in `poll(2)` on a LISTEN connection and wakes the scheduler.
///
/// Handlers run on a concurrent `DispatchQueue`; the scheduler bounds how many run at once,
/// globally and per job type.
///
/// Start it from a command with ``run()``; see ``WorkerRuntime/installSignalHandlers()``.
public final class WorkerRuntime: Sendable {
    /// The configuration the runtime was made with.
    public let configuration: WorkerConfiguration
    /// This worker's id (`host:pid:instance`).
    public let identity: WorkerIdentity
    private let registry: HandlerRegistry
    private let store: JobStore
    private let servedTypes: [JobType]
    private let logger: Logger
    private let state: RuntimeState
    /// Watches the storage root (when one is configured) so that an unmounted volume stops
    /// claiming instead of failing every job.
    private let storageMonitor: StorageRootMonitor?
    private let pool = DispatchQueue(label: "medianest.jobs", attributes: .concurrent)
    /// Job counters, durations and in-flight gauges for `/metrics`.
    let metrics = WorkerMetrics()
    private let signalQueue = DispatchQueue(label: "medianest.signals")
    private let signalSources = SignalSources()

    /// Creates a runtime.
    /// - Parameters:
    ///   - configuration: Options; validate them first.
    ///   - registry: The handlers; the worker serves their types (narrowed by `configuration.types`).
    ///   - logger: The base logger; jobs add `job_id`, `job_type` and `media_id`.
    /// - Throws: ``WorkerConfigurationError`` when no type would be served.
    public init(configuration: WorkerConfiguration, registry: HandlerRegistry, logger: Logger) throws(WorkerConfigurationError) {
        try configuration.validate()
        let available = registry.types
        let served: [JobType]
        if let wanted = configuration.types {
            let missing = wanted.filter { registry.handler(for: $0) == nil }
            guard missing.isEmpty else {
                throw WorkerConfigurationError("No handler for job type \(missing.map(\.rawValue).joined(separator: ", ")) in this build; available: \(available.isEmpty ? "none" : available.map(\.rawValue).joined(separator: ", ")).")
            }
            served = Array(Set(wanted)).sorted()
        } else {
            served = available
        }
        guard !served.isEmpty else {
            throw WorkerConfigurationError(configuration.storage == nil
                ? "No storage root is configured, so no media job can run: pass --storage-root or set MEDIANEST_STORAGE_ROOT to the directory that media_items.storage_path is relative to."
                : "This worker has no job handlers to run, so it would never claim a job.")
        }
        self.configuration = configuration
        self.identity = WorkerIdentity(instance: configuration.instance)
        self.registry = registry
        self.servedTypes = served
        self.store = JobStore(workerID: identity.id, lease: configuration.lease, retryPolicy: configuration.retryPolicy,
                              maxLostAlone: configuration.maxLostAlone)
        var logger = logger
        logger[metadataKey: "worker_id"] = "\(identity.id)"
        self.logger = logger
        self.state = RuntimeState()
        self.storageMonitor = configuration.storage.map { StorageRootMonitor(root: $0.root, logger: logger) }
    }

    /// The job types this worker claims.
    public var types: [JobType] { servedTypes }

    // MARK: Control

    /// Stops claiming and lets in-flight jobs finish for the grace period; with `immediately`,
    /// stops them now. Either way unfinished jobs go back to pending without charging an attempt.
    public func requestShutdown(immediately: Bool = false) {
        state.withLock { state in
            if state.shutdownRequestedAt == nil {
                state.shutdownRequestedAt = .now
                logger.info("shutting down: no new jobs; in-flight jobs may finish", metadata: ["grace_period_s": "\(configuration.gracePeriod.seconds)", "in_flight": "\(state.inFlight.count)"])
            } else if immediately || !state.immediate {
                state.immediate = true
                logger.warning("stopping in-flight jobs now", metadata: ["in_flight": "\(state.inFlight.count)"])
            }
            if immediately { state.immediate = true }
        }
        state.signal()
    }

    /// Makes SIGTERM and SIGINT start a graceful shutdown and a second one stop at once.
    ///
    /// The default handlers are ignored (`SIG_IGN`) so that the signal only reaches the
    /// `DispatchSource`, which runs on a queue of its own rather than in a signal handler.
    public func installSignalHandlers() {
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            source.setEventHandler { [self] in
                let alreadyStopping = state.withLock { $0.shutdownRequestedAt != nil }
                logger.notice("received signal \(signalNumber == SIGTERM ? "SIGTERM" : "SIGINT")")
                requestShutdown(immediately: alreadyStopping)
            }
            source.resume()
            signalSources.keep(source)
        }
    }

    // MARK: Start-up checks

    /// Checks, before anything runs, what no retry would fix: the storage root (absolute, present,
    /// a directory) and the database (it exists, the role and password work, the schema is
    /// migrated). While the server merely cannot be reached (down, starting up) it waits, with a
    /// warning per try, until it can or a shutdown is requested.
    /// - Returns: `false` when a shutdown was requested while waiting.
    /// - Throws: ``WorkerStartupError`` (exit code 78) naming the fault and what to do.
    public func checkEnvironment() async throws(WorkerStartupError) -> Bool {
        if let storage = configuration.storage { try StorageRootMonitor.validateAtStart(storage.root) }
        var backoff: Duration = .milliseconds(250)
        while true {
            let database = configuration.database
            let logger = self.logger
            // libpq blocks; keep it off the cooperative pool.
            let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<DatabasePreflight.Outcome, WorkerStartupError>, Never>) in
                Thread.detachNewThread {
                    continuation.resume(returning: Result { () throws(WorkerStartupError) in try DatabasePreflight.check(database, logger: logger) })
                }
            }
            switch outcome {
            case .success(.ready):
                return true
            case .success(.unreachable(let error)):
                logger.warning("database unreachable at start; waiting for it", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(backoff.seconds * 1000))"])
            case .failure(let error):
                throw error
            }
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            try? await Task.sleep(for: backoff)
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    // MARK: Run

    /// Runs until shutdown (or, with `drain`, until nothing is left), then returns.
    ///
    /// Never blocks the calling task's thread: the work happens on the runtime's own threads.
    /// - Returns: Why it stopped.
    public func run() async -> WorkerExit {
        await withCheckedContinuation { (continuation: CheckedContinuation<WorkerExit, Never>) in
            let thread = Thread { [self] in continuation.resume(returning: runBlocking()) }
            thread.name = "medianest-scheduler"
            thread.start()
        }
    }

    /// Runs on the calling thread until shutdown or drain; see ``run()``.
    public func runBlocking() -> WorkerExit {
        logger.info("worker starting", metadata: [
            "types": "\(servedTypes.map(\.rawValue).joined(separator: ","))",
            "concurrency": "\(configuration.concurrency)",
            "lease_s": "\(configuration.lease.seconds)", "heartbeat_s": "\(configuration.heartbeatInterval.seconds)",
            "listen": "\(configuration.listen)", "database": "\(configuration.database)",
        ])
        let heartbeat = Thread { [self] in heartbeatLoop() }
        heartbeat.name = "medianest-heartbeat"
        heartbeat.start()
        if configuration.listen {
            let listener = Thread { [self] in listenLoop() }
            listener.name = "medianest-listener"
            listener.start()
        }
        let exit = Scheduler(runtime: self).loop()
        state.withLock { $0.finished = true }
        state.signal()
        logger.info("worker stopped", metadata: ["reason": "\(exit)"])
        return exit
    }

    // MARK: Scheduler

    /// The scheduler thread's private state and its two connections.
    ///
    /// Result writes and claims overlap: each iteration writes the finished runs on ``writeLane``
    /// while it claims new jobs on ``claimLane``, two connections and two backends, so a batch
    /// of completions and the next claim do not wait for each other. The write lane touches
    /// only ``pendingWrites``, ``writeLane``, ``preparedWriterBackend`` and ``retryWakeups``
    /// (and the shared state, under its lock); everything else belongs to the claim lane.
    /// That split is why the class may be shared with the second lane (`@unchecked Sendable`).
    private final class Scheduler: @unchecked Sendable {
        let runtime: WorkerRuntime
        /// Claims, rescues, the drain check and shutdown releases.
        let claimLane: DatabaseLane
        /// Result writes.
        let writeLane: DatabaseLane
        var pendingWrites: [PendingWrite] = []
        /// The writer connection's backend that ``WorkerConfiguration/resultLockTimeout`` was set on.
        var preparedWriterBackend: Int32 = 0
        var nextPoll: ContinuousClock.Instant = .now
        /// When a retry this worker scheduled comes due (no NOTIFY announces that moment).
        var retryWakeups: [ContinuousClock.Instant] = []
        var pollIntervalInUse: Duration = .zero
        var storageWasAvailable = true
        var nextRescue: ContinuousClock.Instant = .now
        var drainingForRunAlone = false
        var stoppedForShutdown = false
        var hardDeadline: ContinuousClock.Instant?

        init(runtime: WorkerRuntime) {
            self.runtime = runtime
            self.claimLane = DatabaseLane(PGConnectionRunner(configuration: runtime.configuration.database.with("application_name", "medianest-worker scheduler"),
                                                             label: "scheduler", logger: runtime.logger))
            self.writeLane = DatabaseLane(PGConnectionRunner(configuration: runtime.configuration.database.with("application_name", "medianest-worker writer"),
                                                             label: "writer", logger: runtime.logger))
        }

        var logger: Logger { runtime.logger }
        var store: JobStore { runtime.store }
        var configuration: WorkerConfiguration { runtime.configuration }

        /// Runs a database call on the claim lane unless the database is known to be down.
        func withDatabase<T>(_ what: String, _ body: (PGConnection) throws -> T) -> T? {
            claimLane.call(what, logger: logger, body)
        }

        func loop() -> WorkerExit {
            while true {
                let snapshot = runtime.state.withLock { state -> LoopSnapshot in
                    let finished = state.finishedRuns
                    state.finishedRuns = []
                    let claimWanted = state.claimWanted
                    state.claimWanted = false
                    return LoopSnapshot(finished: finished, wakeCount: state.wakeCount, claimWanted: claimWanted, shutdownAt: state.shutdownRequestedAt,
                                        immediate: state.immediate, runningHandlers: state.runningHandlers,
                                        runAloneActive: state.inFlight.values.contains { $0.work.runAlone && !$0.handlerDone })
                }
                pendingWrites.append(contentsOf: snapshot.finished.map { PendingWrite(run: $0) })

                let now = ContinuousClock.now
                if let shutdownAt = snapshot.shutdownAt {
                    writePendingResults()
                    if !stoppedForShutdown && (snapshot.immediate || now >= shutdownAt + configuration.gracePeriod) {
                        stoppedForShutdown = true
                        // Handlers get a moment to notice the stop and return; one stuck in C code is
                        // released anyway when the moment is over.
                        hardDeadline = now + (snapshot.immediate ? .seconds(1) : .seconds(3))
                        runtime.state.withLock { state in
                            for entry in state.inFlight.values where !entry.handlerDone { entry.cancellation.stop(.shutdown) }
                        }
                    }
                    if let hardDeadline, now >= hardDeadline {
                        releaseAbandonedRuns()
                        return finish(.shutdown)
                    }
                    let idle = runtime.state.withLock { $0.inFlight.isEmpty }
                    if idle && pendingWrites.isEmpty { return finish(.shutdown) }
                } else {
                    if let fatal = claimLane.fatal {
                        runtime.state.withLock { $0.fatal = $0.fatal ?? fatal }
                        logger.critical("stopping: \(fatal)")
                        runtime.requestShutdown(immediately: true)
                        continue
                    }
                    if now >= nextRescue {
                        rescue()
                        nextRescue = now + configuration.rescueInterval
                    }
                    let retryDue = retryWakeups.contains { $0 <= now }
                    if retryDue { retryWakeups.removeAll { $0 <= now } }
                    // A finished handler freed a slot: claim for it while its result is written.
                    // Nothing is claimed while the storage root is gone (checked with a stat each
                    // cycle); what is pending stays pending, uncharged, until it is back.
                    let storageAvailable = runtime.storageMonitor?.isAvailable() ?? true
                    // Wake-ups that came while the root was gone were spent: claim once it is back.
                    let storageCameBack = storageAvailable && !storageWasAvailable
                    storageWasAvailable = storageAvailable
                    let claimNow = storageAvailable && (snapshot.claimWanted || !snapshot.finished.isEmpty || retryDue || storageCameBack || now >= nextPoll)
                    let pollTick = !snapshot.claimWanted && snapshot.finished.isEmpty
                    let pollInterval = currentPollInterval
                    if now >= nextPoll {
                        nextPoll = now + jittered(pollInterval)
                    } else if pollInterval < pollIntervalInUse {
                        // LISTEN just went down: do not sit out the slow poll.
                        nextPoll = min(nextPoll, now + jittered(pollInterval))
                    }
                    pollIntervalInUse = pollInterval
                    if claimNow && !pendingWrites.isEmpty {
                        DispatchQueue.concurrentPerform(iterations: 2) { lane in
                            if lane == 0 {
                                writePendingResults()
                            } else {
                                claim(runningHandlers: snapshot.runningHandlers, runAloneActive: snapshot.runAloneActive, pollTick: pollTick)
                            }
                        }
                    } else if claimNow {
                        claim(runningHandlers: snapshot.runningHandlers, runAloneActive: snapshot.runAloneActive, pollTick: pollTick)
                    } else {
                        writePendingResults()
                    }
                    if configuration.drain, drainFinished() { return finish(.drained) }
                }
                wait(seenWakeCount: snapshot.wakeCount)
            }
        }

        private func drainFinished() -> Bool {
            let busy = runtime.state.withLock { !$0.inFlight.isEmpty || $0.claimWanted }
            guard !busy, pendingWrites.isEmpty else { return false }
            guard let runnable = withDatabase("drain check", { try store.runnableJobExists(types: runtime.servedTypes, on: $0) }) else { return false }
            return !runnable
        }

        /// The fallback poll: slow while LISTEN delivers wake-ups, fast without it.
        private var currentPollInterval: Duration {
            configuration.listen && runtime.state.withLock({ $0.listenHealthy }) ? configuration.listenPollInterval : configuration.pollInterval
        }

        private func wait(seenWakeCount: UInt64) {
            var deadline = nextPoll
            if runtimeIsShuttingDown { deadline = .now + .milliseconds(100) }
            deadline = min(deadline, nextRescue)
            if let due = retryWakeups.min() { deadline = min(deadline, due) }
            // While the storage root is gone, look again every second so claiming resumes soon.
            if let monitor = runtime.storageMonitor, !monitor.isAvailableCached { deadline = min(deadline, .now + .seconds(1)) }
            if let due = pendingWrites.map(\.notBefore).min() {
                deadline = min(deadline, max(writeLane.retryAt, due, .now + .milliseconds(10)))
            }
            if configuration.drain { deadline = min(deadline, .now + .milliseconds(250)) }
            runtime.state.wait(until: deadline, seenWakeCount: seenWakeCount)
        }

        private var runtimeIsShuttingDown: Bool { runtime.state.withLock { $0.shutdownRequestedAt != nil } }

        private func jittered(_ interval: Duration) -> Duration {
            interval * Double.random(in: 0.8...1.2)
        }

        private func finish(_ exit: WorkerExit) -> WorkerExit {
            if let fatal = runtime.state.withLock({ $0.fatal }) {
                claimLane.runner.close()
                writeLane.runner.close()
                return .fatal(fatal)
            }
            _ = withDatabase("unregister") { try store.unregister(on: $0) }
            claimLane.runner.close()
            writeLane.runner.close()
            return exit
        }

        // MARK: Claim

        private func claim(runningHandlers: [JobType: Int], runAloneActive: Bool, pollTick: Bool) {
            guard !runAloneActive else { return }
            let running = runningHandlers.values.reduce(0, +)
            let types = runtime.servedTypes
            if running == 0 {
                drainingForRunAlone = false
                if let alone = withDatabase("claim run-alone", { try store.claimRunAlone(types: types, on: $0) }) {
                    if let alone {
                        logger.notice("running a job rescued after a crash alone, to find out whether it crashes the worker",
                                      metadata: ["job_id": "\(alone.job.id)", "job_type": "\(alone.job.type)", "media_id": "\(alone.job.mediaItemID)",
                                                 "attempt": "\(alone.job.attempt)"])
                        start([alone])
                        return
                    }
                } else {
                    return
                }
            } else {
                if pollTick, let waiting = withDatabase("check run-alone", { try store.runAloneJobWaiting(types: types, on: $0) }), waiting {
                    if !drainingForRunAlone {
                        logger.info("a job rescued after a crash waits to run alone; finishing in-flight jobs first")
                    }
                    drainingForRunAlone = true
                }
                if drainingForRunAlone { return }
            }
            let globalFree = configuration.concurrency - running
            guard globalFree > 0 else { return }
            var slots: [JobType: Int] = [:]
            for type in types {
                let limit = min(configuration.perTypeLimits[type] ?? configuration.concurrency, configuration.concurrency)
                slots[type] = max(0, min(limit - (runningHandlers[type] ?? 0), globalFree))
            }
            guard let claimed = withDatabase("claim", { try store.claim(slots: slots, limit: globalFree, on: $0) }) else { return }
            if !claimed.isEmpty {
                logger.debug("claimed jobs", metadata: ["count": "\(claimed.count)"])
                for work in claimed { runtime.metrics.claimed(work.job.type) }
                start(claimed)
            }
        }

        private func start(_ works: [ClaimedWork]) {
            // The root may have gone between the check and the claim: hand the jobs straight back.
            let storageGone = !(runtime.storageMonitor?.isAvailable() ?? true)
            for work in works {
                var jobLogger = logger
                jobLogger[metadataKey: "job_id"] = "\(work.job.id)"
                jobLogger[metadataKey: "job_type"] = "\(work.job.type)"
                jobLogger[metadataKey: "media_id"] = "\(work.job.mediaItemID)"
                jobLogger[metadataKey: "attempt"] = "\(work.job.attempt)"
                let cancellation = JobCancellation(timeout: configuration.timeout(for: work.job.type))
                let progress = JobProgress()
                let salvage = JobSalvage()
                let token = runtime.state.withLock { state -> UInt64 in
                    state.nextToken += 1
                    if let previous = state.inFlight[work.job.id] {
                        // Our own lease on this job expired and it was rescued back to us: the old
                        // run must not write anything, and the new one takes its place.
                        previous.cancellation.stop(.leaseLost)
                        if !previous.handlerDone { state.runningHandlers[previous.work.job.type, default: 1] -= 1 }
                    }
                    state.inFlight[work.job.id] = InFlightRun(work: work, token: state.nextToken, cancellation: cancellation, progress: progress, salvage: salvage)
                    state.runningHandlers[work.job.type, default: 0] += 1
                    return state.nextToken
                }
                if storageGone {
                    runtime.finishRun(jobID: work.job.id, token: token,
                                      result: .failure(JobError(.ioError, "The storage root is unavailable.")), environmentFault: true)
                    continue
                }
                guard let item = work.mediaItem else {
                    runtime.finishRun(jobID: work.job.id, token: token, result: .failure(JobError(.mediaItemMissing, "The media item \(work.job.mediaItemID) of this job no longer exists.")))
                    continue
                }
                guard let handler = runtime.registry.handler(for: work.job.type) else {
                    runtime.finishRun(jobID: work.job.id, token: token, result: .failure(JobError(.unknownJobType, "This worker has no handler for job type \(work.job.type).")))
                    continue
                }
                let context = JobContext(job: work.job, mediaItem: item, storage: configuration.storage ?? StorageLayout(root: "/nonexistent"),
                                         progress: progress, cancellation: cancellation, logger: jobLogger, salvage: salvage)
                jobLogger.info("job started")
                runtime.pool.async { [runtime] in
                    let result: Result<JobOutcome, JobError>
                    do {
                        result = .success(try handler.run(context))
                    } catch {
                        result = .failure(JobError.wrapping(error))
                    }
                    // A read that failed because the whole volume went away is not the job's
                    // fault: judge that now, while the failure is fresh.
                    var environmentFault = false
                    if case .failure(let error) = result, [.ioError, .fileMissing].contains(error.code), let monitor = runtime.storageMonitor {
                        environmentFault = !monitor.isAvailable()
                    }
                    runtime.finishRun(jobID: work.job.id, token: token, result: result, environmentFault: environmentFault)
                }
            }
        }

        // MARK: Results

        /// Writes what is due of ``pendingWrites``.
        ///
        /// Plain successes go in one batch transaction. A batch the database refuses for any
        /// reason but the connection is split: its runs are written one by one from then on, so
        /// that one result that cannot be stored does not hold back the others. A write that hits
        /// a transient conflict (SQLSTATE class 40, `55P03` after ``WorkerConfiguration/resultLockTimeout``)
        /// is retried, as a whole transaction, after a short jittered backoff, while the writes
        /// behind it go on; the job's attempts are never touched for it. One that still fails
        /// after ``WorkerConfiguration/resultWriteRetryWindow`` is given up on its own and logged
        /// with the job id: the run leaves the heartbeat, its lease expires, and the job is
        /// rescued. Only the final outcome of each write is logged.
        private func writePendingResults() {
            guard !pendingWrites.isEmpty, ContinuousClock.now >= writeLane.retryAt else { return }
            writeSuccessfulResultsInOneBatch()
            var index = 0
            while index < pendingWrites.count, ContinuousClock.now >= writeLane.retryAt {
                let pending = pendingWrites[index]
                guard pending.notBefore <= .now else { index += 1; continue }
                do {
                    try writeLane.runner.runBlocking { connection in
                        try prepareWriter(connection)
                        try write(pending, on: connection)
                    }
                    writeLane.backoff = .milliseconds(100)
                    pendingWrites.remove(at: index)
                    forget([pending.run])
                } catch let error as DatabaseError where error.isConnectionProblem {
                    // Nothing was written; everything waits for the connection, in order.
                    writeLane.noteUnavailable("write result", error: error, logger: logger)
                    return
                } catch let error as DatabaseError where error.isTransientConflict {
                    if scheduleRetry(of: index, after: error) { index += 1 }
                } catch {
                    giveUp(pendingWrites.remove(at: index), error: error)
                }
            }
        }

        /// Completes the due plain successes that have not been split off, in one transaction.
        private func writeSuccessfulResultsInOneBatch() {
            let now = ContinuousClock.now
            let batch = pendingWrites.filter { pending in
                guard !pending.alone, pending.notBefore <= now, pending.run.stopReason == nil, case .success = pending.run.result else { return false }
                return true
            }
            guard batch.count > 1 else { return }
            let owned: Set<String>
            do {
                owned = try writeLane.runner.runBlocking { connection in
                    try prepareWriter(connection)
                    return try store.completeBatch(batch.map { pending in
                        guard case .success(let outcome) = pending.run.result else { preconditionFailure("the batch holds successes only") }
                        return (pending.run.work.job, outcome)
                    }, on: connection)
                }
                writeLane.backoff = .milliseconds(100)
            } catch let error as DatabaseError where error.isConnectionProblem {
                writeLane.noteUnavailable("write results", error: error, logger: logger)
                return
            } catch {
                // Which run the database choked on is unknown: write each one on its own.
                logger.debug("a batch of results could not be written together; writing them one by one", metadata: ["count": "\(batch.count)", "error": "\(error)"])
                let tokens = Set(batch.map(\.run.token))
                for index in pendingWrites.indices where tokens.contains(pendingWrites[index].run.token) { pendingWrites[index].alone = true }
                return
            }
            for pending in batch {
                let job = pending.run.work.job
                if owned.contains(job.id) {
                    runtime.metrics.completed(job.type)
                    logger.info("job completed", metadata: ["job_id": "\(job.id)", "job_type": "\(job.type)", "media_id": "\(job.mediaItemID)",
                                                          "attempt": "\(job.attempt)", "duration_ms": "\(pending.run.durationMilliseconds)"])
                } else {
                    logger.warning("job result dropped: this run no longer owns the job (lease lost or cancelled)",
                                   metadata: ["job_id": "\(job.id)", "job_type": "\(job.type)", "media_id": "\(job.mediaItemID)",
                                              "attempt": "\(job.attempt)"])
                }
            }
            let written = Set(batch.map(\.run.token))
            pendingWrites.removeAll { written.contains($0.run.token) }
            forget(batch.map(\.run))
        }

        /// Sets the writer session's `lock_timeout` once per backend, so a write stuck behind a
        /// row lock turns into a `55P03` to retry instead of stalling every write behind it.
        private func prepareWriter(_ connection: PGConnection) throws(DatabaseError) {
            guard let timeout = configuration.resultLockTimeout, connection.backendPID != preparedWriterBackend else { return }
            try connection.execute("SELECT set_config('lock_timeout', $1, false)", ["\(max(1, Int(timeout.seconds * 1000)))ms"])
            preparedWriterBackend = connection.backendPID
        }

        /// Backs the write at `index` off after a transient conflict, or gives it up when its
        /// retry window is spent.
        /// - Returns: Whether it stays in the queue.
        private func scheduleRetry(of index: Int, after error: DatabaseError) -> Bool {
            let now = ContinuousClock.now
            var pending = pendingWrites[index]
            pending.conflicts += 1
            let firstConflict = pending.firstConflictAt ?? now
            pending.firstConflictAt = firstConflict
            pending.lastError = error
            guard now - firstConflict < configuration.resultWriteRetryWindow else {
                pendingWrites.remove(at: index)
                giveUp(pending, error: error)
                return false
            }
            let base = min(Duration.milliseconds(50) * (1 << min(pending.conflicts - 1, 5)), .seconds(2))
            pending.notBefore = now + base * Double.random(in: 0.5...1.5)
            pendingWrites[index] = pending
            logger.debug("result write hit a conflict; retrying it", metadata: [
                "job_id": "\(pending.run.work.job.id)", "try": "\(pending.conflicts)", "sqlstate": "\(error.sqlState ?? "")"])
            return true
        }

        /// Drops a write that cannot be done. The run leaves the in-flight set, so the heartbeat
        /// stops extending its lease; the lease expires and a rescue pass (of any worker) puts
        /// the job back to pending. Nothing is lost and nothing is charged for it here.
        private func giveUp(_ pending: PendingWrite, error: any Error) {
            let job = pending.run.work.job
            logger.error("job result could not be stored; giving up on this write: the job's lease will expire and the job will be rescued",
                         metadata: ["job_id": "\(job.id)", "job_type": "\(job.type)", "media_id": "\(job.mediaItemID)",
                                    "attempt": "\(job.attempt)", "tries": "\(pending.conflicts + 1)", "error": "\(error)"])
            forget([pending.run])
        }

        /// Removes written (or given-up) runs from the in-flight set.
        private func forget(_ runs: [FinishedRun]) {
            runtime.state.withLock { state in
                for run in runs where state.inFlight[run.work.job.id]?.token == run.token {
                    state.inFlight[run.work.job.id] = nil
                }
                // A finished job frees a slot and hints that more work may be waiting.
                if state.shutdownRequestedAt == nil { state.claimWanted = true }
            }
        }

        /// Writes one run's outcome in its own transaction(s) and logs it.
        /// - Throws: ``DatabaseError`` for the caller to retry (connection, transient conflict)
        ///   or give up on.
        private func write(_ pending: PendingWrite, on connection: PGConnection) throws {
            let run = pending.run
            var jobLogger = logger
            jobLogger[metadataKey: "job_id"] = "\(run.work.job.id)"
            jobLogger[metadataKey: "job_type"] = "\(run.work.job.type)"
            jobLogger[metadataKey: "media_id"] = "\(run.work.job.mediaItemID)"
            jobLogger[metadataKey: "attempt"] = "\(run.work.job.attempt)"
            if pending.conflicts > 0 { jobLogger[metadataKey: "write_retries"] = "\(pending.conflicts)" }
            let job = run.work.job
            switch run.stopReason {
            case .cancelled:
                jobLogger.notice("job cancelled by an operator; stopped")
                return
            case .mediaItemDeleted:
                // Its row went with the item (ON DELETE CASCADE): there is nothing to write.
                jobLogger.notice("the job's media item was deleted; stopped")
                return
            case .leaseLost:
                jobLogger.warning("job stopped: this worker lost its lease; another worker owns it now")
                return
            default:
                break
            }
            switch run.result {
            case .success(let outcome):
                let stored: Bool
                do {
                    stored = try store.complete(job, outcome: outcome, on: connection)
                } catch let error as DatabaseError where !error.isConnectionProblem && !error.isTransientConflict {
                    // The result itself cannot be stored (for example an item update breaks a
                    // constraint): retrying it would fail the same way, so it is the run's failure.
                    let failure = JobError(.internalError, "The job's result could not be stored: \(error.message)", retryable: true)
                    jobLogger.error("job result could not be stored; recording that as the run's failure", metadata: ["error": "\(error)"])
                    _ = try store.fail(job, error: failure, on: connection)
                    return
                }
                if stored {
                    runtime.metrics.completed(job.type)
                    jobLogger.info("job completed", metadata: ["duration_ms": "\(run.durationMilliseconds)"])
                } else {
                    jobLogger.warning("job result dropped: this run no longer owns the job (lease lost or cancelled)")
                }
            case .failure(let error) where run.stopReason == .shutdown || error.code == .shutdown:
                let released = try store.release([job], on: connection)
                jobLogger.notice(released.isEmpty ? "job stopped for shutdown; it was no longer ours" : "job released for shutdown; it goes back to pending without charging an attempt")
            case .failure(let error) where run.environmentFault:
                let released = try store.release([job], on: connection)
                jobLogger.notice(released.isEmpty ? "job failed while the storage root was unavailable; it was no longer ours"
                                                  : "job released without charging an attempt: the storage root was unavailable",
                                 metadata: ["code": "\(error.code)"])
            case .failure(let error):
                switch try store.fail(job, error: error, itemUpdate: run.salvaged, on: connection) {
                case .retrying(let runAt):
                    runtime.metrics.retried(job.type)
                    jobLogger.warning("job failed; will retry", metadata: ["code": "\(error.code)", "error": "\(error.message)", "run_at": "\(runAt)"])
                    // No NOTIFY marks the moment run_at passes: wake up for it ourselves.
                    retryWakeups.append(.now + .seconds(max(0, runAt.timeIntervalSinceNow)) + .milliseconds(50))
                case .failed:
                    runtime.metrics.failed(job.type)
                    jobLogger.error("job failed", metadata: ["code": "\(error.code)", "error": "\(error.message)", "retryable": "\(error.isRetryable)"])
                case .dropped:
                    jobLogger.warning("job failure dropped: this run no longer owns the job")
                }
            }
        }

        /// Puts back every run whose handler did not return in time after a shutdown stop.
        private func releaseAbandonedRuns() {
            let abandoned = runtime.state.withLock { state in state.inFlight.values.filter { !$0.handlerDone }.map(\.work.job) }
            guard !abandoned.isEmpty else { return }
            for _ in 0..<20 {
                if let released = withDatabase("release on shutdown", { try store.release(abandoned, on: $0) }) {
                    logger.notice("released jobs still running at shutdown", metadata: ["count": "\(released.count)"])
                    return
                }
                Thread.sleep(forTimeInterval: 0.25)
                claimLane.retryAt = .now
            }
            logger.error("could not release in-flight jobs; they return to pending when their lease expires", metadata: ["count": "\(abandoned.count)"])
        }

        // MARK: Rescue

        private func rescue() {
            let running = runtime.state.withLock { Array($0.inFlight.keys) }
            guard let report = withDatabase("rescue", { try store.rescueExpired(excluding: running, on: $0) }) else { return }
            runtime.metrics.rescued(requeued: report.requeued.count, poisoned: report.poisoned.count)
            if !report.requeued.isEmpty {
                logger.warning("rescued jobs whose worker stopped heartbeating; they will run alone", metadata: ["jobs": "\(report.requeued.joined(separator: ","))"])
                runtime.state.withLock { $0.claimWanted = true }
            }
            if !report.poisoned.isEmpty {
                logger.error("jobs failed as poison: they crashed the worker while running alone", metadata: ["jobs": "\(report.poisoned.joined(separator: ","))"])
            }
        }
    }

    /// Called on a pool thread when a handler returned.
    fileprivate func finishRun(jobID: String, token: UInt64, result: Result<JobOutcome, JobError>, environmentFault: Bool = false) {
        state.withLock { state in
            guard let entry = state.inFlight[jobID], entry.token == token, !entry.handlerDone else { return }
            entry.handlerDone = true
            let elapsed = (ContinuousClock.now - entry.startedAt).components
            metrics.handlerFinished(entry.work.job.type, seconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
            state.runningHandlers[entry.work.job.type, default: 1] -= 1
            state.finishedRuns.append(FinishedRun(work: entry.work, token: token, result: result,
                                                  stopReason: entry.cancellation.stopReason, startedAt: entry.startedAt,
                                                  environmentFault: environmentFault, salvaged: entry.salvage.current))
        }
        state.signal()
    }

    // MARK: Heartbeat

    /// Extends in-flight leases every heartbeat interval (only while jobs are in flight: an
    /// idle worker touches no job row) and refreshes the worker's `processing_workers` row every
    /// ``WorkerConfiguration/registryInterval``, busy or idle.
    private func heartbeatLoop() {
        let database = PGConnectionRunner(configuration: configuration.database.with("application_name", "medianest-worker heartbeat"),
                                          label: "heartbeat", logger: logger)
        defer { database.close() }
        var nextBeat = ContinuousClock.now
        var nextRegistration = ContinuousClock.now
        var failing = false
        while true {
            if !state.wait(until: min(nextBeat, nextRegistration), unless: { $0.finished }) { return }
            do {
                if ContinuousClock.now >= nextRegistration {
                    _ = try database.runBlocking { connection in
                        try store.registerWorker(types: servedTypes, concurrency: configuration.concurrency, ttl: configuration.registryTTL, on: connection)
                    }
                    nextRegistration = .now + configuration.registryInterval * Double.random(in: 0.9...1.1)
                }
                if ContinuousClock.now >= nextBeat {
                    try beat(on: database)
                    nextBeat = .now + configuration.heartbeatInterval
                }
                if failing { logger.notice("heartbeat works again") }
                failing = false
            } catch {
                // Progress not written is written next time; the version check in beat(on:) is only
                // an optimisation, so a lost snapshot costs one stale progress_info.
                if !failing { logger.warning("heartbeat failed; retrying", metadata: ["error": "\(error)"]) }
                failing = true
                let retry = ContinuousClock.now + min(configuration.heartbeatInterval, .seconds(1))
                nextBeat = min(nextBeat, retry)
                nextRegistration = min(nextRegistration, retry)
            }
        }
    }

    /// One heartbeat statement for every in-flight job; nothing at all when none is in flight.
    private func beat(on database: PGConnectionRunner) throws {
        let entries = state.withLock { state in
            state.inFlight.values.map { run -> HeartbeatEntry in
                let current = run.progress.current
                let changed = current.version != run.sentProgressVersion
                run.sentProgressVersion = current.version
                return HeartbeatEntry(jobID: run.work.job.id, leaseID: run.work.job.leaseID,
                                      progress: changed ? current.snapshot?.json : nil)
            }
        }
        guard !entries.isEmpty else { return }
        let stops = try database.runBlocking { connection in
            try store.heartbeat(entries, on: connection)
        }
        guard !stops.isEmpty else { return }
        state.withLock { state in
            for (id, reason) in stops {
                guard let run = state.inFlight[id] else { continue }
                run.cancellation.stop(reason)
                let what = switch reason {
                case .cancelled: "job was cancelled; stopping it"
                case .mediaItemDeleted: "the job's media item was deleted; stopping it"
                default: "lost the lease on a job; stopping it"
                }
                logger.notice("\(what)",
                              metadata: ["job_id": "\(id)", "job_type": "\(run.work.job.type)", "media_id": "\(run.work.job.mediaItemID)",
                                         "attempt": "\(run.work.job.attempt)"])
            }
        }
    }

    // MARK: Listener

    private func listenLoop() {
        let database = PGConnectionRunner(configuration: configuration.database.with("application_name", "medianest-worker listener"),
                                          label: "listener", logger: logger)
        defer { database.close() }
        var listening = false
        var backoff: Duration = .milliseconds(100)
        let served = Set(servedTypes.map(\.rawValue))
        while !state.withLock({ $0.finished }) {
            do {
                let notifications = try database.runBlocking { connection -> [PGNotification] in
                    if !listening {
                        try connection.listen(JobStore.channel)
                        listening = true
                        // Anything enqueued while we were not listening is claimed now, not at the
                        // next poll; from now on the fallback poll may be slow.
                        self.state.withLock { $0.listenHealthy = true }
                        self.requestClaim()
                    }
                    return try connection.waitForNotifications(timeout: .seconds(1))
                }
                backoff = .milliseconds(100)
                let relevant = notifications.contains { note in
                    let types = note.payload.split(separator: ",").map(String.init)
                    return types.isEmpty || types.contains { served.contains($0) || JobType(rawValue: $0) == nil }
                }
                if relevant {
                    // A short random delay keeps workers woken by the same NOTIFY from all
                    // querying in the same millisecond; SKIP LOCKED keeps them apart anyway.
                    Thread.sleep(forTimeInterval: Double.random(in: 0...0.02))
                    requestClaim()
                }
            } catch {
                listening = false
                // Back to the fast poll until LISTEN works again.
                state.withLock { $0.listenHealthy = false }
                state.signal()
                logger.warning("listener connection failed; reconnecting", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(backoff.seconds * 1000))"])
                Thread.sleep(forTimeInterval: backoff.seconds)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    private func requestClaim() {
        state.withLock { $0.claimWanted = true }
        state.signal()
    }
}

extension JobType {
    /// `nil` for payload words that are not job types (`released`, `rescued`), which concern every worker.
    fileprivate init?(rawValue: String) {
        guard JobType.all.contains(JobType(rawValue)) else { return nil }
        self.init(rawValue)
    }
}

// MARK: - Shared state

/// One job this process has claimed and not yet written the result of.
private final class InFlightRun: @unchecked Sendable {
    // Mutable fields are only touched under RuntimeState's lock.
    let work: ClaimedWork
    let token: UInt64
    let cancellation: JobCancellation
    let progress: JobProgress
    /// What the handler salvaged for a failure (checksums of a file it could read but not use).
    let salvage: JobSalvage
    let startedAt = ContinuousClock.now
    var handlerDone = false
    var sentProgressVersion: UInt64 = 0

    init(work: ClaimedWork, token: UInt64, cancellation: JobCancellation, progress: JobProgress, salvage: JobSalvage) {
        self.salvage = salvage
        self.work = work
        self.token = token
        self.cancellation = cancellation
        self.progress = progress
    }
}

/// One of the scheduler's connections with its own reconnect backoff: while the database is
/// down, calls are skipped until ``retryAt`` instead of blocking the loop.
private final class DatabaseLane {
    let runner: PGConnectionRunner
    var retryAt: ContinuousClock.Instant = .now
    var backoff: Duration = .milliseconds(100)
    /// Set when a call failed in a way no retry can fix.
    var fatal: String?

    init(_ runner: PGConnectionRunner) { self.runner = runner }

    /// Runs `body` unless the database is known to be down; `nil` when skipped or failed.
    func call<T>(_ what: String, logger: Logger, _ body: (PGConnection) throws -> T) -> T? {
        guard ContinuousClock.now >= retryAt else { return nil }
        do {
            let value = try runner.runBlocking(body)
            backoff = .milliseconds(100)
            return value
        } catch let error as DatabaseError where error.isConnectionProblem {
            noteUnavailable(what, error: error, logger: logger)
            return nil
        } catch let error as DatabaseError where error.isSchemaProblem {
            // Retrying cannot bring back a table or a privilege: only connection-level errors
            // are worth retrying once the worker runs.
            fatal = "the database no longer matches this worker during \(what) (\(error)): run `medianest-worker migrate up`, and check the role's privileges."
            return nil
        } catch {
            logger.error("database call failed", metadata: ["during": "\(what)", "error": "\(error)"])
            retryAt = .now + .milliseconds(500)
            return nil
        }
    }

    /// Schedules the next try with exponential backoff (0.1 s doubling to 5 s).
    func noteUnavailable(_ what: String, error: DatabaseError, logger: Logger) {
        retryAt = .now + backoff
        logger.warning("database unavailable; will retry", metadata: ["during": "\(what)", "retry_in_ms": "\(Int(backoff.seconds * 1000))", "error": "\(error)"])
        backoff = min(backoff * 2, .seconds(5))
    }
}

/// A finished run waiting for its result to be written, with its retry state.
private struct PendingWrite {
    var run: FinishedRun
    /// Transient conflicts (class 40, `55P03`) this write has hit.
    var conflicts = 0
    var firstConflictAt: ContinuousClock.Instant?
    var lastError: DatabaseError?
    /// Not to be tried again before this.
    var notBefore: ContinuousClock.Instant = .now
    /// Split off a batch the database refused: written on its own from now on.
    var alone = false

    init(run: FinishedRun) { self.run = run }
}

private struct FinishedRun: Sendable {
    var work: ClaimedWork
    var token: UInt64
    var result: Result<JobOutcome, JobError>
    var stopReason: StopReason?
    var startedAt: ContinuousClock.Instant
    /// The run failed because the storage root was gone: release it, do not charge it.
    var environmentFault = false
    /// Item changes a failed run still records (checksums of a file it could read but not parse).
    var salvaged = MediaItemUpdate()
    var durationMilliseconds: Int { Int((ContinuousClock.now - startedAt).seconds * 1000) }
}

private struct LoopSnapshot {
    var finished: [FinishedRun]
    var wakeCount: UInt64
    var claimWanted: Bool
    var shutdownAt: ContinuousClock.Instant?
    var immediate: Bool
    var runningHandlers: [JobType: Int]
    var runAloneActive: Bool
}

/// The state shared by the runtime's threads, behind one lock with a condition to wake the
/// scheduler and the heartbeat.
private final class RuntimeState: @unchecked Sendable {
    struct Fields {
        var inFlight: [String: InFlightRun] = [:]
        var runningHandlers: [JobType: Int] = [:]
        var finishedRuns: [FinishedRun] = []
        var claimWanted = true
        /// The listener holds a working LISTEN connection, so the fallback poll may be slow.
        var listenHealthy = false
        /// Why the worker must stop for good (see ``WorkerExit/fatal(_:)``).
        var fatal: String?
        var shutdownRequestedAt: ContinuousClock.Instant?
        var immediate = false
        var finished = false
        var nextToken: UInt64 = 0
        /// Bumped by every ``RuntimeState/signal()``, so a wake-up that arrives while the
        /// scheduler is busy is not lost.
        var wakeCount: UInt64 = 0
    }
    private let condition = NSCondition()
    private var fields = Fields()

    func withLock<T>(_ body: (inout Fields) throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body(&fields)
    }

    func signal() {
        condition.lock()
        fields.wakeCount &+= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps until `deadline` or a signal after the one numbered `seenWakeCount`.
    func wait(until deadline: ContinuousClock.Instant, seenWakeCount: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        while fields.wakeCount == seenWakeCount && !fields.claimWanted {
            let remaining = deadline - .now
            if remaining <= .zero { return }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
    }

    /// Sleeps until `deadline` unless `stop` becomes true; returns `false` if it did.
    func wait(until deadline: ContinuousClock.Instant, unless stop: (Fields) -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stop(fields) {
            let remaining = deadline - .now
            if remaining <= .zero { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return false
    }
}

/// Keeps the signal sources alive for the life of the runtime.
private final class SignalSources: @unchecked Sendable {
    private let lock = NSLock()
    private var sources: [any DispatchSourceSignal] = []
    func keep(_ source: any DispatchSourceSignal) {
        lock.lock()
        sources.append(source)
        lock.unlock()
    }
}

extension DatabaseError {
    /// An object the worker needs is missing or forbidden (SQLSTATE class `42`: undefined table,
    /// column or function, insufficient privilege; `3F000` invalid schema name).
    fileprivate var isSchemaProblem: Bool {
        guard kind == .serverError, let state = sqlState else { return false }
        return state.hasPrefix("42") || state == "3F000"
    }
}
