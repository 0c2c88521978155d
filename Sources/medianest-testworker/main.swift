// medianest-testworker: `medianest-worker run` with synthetic handlers, for the engine's tests
// and benchmarks. Usage: medianest-testworker run [the options of medianest-worker run]
import ArgumentParser
import Foundation
import Logging
import MediaNestCore
import MediaNestQueue
import MediaNestWorker

var arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.first == "run" else {
    FileHandle.standardError.write(Data("usage: medianest-testworker run [options of medianest-worker run]\n".utf8))
    exit(64)
}
arguments.removeFirst()

// The same ParsableArguments as `medianest-worker run`: a usage error exits 64 with its message.
let options: WorkerOptions
do {
    options = try WorkerOptions.parse(arguments)
} catch {
    WorkerOptions.exit(withError: error)
}
var configuration: WorkerConfiguration
do {
    configuration = try await WorkerConfigurationLoader.load(options: options, checkStorageRoot: true).configuration
    // Tests that hold a lock against every result write for a while (the writer's backlog bound)
    // must not see the writes given up meanwhile: how long that takes depends on the machine.
    if let seconds = ProcessInfo.processInfo.environment["MEDIANEST_TEST_RESULT_WRITE_RETRY_WINDOW"].flatMap(Double.init) {
        configuration.resultWriteRetryWindow = .milliseconds(Int64(seconds * 1000))
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
    exit(WorkerStartupError.configurationExitCode)
}
WorkerMain.bootstrapLogging(level: configuration.logLevel, format: configuration.logFormat)
let registry = HandlerRegistry(JobType.all.map { SyntheticHandler(jobType: $0) })
do {
    if case .fatal(let message) = try await WorkerMain.run(configuration: configuration, registry: registry) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        exit(WorkerStartupError.configurationExitCode)
    }
} catch let error as WorkerStartupError {
    FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
    exit(error.exitCode)
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(64)
}
