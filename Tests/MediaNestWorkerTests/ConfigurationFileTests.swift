import ArgumentParser
import Foundation
import Logging
import MediaNestDB
import MediaNestMetrics
import MediaNestQueue
import MediaNestSystemd
import MediaNestTestSupport
import MediaNestWorker
import Testing

/// The configuration file, the environment and the flags: precedence, unknown keys, bad values,
/// secrets, and the documented example. No database needed.
@Suite("configuration file")
struct ConfigurationFileTests {
    /// A scratch directory with `files` written into it.
    private func directory(_ files: [String: String] = [:]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-config-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, content) in files {
            try Data(content.utf8).write(to: URL(fileURLWithPath: path + "/" + name))
        }
        return path
    }

    private func load(_ arguments: [String], environment: [String: String] = [:], checkStorageRoot: Bool = false) async throws -> WorkerConfigurationLoader.Loaded {
        try await WorkerConfigurationLoader.load(options: WorkerOptions.parse(arguments), environment: environment, checkStorageRoot: checkStorageRoot)
    }

    /// The loader's error message, or `nil` when it loaded.
    private func failure(_ arguments: [String], environment: [String: String] = [:], checkStorageRoot: Bool = false) async throws -> String? {
        do {
            _ = try await load(arguments, environment: environment, checkStorageRoot: checkStorageRoot)
            return nil
        } catch let error as WorkerConfigurationError {
            return error.message
        }
    }

    private func source(_ loaded: WorkerConfigurationLoader.Loaded, _ key: String) -> String? {
        loaded.entries.first { $0.key == key }?.source
    }

    @Test func flagsBeatTheEnvironmentWhichBeatsTheFileWhichBeatsTheDefaults() async throws {
        let dir = try directory(["worker.yaml": """
            database:
              url: "host=/from/file dbname=file"
            storage:
              root: /srv/file
            queue:
              lease: 20
              heartbeat: 4
            worker:
              type_limits:
                transcode: 2
                thumbnail: 3
            """])
        let file = dir + "/worker.yaml"
        let environment = ["MEDIANEST_LEASE": "25", "DATABASE_URL": "host=/from/env dbname=env", "MEDIANEST_TYPE_LIMITS": "thumbnail=5"]

        let all = try await load(["--config", file, "--lease", "30"], environment: environment)
        #expect(all.configuration.lease == .seconds(30))
        #expect(source(all, "queue.lease") == "command line")
        #expect(all.configuration.database.connectionString == "host=/from/env dbname=env")
        #expect(source(all, "database.url") == "environment")
        #expect(all.configuration.heartbeatInterval == .seconds(4))
        #expect(source(all, "queue.heartbeat") == "file \(file)")
        #expect(all.configuration.storage?.root == "/srv/file")
        // Per type: each type's value comes from the highest source that names that type.
        #expect(all.configuration.perTypeLimits[.thumbnail] == 5)
        #expect(all.configuration.perTypeLimits[.transcode] == 2)
        #expect(all.configuration.perTypeLimits[.metadata] == WorkerConfiguration.defaultPerTypeLimits()[.metadata])
        #expect(all.configuration.rescueInterval == .seconds(15), "rescue follows the effective lease")

        let noFlag = try await load(["--config", file], environment: environment)
        #expect(noFlag.configuration.lease == .seconds(25))
        let fileOnly = try await load(["--config", file])
        #expect(fileOnly.configuration.lease == .seconds(20))
        #expect(fileOnly.configuration.database.connectionString == "host=/from/file dbname=file")
        let nothing = try await load([])
        #expect(nothing.configuration.lease == .seconds(30))
        #expect(source(nothing, "queue.lease") == "default")
        #expect(nothing.configuration.configurationFile == nil)

        let viaEnvironment = try await load([], environment: ["MEDIANEST_CONFIG": file])
        #expect(viaEnvironment.configuration.configurationFile == file)
        #expect(viaEnvironment.configuration.lease == .seconds(20))
    }

    @Test func anUnknownKeyStopsTheWorkerNamingTheKeyAndTheFile() async throws {
        let cases: [(yaml: String, says: String)] = [
            ("queue:\n  leese: 5\n", "unknown key queue.leese in "),
            ("quue:\n  lease: 5\n", "unknown key quue.lease in "),
            ("worker:\n  type_limits:\n    thumbnial: 2\n", "worker.type_limits.thumbnial in "),
            ("transcode:\n  crff: 23\n", "unknown key transcode.crff in "),
            ("database:\n  password: hunter2-secret\n", "the password is never read from the configuration file"),
            ("metrics: 9464\n", "metrics in "),
        ]
        for (yaml, says) in cases {
            let dir = try directory(["worker.yaml": yaml])
            let message = try #require(try await failure(["--config", dir + "/worker.yaml"]), "\(yaml)")
            #expect(message.contains(says), "\(message)")
            #expect(message.contains(dir + "/worker.yaml"), "names the file: \(message)")
            #expect(!message.contains("\n"), "one line: \(message)")
            #expect(!message.contains("hunter2"), "never prints a password: \(message)")
        }
        let typo = try #require(try await failure(["--config", try directory(["w.yaml": "queue:\n  leese: 5\n"]) + "/w.yaml"]))
        #expect(typo.contains("queue.lease"), "lists the section's keys: \(typo)")
    }

    @Test func aBadValueNamesTheKeyAndWhereItWasSet() async throws {
        let dir = try directory(["worker.yaml": "queue:\n  lease: soon\n", "list.yaml": "queue:\n  lease: [1, 2]\n",
                                 "format.yaml": "thumbnail:\n  format: gif\n", "metrics.yaml": "metrics:\n  listen: localhost\n"])
        let file = try #require(try await failure(["--config", dir + "/worker.yaml"]))
        #expect(file.contains("queue.lease in \(dir)/worker.yaml must be a number of seconds"), "\(file)")
        let list = try #require(try await failure(["--config", dir + "/list.yaml"]))
        #expect(list.contains("queue.lease in \(dir)/list.yaml"), "\(list)")
        let format = try #require(try await failure(["--config", dir + "/format.yaml"]))
        #expect(format.contains("thumbnail.format in \(dir)/format.yaml must be webp, jpeg or png"), "\(format)")
        let metrics = try #require(try await failure(["--config", dir + "/metrics.yaml"]))
        #expect(metrics.contains("metrics.listen in \(dir)/metrics.yaml"), "\(metrics)")
        let environment = try #require(try await failure([], environment: ["MEDIANEST_HEARTBEAT": "often"]))
        #expect(environment.contains("MEDIANEST_HEARTBEAT must be a number of seconds"), "\(environment)")
        let pairs = try #require(try await failure(["--type-limits", "metadata:4"]))
        #expect(pairs.contains("--type-limits takes type=value pairs"), "\(pairs)")
        let missing = try #require(try await failure(["--config", dir + "/absent.yaml"]))
        #expect(missing.contains("\(dir)/absent.yaml cannot be read: it does not exist"), "\(missing)")
        let broken = try directory(["bad.yaml": "queue: [unclosed\n"])
        let yaml = try #require(try await failure(["--config", broken + "/bad.yaml"]))
        #expect(yaml.contains("is not valid YAML"), "\(yaml)")
        #expect(!yaml.contains("\n"), "one line: \(yaml)")
    }

    @Test func anUnusableStorageRootFromTheFileIsRefusedNamingTheKey() async throws {
        let dir = try directory(["worker.yaml": "storage:\n  root: /nonexistent/medianest-\(UUID().uuidString.prefix(6))\n"])
        let message = try #require(try await failure(["--config", dir + "/worker.yaml"], checkStorageRoot: true))
        #expect(message.hasPrefix("storage.root in \(dir)/worker.yaml: "), "\(message)")
        #expect(message.contains("No such file or directory"), "\(message)")
        let relative = try #require(try await failure(["--storage-root", "media"], checkStorageRoot: true))
        #expect(relative.hasPrefix("--storage-root: "), "\(relative)")
        #expect(try await load(["--storage-root", dir], checkStorageRoot: true).configuration.storage?.root == dir)
    }

    @Test func thePasswordComesFromTheEnvironmentACredentialOrAFileAndIsNeverShown() async throws {
        let dir = try directory(["password": "from-file-S3cret\n", "worker.yaml": "database:\n  url: \"host=/tmp dbname=x\"\n  password_file: PLACEHOLDER\n"])
        let credentials = try directory(["database-password": "from-credential-S3cret"])
        let yaml = try String(contentsOfFile: dir + "/worker.yaml", encoding: .utf8).replacingOccurrences(of: "PLACEHOLDER", with: dir + "/password")
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: dir + "/worker.yaml"))
        let file = dir + "/worker.yaml"

        let fromFile = try await load(["--config", file])
        #expect(fromFile.configuration.database.overrides["password"] == "from-file-S3cret", "first line, without its line end")
        let fromCredential = try await load(["--config", file], environment: ["CREDENTIALS_DIRECTORY": credentials])
        #expect(fromCredential.configuration.database.overrides["password"] == "from-credential-S3cret")
        #expect(source(fromCredential, "database.password") == "systemd credential")
        let fromEnvironment = try await load(["--config", file], environment: ["CREDENTIALS_DIRECTORY": credentials, "MEDIANEST_DATABASE_PASSWORD": "from-env-S3cret"])
        #expect(fromEnvironment.configuration.database.overrides["password"] == "from-env-S3cret")

        for loaded in [fromFile, fromCredential, fromEnvironment] {
            let shown = loaded.entries.map { "\($0.key)=\($0.value ?? "") \($0.source)" }.joined(separator: "\n")
            #expect(!shown.contains("S3cret"), "\(shown)")
            #expect(shown.contains("database.password=********"), "\(shown)")
            #expect(!loaded.configuration.database.description.contains("S3cret"))
        }
        let unreadable = try #require(try await failure([], environment: ["MEDIANEST_DATABASE_PASSWORD_FILE": dir + "/nope"]))
        #expect(unreadable.contains("MEDIANEST_DATABASE_PASSWORD_FILE: cannot read the password file"), "\(unreadable)")
    }

    @Test func metricsFollowTheInstanceUnlessConfigured() async throws {
        #expect(try await load(["--instance", "3"]).configuration.metricsAddress == MetricsListenAddress(host: "127.0.0.1", port: 9467))
        #expect(try await load(["--instance", "blue"]).configuration.metricsAddress?.port == 9464)
        #expect(try await load(["--instance", "3", "--metrics-address", "127.0.0.1:9999"]).configuration.metricsAddress?.port == 9999)
        #expect(try await load([], environment: ["MEDIANEST_METRICS_LISTEN": "off"]).configuration.metricsAddress == nil)
        let dir = try directory(["w.yaml": "metrics:\n  listen: \"[::1]:9500\"\nlog:\n  format: json\n  level: debug\n"])
        let loaded = try await load(["--config", dir + "/w.yaml"])
        #expect(loaded.configuration.metricsAddress == MetricsListenAddress(host: "::1", port: 9500))
        #expect(loaded.configuration.logFormat == .json)
        #expect(loaded.configuration.logLevel == .debug)
    }

    @Test func listsCommentOnlySectionsAndEmptyFilesAreAccepted() async throws {
        let dir = try directory([
            "list.yaml": "worker:\n  types: [metadata, thumbnail]\n",
            "empty.yaml": "# nothing here yet\n\n",
            "sections.yaml": "metrics:\n  #listen: off\nworker:\n  type_limits:\n    #metadata: 3\nstorage:\n  derived_root: ~\n",
        ])
        #expect(try await load(["--config", dir + "/list.yaml"]).configuration.types == [.metadata, .thumbnail])
        #expect(try await load(["--config", dir + "/empty.yaml"]).configuration.lease == .seconds(30))
        let sections = try await load(["--config", dir + "/sections.yaml"])
        #expect(sections.configuration.metricsAddress?.port == 9464)
        #expect(sections.configuration.perTypeLimits == WorkerConfiguration.defaultPerTypeLimits())
    }

    @Test func theDocumentedExampleLoadsAndMentionsEverySetting() async throws {
        let example = repositoryRoot.appendingPathComponent("config/medianest-worker.yaml").path
        let loaded = try await load(["--config", example])
        #expect(loaded.configuration.storage?.root == "/srv/medianest/storage")
        #expect(loaded.entries.filter { $0.source == "file \(example)" }.count >= 20, "the example sets most keys")
        let text = try String(contentsOfFile: example, encoding: .utf8)
        for setting in WorkerConfigurationLoader.settings where setting.key != "database.password" {
            let leaf = setting.key.split(separator: ".").last!
            #expect(text.contains("\(leaf):"), "the example documents \(setting.key)")
        }

        // The README's reference table has a row for every setting, with its flag and variables.
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for setting in WorkerConfigurationLoader.settings {
            let key = setting.perJobType ? "`\(setting.key).<type>`" : "`\(setting.key)`"
            let row = readme.split(separator: "\n").first { $0.hasPrefix("| \(key) |") }
            #expect(row != nil, "README lacks a row for \(setting.key)")
            for name in [setting.flag].compactMap({ $0 }) + setting.environment {
                #expect(row?.contains("`\(name)`") == true, "README's row for \(setting.key) lacks \(name)")
            }
        }
    }

    @Test func maintenanceIntervalIsSecondsOrOffAndOffByDefault() async throws {
        #expect(try await load([]).configuration.maintenanceInterval == nil)
        #expect(try await load(["--maintenance-interval", "86400"]).configuration.maintenanceInterval == .seconds(86400))
        #expect(try await load([], environment: ["MEDIANEST_MAINTENANCE_INTERVAL": "off"]).configuration.maintenanceInterval == nil)
        // YAML reads an unquoted `off` as a boolean: it still means off.
        let dir = try directory(["on.yaml": "maintenance:\n  interval: 3600\n", "off.yaml": "maintenance:\n  interval: off\n"])
        let fromFile = try await load(["--config", dir + "/on.yaml"])
        #expect(fromFile.configuration.maintenanceInterval == .seconds(3600))
        #expect(source(fromFile, "maintenance.interval") == "file \(dir)/on.yaml")
        #expect(try await load(["--config", dir + "/on.yaml", "--maintenance-interval", "off"]).configuration.maintenanceInterval == nil)
        #expect(try await load(["--config", dir + "/off.yaml"]).configuration.maintenanceInterval == nil)
        #expect(try await failure(["--maintenance-interval", "daily"])?.contains("--maintenance-interval must be a number of seconds") == true)
        #expect(try await failure(["--maintenance-interval", "0"])?.contains("at least 1 second") == true)
    }

    @Test func flagsWithoutValuesApply() async throws {
        let flags = try await load(["--drain", "--no-listen"]).configuration
        #expect(flags.drain)
        #expect(!flags.listen)
        let none = try await load([]).configuration
        #expect(!none.drain)
        #expect(none.listen)
        #expect(try await load([], environment: ["MEDIANEST_LISTEN": "false"]).configuration.listen == false)
    }

    @Test func everySettingWithAFlagIsAnOptionOfTheSharedParser() throws {
        let samples = ["--no-listen": nil, "--types": "metadata", "--metrics-address": "off", "--log-level": "info", "--log-format": "text",
                       "--thumbnail-format": "png", "--preview-format": "png", "--type-limits": "metadata=1", "--type-timeouts": "preview=1",
                       "--transcode-keep-location": nil, "--transcode-mode": "always", "--transcode-codec": "h264", "--transcode-preset": "fast"]
        for setting in WorkerConfigurationLoader.settings {
            guard let flag = setting.flag else { continue }
            let value = samples[flag] ?? "7"
            #expect(throws: Never.self, "\(flag)") { _ = try WorkerOptions.parse([flag] + (value.map { [$0] } ?? [])) }
        }
        #expect(throws: (any Error).self) { _ = try WorkerOptions.parse(["--no-such-option", "1"]) }
    }
}

/// `medianest-worker config check|show` as an operator runs them.
@Suite("config command", .enabled(if: executablesAvailable, "needs the built executables"))
struct ConfigCommandTests {
    @Test func checkExitsSeventyEightWithOneLineAndShowMasksThePassword() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-cfgcmd-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir + "/storage", withIntermediateDirectories: true)
        try Data("storage:\n  root: \(dir)/storage\nqueue:\n  lease: 40\n".utf8).write(to: URL(fileURLWithPath: dir + "/good.yaml"))
        try Data("queue:\n  lease: 40\n  hartbeat: 5\n".utf8).write(to: URL(fileURLWithPath: dir + "/typo.yaml"))
        var environment = ProcessInfo.processInfo.environment
        environment["MEDIANEST_DATABASE_PASSWORD"] = "Sw0rdfish-Secret"
        environment["DATABASE_URL"] = "postgresql://medianest:Url-Secret@db.internal/medianest"

        let good = try runCLI(["config", "check", "--config", dir + "/good.yaml"], environment: environment)
        #expect(good.status == 0, "\(good.error)")
        #expect(good.output.contains("configuration OK"))

        let typo = try runCLI(["config", "check", "--config", dir + "/typo.yaml"], environment: environment)
        #expect(typo.status == 78)
        #expect(typo.error.split(separator: "\n").count == 1, "\(typo.error)")
        #expect(typo.error.contains("unknown key queue.hartbeat in \(dir)/typo.yaml"), "\(typo.error)")

        let show = try runCLI(["config", "show", "--config", dir + "/good.yaml", "--heartbeat", "6"], environment: environment)
        #expect(show.status == 0, "\(show.error)")
        #expect(show.output.contains("queue.lease"))
        #expect(show.output.split(separator: "\n").contains { $0.contains("queue.lease") && $0.contains("= 40") && $0.contains("file \(dir)/good.yaml") })
        #expect(show.output.split(separator: "\n").contains { $0.contains("queue.heartbeat") && $0.contains("= 6") && $0.contains("command line") })
        #expect(show.output.split(separator: "\n").contains { $0.contains("database.password") && $0.contains("********") && $0.contains("environment") })
        #expect(!show.output.contains("Sw0rdfish"), "\(show.output)")
        #expect(!show.output.contains("Url-Secret"), "\(show.output)")

        let run = try runCLI(["run", "--config", dir + "/typo.yaml"], environment: environment)
        #expect(run.status == 78, "run refuses the same file: \(run.error)")
        #expect(run.error.contains("queue.hartbeat"))
    }
}
