import Foundation
import MediaNestDB
import MediaNestQueue
import MediaNestTestSupport
@testable import MediaNestWorker
import Synchronization
import Testing

/// Holds every thread of Swift's global executor until ``release()``: blocking tasks at each
/// priority (libdispatch keeps a pool per priority, each as wide as the machine has cores), as
/// synchronous tests that hash or transcode do by accident. The caller, itself on a pool thread,
/// must not await until it releases: it would not be resumed.
final class GlobalPoolHog: Sendable {
    private let gate = DispatchSemaphore(value: 0)
    private let started = Atomic<Int>(0)
    private let probeRan = Atomic<Bool>(false)
    private static let priorities: [TaskPriority] = [.high, .medium, .low, .background]

    /// Starts the blocking tasks and waits, up to 10 s, until they hold the pools' threads (all
    /// but the caller's own), then queues a probe task behind them.
    init() {
        let perPriority = 2 * ProcessInfo.processInfo.activeProcessorCount + 2
        for priority in Self.priorities {
            for _ in 0..<perPriority {
                Task.detached(priority: priority) { [self] in
                    started.add(1, ordering: .relaxed)
                    gate.wait()
                    gate.signal()
                }
            }
        }
        let holding = Self.priorities.count * ProcessInfo.processInfo.activeProcessorCount - 1
        let deadline = ContinuousClock.now + .seconds(10)
        while started.load(ordering: .relaxed) < holding && ContinuousClock.now < deadline { usleep(1_000) }
        for priority in Self.priorities {
            Task.detached(priority: priority) { [self] in probeRan.store(true, ordering: .relaxed) }
        }
    }

    /// Whether a task on the global executor ran since the hog took it: if one did, the pool was
    /// not held and the test proves nothing.
    var globalTaskRan: Bool { probeRan.load(ordering: .relaxed) }

    func release() { gate.signal() }
}

/// The thread the caller runs on, by its kernel name (`/proc/thread-self/comm`, at most 15 bytes).
func currentThreadName() -> String {
    ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Starts `runtime.run()` in a task that begins on a thread of its own.
///
/// The run keeps to its own executor once it has started, but a plain `Task { }` first has to
/// get a thread of the global pool to start at all, and in `make test` synchronous tests hold
/// that pool for tens of seconds (a fresh-clone run: no line of the worker within 30 s). The
/// test that waits for the worker would then look once, past its deadline, just as the worker
/// begins.
func startRun(_ runtime: WorkerRuntime) -> Task<WorkerExit, Never> {
    let executor = RunExecutor(name: "mn-test-start")
    return Task(executorPreference: executor) {
        defer { executor.shutdown() }
        return await runtime.run()
    }
}

/// Polls `condition` every 10 ms without suspending (the global pool is held).
private func spinUntil(timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

@Suite("run executor")
struct RunExecutorTests {
    /// Everything a run awaits comes back to the run's thread: after a sleep, after a
    /// continuation resumed by another thread, in a task group's children and in a task made
    /// with the executor as its preference.
    @Test func aRunsAsyncCodeStaysOnTheRunsThread() async {
        let names = await RunExecutor.run(named: "mn-test-run") { executor -> [String] in
            var names = [currentThreadName()]
            try? await Task.sleep(for: .milliseconds(5))
            names.append(currentThreadName())
            let resumed = await withCheckedContinuation { continuation in
                startThread(named: "mn-test-resumer") { continuation.resume(returning: currentThreadName()) }
            }
            #expect(resumed == "mn-test-resumer", "the continuation is resumed from a thread of its own")
            names.append(currentThreadName())
            names += await withTaskGroup(of: String.self) { group in
                for _ in 0..<3 { group.addTask { currentThreadName() } }
                return await group.reduce(into: []) { $0.append($1) }
            }
            names.append(await Task(executorPreference: executor) { currentThreadName() }.value)
            return names
        }
        #expect(names.count == 7)
        #expect(names.allSatisfy { $0 == "mn-test-run" }, "\(names)")
        #expect(currentThreadName() != "mn-test-run")
    }

    /// A task that prefers a stopped executor still runs, on the global executor.
    @Test func workEnqueuedAfterShutdownStillRuns() async {
        let executor = RunExecutor(name: "mn-test-stopped")
        executor.shutdown()
        let name = await Task(executorPreference: executor) { currentThreadName() }.value
        #expect(name != "mn-test-stopped")
    }

    /// The worker's run, started while the process was quiet, claims, finishes and writes a job
    /// and then shuts down completely (its service group returns and its pool stops) while every
    /// thread of the global executor is held by something else.
    @Test(.enabled(if: TestDatabase.isAvailable, "needs the cluster that scripts/test.sh starts"), .timeLimit(.minutes(2)))
    func aWorkerServesAndStopsWhileTheGlobalPoolIsHeld() async throws {
        try await withMigratedDatabase("runexec") { database, connection, owner in
            var configuration = WorkerConfiguration(database: database.configuration)
            configuration.types = [.metadata]
            configuration.concurrency = 2
            configuration.pollInterval = .milliseconds(200)
            let log = CapturedLog()
            let runtime = try WorkerRuntime(configuration: configuration, registry: HandlerRegistry([GatedHandler(gates: [:])]),
                                            logger: log.logger())
            let run = startRun(runtime)
            #expect(try await waitUntil(timeout: .seconds(30)) { !log.matching("worker starting").isEmpty }, "log:\n\(log.text)")

            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, on: connection)
            let hog = GlobalPoolHog()
            // Enqueued once the hog holds the pool: the worker's listener and claim loop see it.
            _ = try QueueAdmin.enqueue(mediaItemID: item, types: [.metadata], priority: 0, on: connection)
            let completed = try spinUntil(timeout: .seconds(30)) {
                try connection.query("SELECT status::text AS s FROM processing_jobs WHERE media_item_id = $1::uuid", [item]).first?
                    .decode("s", as: String.self) == "completed"
            }
            runtime.requestShutdown()
            let stopped = spinUntil(timeout: .seconds(30)) { runtime.pool.currentState == .stopped }
            let globalTaskRan = hog.globalTaskRan
            hog.release()
            #expect(!globalTaskRan, "the hog did not hold the global executor; this test proves nothing")
            #expect(completed, "the job was not finished while the global pool was held:\n\(log.text)")
            #expect(stopped, "the run's service group did not return while the global pool was held:\n\(log.text)")
            #expect(await run.value == .shutdown)
        }
    }
}
