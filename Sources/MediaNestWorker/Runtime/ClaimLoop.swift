import CoreMetrics
import Dispatch
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle
import Synchronization

/// What the claim loop uses, given once when the runtime starts its services.
struct ClaimLoopDependencies: Sendable {
    /// The LISTEN session when `listens`, the worker's one connection otherwise.
    var database: PGConnectionRunner
    /// Whether to LISTEN and sleep on `database`.
    var listens: Bool
    var state: RuntimeState
    var store: JobStore
    var types: [JobType]
    var configuration: WorkerConfiguration
    var metrics: WorkerMetrics
    var health: WorkerHealth
    var systemd: SystemdReporter
    var storageMonitor: StorageRootMonitor?
    var pool: JobPool
    var executor: JobExecutor
    /// The job types whose pending jobs of one media item are claimed together, as one unit
    /// (those of the registry's ``JointJobHandler``s this worker serves in full).
    var jointTypes: Set<JobType>
    var writer: ResultWriter
    /// What the jobs may hold at once, or `nil` for no memory budget.
    var memoryCapacity: Int64?
    var logger: Logger
    /// ``WorkerRuntime/requestShutdown(immediately:)``.
    var requestShutdown: @Sendable (_ immediately: Bool) -> Void
}

/// The claim loop service: checks the environment, then runs the ``ClaimDriver`` on a thread of
/// its own, over the worker's LISTEN session, where it also sleeps between claims (see
/// ``Listener``); with `--no-listen` over the worker's one connection, sleeping on
/// ``RuntimeState``'s condition.
///
/// Graceful shutdown (the first SIGTERM/SIGINT, through the ``ServiceGroup``) stops claiming
/// and lets in-flight jobs finish for the grace period; then they are stopped and released.
/// Cancellation, or a second signal, stops them at once. It returns when nothing is in flight,
/// and the group then stops the other services, the heartbeat last.
final class ClaimLoop: Service, Sendable {
    private let dependencies: ClaimLoopDependencies
    /// The start-up checks (``WorkerRuntime/checkEnvironment()``); `nil` to skip them.
    private let checkEnvironment: (@Sendable () async throws -> Bool)?
    /// What ``WorkerRuntime/run(additionalServices:)`` returns.
    private let exit = Mutex<WorkerExit?>(nil)

    init(_ dependencies: ClaimLoopDependencies, checkEnvironment: (@Sendable () async throws -> Bool)?) {
        self.dependencies = dependencies
        self.checkEnvironment = checkEnvironment
    }

    /// How the loop ended, once it has.
    var outcome: WorkerExit? { exit.withLock { $0 } }

    /// Checks the environment, then claims until shutdown (or, with `--drain`, until nothing is
    /// left).
    /// - Throws: ``WorkerStartupError`` when the environment cannot work.
    func run() async throws {
        let requestShutdown = dependencies.requestShutdown
        if let checkEnvironment {
            // A signal while the database is awaited ends the wait.
            let ready = try await withTaskCancellationHandler {
                try await withGracefulShutdownHandler {
                    try await checkEnvironment()
                } onGracefulShutdown: {
                    requestShutdown(false)
                }
            } onCancel: {
                requestShutdown(true)
            }
            guard ready else {
                exit.withLock { $0 = .shutdown }
                return
            }
        }
        markStarted()
        let result = await runOnOwnThread(named: "medianest-scheduler", stop: { requestShutdown(false) }, cancel: { requestShutdown(true) }) {
            [dependencies] in ClaimDriver(dependencies).loop()
        }
        exit.withLock { $0 = result }
    }

    /// The start-up checks passed: the other services may use the database.
    private func markStarted() {
        dependencies.state.withLock { $0.started = true }
        dependencies.health.update { $0.databaseReachable = true }
        dependencies.state.signal()
    }
}
