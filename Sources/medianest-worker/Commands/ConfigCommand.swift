import ArgumentParser
import Foundation
import MediaNestWorker

/// `medianest-worker config check|show`: the configuration `run` would use.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Validate or print the configuration run would use.",
        discussion: "Sources, highest first: flags, the environment (MEDIANEST_*, DATABASE_URL), systemd credentials, the configuration file (--config, $MEDIANEST_CONFIG, else /etc/medianest/worker.yaml if it exists), the defaults.",
        subcommands: [ConfigCheckCommand.self, ConfigShowCommand.self]
    )
}

/// Loads the configuration the way `run` does; one line and exit 78 when it cannot work.
private func loadOrExit(_ options: WorkerOptions, checkStorageRoot: Bool) async throws -> WorkerConfigurationLoader.Loaded {
    do {
        return try await WorkerConfigurationLoader.load(options: options, checkStorageRoot: checkStorageRoot)
    } catch {
        FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
        throw ExitCode(WorkerStartupError.configurationExitCode)
    }
}

struct ConfigCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration: unknown keys, bad values, the storage root. Exit 0 when run would start, 78 otherwise.")

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        let loaded = try await loadOrExit(options, checkStorageRoot: true)
        guard loaded.configuration.storage != nil else {
            FileHandle.standardError.write(Data("Error: the storage root is not set; run needs it (storage.root, --storage-root or MEDIANEST_STORAGE_ROOT).\n".utf8))
            throw ExitCode(WorkerStartupError.configurationExitCode)
        }
        let file = loaded.configuration.configurationFile.map { "file \($0)" } ?? "no configuration file"
        print("configuration OK (\(file))")
    }
}

struct ConfigShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the effective configuration, with where each value came from. Passwords are masked.")

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        // Shown even when the storage root is not mounted here (config check says so).
        let loaded = try await loadOrExit(options, checkStorageRoot: false)
        print("# configuration file: \(loaded.configuration.configurationFile ?? "none")")
        let width = loaded.entries.map(\.key.count).max() ?? 0
        for entry in loaded.entries {
            let key = entry.key.padding(toLength: width, withPad: " ", startingAt: 0)
            print("\(key) = \(entry.value ?? "(unset: \(entry.defaultText))")  # \(entry.source)")
        }
    }
}
