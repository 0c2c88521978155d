import ArgumentParser
import Foundation
import Logging
import MediaNestWorker

/// `medianest-worker run`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Claim and run media-processing jobs until SIGTERM or SIGINT.",
        discussion: """
            Claims jobs from processing_jobs with FOR UPDATE SKIP LOCKED, wakes on NOTIFY medianest_jobs (with a fallback poll), keeps leases alive with one heartbeat statement per interval, and rescues the jobs of workers that stopped heartbeating. SIGTERM/SIGINT: stop claiming, let running jobs finish for --grace-period, then put the rest back to pending; a second signal stops at once. See docs/QUEUE.md.

            Every option can also be set in the configuration file (--config, default /etc/medianest/worker.yaml) or the environment; flags win over the environment, which wins over the file. `medianest-worker config show` prints the result. A bad value stops the worker with exit status 78.
            """
    )

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        do {
            let configuration = try await WorkerConfigurationLoader.load(options: options, checkStorageRoot: true).configuration
            WorkerMain.bootstrapLogging(level: configuration.logLevel, format: configuration.logFormat)
            // systemd Type=notify (READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT) is sent by the runtime.
            if case .fatal(let message) = try await WorkerMain.run(configuration: configuration, registry: .production(for: configuration)) {
                throw WorkerStartupError(message)
            }
        } catch let error as WorkerConfigurationError {
            // A bad flag, variable or file key: EX_CONFIG too, so that systemd does not restart-loop.
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            throw ExitCode(WorkerStartupError.configurationExitCode)
        } catch let error as WorkerStartupError {
            // One line, and EX_CONFIG so that systemd (RestartPreventExitStatus=78) and
            // operators can tell it from a crash.
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}
