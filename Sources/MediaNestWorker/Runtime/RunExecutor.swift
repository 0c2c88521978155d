import Foundation

/// The executor a worker's run keeps its async code on: one OS thread of its own, for as long
/// as ``WorkerRuntime/serve(signals:additionalServices:)`` runs.
///
/// The runtime's work happens on threads it owns (the job pool, the scheduler, the writer, the
/// heartbeat). What is left on Swift's concurrency is glue: the service group starting and
/// stopping services, start-up checks awaiting a thread, the signal watcher. On the global
/// executor that glue waits whenever the pool's threads (on Linux one pool per priority, each as
/// wide as the machine has cores) are all busy with something else in the process. A test process is such a process: synchronous tests
/// that hash or transcode hold the pool's two threads for tens of seconds on a 2-core machine,
/// and a worker started meanwhile did not start its claim loop for 30 s (the CI failure of
/// 2026-12-04). An embedding program can do the same. With a thread of its own, the run starts,
/// serves and stops whatever else the process is doing; `ServiceGroup`'s child tasks, task
/// groups and resumed continuations inherit the preference (SE-0417).
///
/// The glue never blocks (libpq calls and waits are on the service threads), so one thread is
/// enough. Jobs enqueued after ``shutdown()`` (a continuation resumed late by a thread the run
/// no longer waits for) go to the global executor rather than nowhere.
// @unchecked Sendable: `jobs`, `head` and `stopped` are only read and written while `condition`
// is held (the thread sleeps on it, as ``JobPool``'s do).
final class RunExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var stopped = false

    /// Starts the executor's thread, named `name`.
    init(name: String) {
        startThread(named: name) { [self] in work() }
    }

    /// Runs `body` with a new executor as its task executor preference and stops the executor
    /// when `body` returns.
    static func run<T: Sendable>(named name: String, _ body: (RunExecutor) async throws -> T) async rethrows -> T {
        let executor = RunExecutor(name: name)
        defer { executor.shutdown() }
        return try await withTaskExecutorPreference(executor) { try await body(executor) }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        let accepted = !stopped
        if accepted {
            jobs.append(job)
            condition.signal()
        }
        condition.unlock()
        if !accepted { globalConcurrentExecutor.enqueue(job) }
    }

    /// Lets the thread return once the jobs already queued have run.
    func shutdown() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while let job = next() {
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// The next job in order, or `nil` once stopped with nothing queued.
    private func next() -> UnownedJob? {
        condition.lock()
        defer { condition.unlock() }
        while head == jobs.count {
            if stopped { return nil }
            condition.wait()
        }
        let job = jobs[head]
        head += 1
        if head == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            head = 0
        }
        return job
    }
}
