import Configuration
import Foundation
import MediaNestDB
import MediaNestQueue
import Synchronization

/// Builds a ``WorkerConfiguration`` from, highest first: the command line, the environment
/// (`MEDIANEST_*`, `DATABASE_URL`; libpq reads its own `PG*`), systemd credentials (the
/// password), the configuration file, and the defaults.
///
/// swift-configuration does the layering: each source is a provider of a `ConfigReader`
/// (in-memory providers for the parsed flags, the environment and the credential, a YAML
/// `FileProvider` for the file), and an access reporter records which provider answered each
/// key, which `config show` prints. What it does not do, done here:
///
/// - **Unknown keys.** A reader only answers the keys it is asked for; a provider cannot list
///   its keys (`YAMLSnapshot` keeps them internal). The file provider's dynamic secrets
///   specifier is called once for every leaf key while the file is parsed, so it records them,
///   and any key no ``WorkerSettings/all`` row declares stops the worker.
/// - **Legacy variable names and per-type values.** `EnvironmentVariablesProvider` derives
///   variable names from keys (`storage.derived_root` → `STORAGE_DERIVED_ROOT`), so it cannot
///   keep `DATABASE_URL` or `MEDIANEST_DERIVED_ROOT`, and `MEDIANEST_TYPE_LIMITS=metadata=8`
///   must be split into per-type keys; an in-memory provider built from the table does both.
public enum WorkerConfigurationLoader {
    /// Where the packaged units expect the file; read when it exists and no other is named.
    public static let defaultFile = "/etc/medianest/worker.yaml"
    /// The systemd credential holding the database password (`LoadCredential=database-password:…`).
    public static let passwordCredential = "database-password"

    /// One effective setting for `config show`.
    public struct Entry: Sendable, Hashable {
        /// The file key.
        public var key: String
        /// The effective value, masked for secrets; `nil` when unset.
        public var value: String?
        /// Where it came from: `command line`, `environment`, `systemd credential`, the file's
        /// path, or `default`.
        public var source: String
        /// The documented default.
        public var defaultText: String
    }

    /// One documented setting: its file key, flag, environment variables and default.
    public struct SettingReference: Sendable, Hashable {
        /// The file key; per-type settings take `key.<type>`.
        public var key: String
        /// The command-line flag, if any.
        public var flag: String?
        /// The environment variables read, first found wins.
        public var environment: [String]
        /// Whether the file takes one value per job type under the key.
        public var perJobType: Bool
        /// The documented default.
        public var defaultText: String
    }

    /// Every setting `run` takes, in the example file's order (the README table follows it).
    public static var settings: [SettingReference] {
        WorkerSettings.all.map { SettingReference(key: $0.key, flag: $0.flag, environment: $0.environment, perJobType: $0.perJobType, defaultText: $0.defaultText) }
    }

    /// The result of loading.
    public struct Loaded: Sendable {
        /// The configuration.
        public var configuration: WorkerConfiguration
        /// Every setting with its value and source, in the example file's order.
        public var entries: [Entry]
    }

    /// Loads and validates the configuration.
    /// - Parameters:
    ///   - options: The parsed command line.
    ///   - environment: The process environment.
    ///   - checkStorageRoot: Also refuse a storage root that is not an existing directory
    ///     (`run` and `config check`; not unit tests of option parsing).
    /// - Returns: The configuration and its provenance.
    /// - Throws: ``WorkerConfigurationError`` with one line naming the key and where it was set.
    public static func load(options: WorkerOptions, environment: [String: String] = ProcessInfo.processInfo.environment,
                            checkStorageRoot: Bool = false) async throws(WorkerConfigurationError) -> Loaded {
        // The file: named, else the default if present.
        let named = options.configFile ?? environment["MEDIANEST_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let filePath = named ?? (FileManager.default.fileExists(atPath: defaultFile) ? defaultFile : nil)
        let keys = KeyRecorder()
        var providers: [any ConfigProvider] = []
        var names = ProviderNames()

        providers.append(InMemoryProvider(name: names.commandLine, values: try values(from: options)))
        providers.append(InMemoryProvider(name: names.environment, values: try values(from: environment)))
        if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            let path = (credentials as NSString).appendingPathComponent(passwordCredential)
            if FileManager.default.fileExists(atPath: path) {
                let password = try readSecret(path, name: "the systemd credential \(passwordCredential)")
                providers.append(InMemoryProvider(name: names.credential, values: ["database.password": ConfigValue(.string(password), isSecret: true)]))
            }
        }
        if let filePath {
            names.file = filePath
            if let file = try await fileProvider(filePath, keys: keys) {
                providers.append(file)
                try checkKeys(keys.all, file: filePath, provider: file)
            }
        }

        let sources = SourceRecorder()
        let reader = ConfigReader(providers: providers, accessReporter: sources)
        var configuration = WorkerConfiguration()
        configuration.configurationFile = filePath
        var entries: [(key: String, setting: WorkerSetting, type: JobType?, source: String?)] = []
        for setting in WorkerSettings.all {
            for (index, key) in setting.concreteKeys.enumerated() {
                let type = setting.perJobType ? JobType.all[index] : nil
                var text = reader.string(forKey: ConfigKey(key), isSecret: setting.secret)
                if text == nil, let list = reader.stringArray(forKey: ConfigKey(key), isSecret: setting.secret) {
                    text = list.joined(separator: ",")  // `types: [metadata, thumbnail]` in YAML
                }
                let source = sources.source(of: key).map(names.normalized)
                if source == nil, let failure = sources.failure(of: key).map(names.normalized) {
                    throw WorkerConfigurationError("\(name(of: key, setting: setting, source: failure, names: names)) has a value of the wrong shape (a list or a mapping where one value belongs).")
                }
                if var text, let source {
                    if source == names.file, ["", "~", "null"].contains(text) { entries.append((key, setting, type, nil)); continue }
                    text = text.trimmingCharacters(in: .whitespaces)
                    let value = SettingValue(text: text, name: name(of: key, setting: setting, source: source, names: names), jobType: type)
                    do {
                        try setting.apply(&configuration, value)
                    } catch let error as WorkerConfigurationError {
                        throw error
                    } catch {
                        throw WorkerConfigurationError("\(value.name): \(error)")
                    }
                    entries.append((key, setting, type, source))
                } else {
                    entries.append((key, setting, type, nil))
                }
            }
        }
        // A run mode rather than a setting: the flag only.
        configuration.drain = options.drain
        try finish(&configuration, entries: entries.map { ($0.key, $0.source) }, names: names, checkStorageRoot: checkStorageRoot)
        let shown = entries.map { entry in
            Entry(key: entry.key, value: entry.setting.current(configuration, entry.type),
                  source: entry.source.map { $0 == names.file ? "file \($0)" : $0 } ?? "default", defaultText: entry.setting.defaultText)
        }
        return Loaded(configuration: configuration, entries: shown)
    }

    // MARK: - Sources

    private struct ProviderNames {
        let commandLine = "command line"
        let environment = "environment"
        let credential = "systemd credential"
        var file: String?

        /// Our name for a provider's (`InMemoryProvider[environment]`, `FileProvider<YAMLSnapshot>`).
        func normalized(_ providerName: String) -> String {
            for name in [commandLine, environment, credential] where providerName.hasSuffix("[\(name)]") { return name }
            return file ?? providerName
        }
    }

    /// `--lease`, `MEDIANEST_LEASE` or `queue.lease in /etc/medianest/worker.yaml`.
    private static func name(of key: String, setting: WorkerSetting, source: String, names: ProviderNames) -> String {
        switch source {
        case names.commandLine: return setting.flag ?? key
        case names.environment: return setting.environment.first ?? key
        case names.credential: return "the systemd credential \(passwordCredential)"
        default: return "\(key) in \(source)"
        }
    }

    /// The flags given, as file keys; per-type flags split into `key.<type>`.
    private static func values(from options: WorkerOptions) throws(WorkerConfigurationError) -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for setting in WorkerSettings.all {
            guard let text = setting.given(options), let flag = setting.flag else { continue }
            try add(text, for: setting, name: flag, to: &values)
        }
        return values
    }

    /// The environment variables set, as file keys.
    private static func values(from environment: [String: String]) throws(WorkerConfigurationError) -> [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for setting in WorkerSettings.all {
            guard let variable = setting.environment.first(where: { environment[$0].map { !$0.isEmpty } ?? false }) else { continue }
            try add(environment[variable]!, for: setting, name: variable, to: &values)
        }
        return values
    }

    private static func add(_ text: String, for setting: WorkerSetting, name: String, to values: inout [AbsoluteConfigKey: ConfigValue]) throws(WorkerConfigurationError) {
        guard setting.perJobType else {
            values[AbsoluteConfigKey(ConfigKey(setting.key))] = ConfigValue(.string(text), isSecret: setting.secret)
            return
        }
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, JobType.all.contains(JobType(parts[0])) else {
                throw WorkerConfigurationError("\(name) takes type=value pairs such as metadata=8,transcode=1 for the types \(JobType.all.map(\.rawValue).joined(separator: ", ")) (got \(pair)).")
            }
            values[AbsoluteConfigKey(ConfigKey("\(setting.key).\(parts[0])"))] = ConfigValue(.string(parts[1]), isSecret: setting.secret)
        }
    }

    /// The YAML file, recording every key it holds.
    /// - Returns: The provider, or `nil` for a file with nothing but comments (YAML has no
    ///   mapping at all there, which swift-configuration refuses).
    private static func fileProvider(_ path: String, keys: KeyRecorder) async throws(WorkerConfigurationError) -> (any ConfigProvider)? {
        guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "it is not readable by this user" : "it does not exist"
            throw WorkerConfigurationError("configuration file \(path) cannot be read: \(reason) (--config, MEDIANEST_CONFIG).")
        }
        let content = String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard content.contains(where: { !$0.isEmpty && !$0.hasPrefix("#") && $0 != "---" }) else { return nil }
        do {
            // The dynamic secrets specifier sees every leaf key once while the file is parsed:
            // the only public way to learn which keys a file holds.
            let options = YAMLSnapshot.ParsingOptions(secretsSpecifier: .dynamic { key, _ in
                keys.add(key)
                return key.hasSuffix("password")
            })
            let locator = ConfigReader(provider: InMemoryProvider(values: ["filePath": ConfigValue(.string(path), isSecret: false)]))
            return try await FileProvider<YAMLSnapshot>(parsingOptions: options, config: locator)
        } catch {
            throw WorkerConfigurationError("configuration file \(path) is not valid YAML: \(String(describing: error).split(separator: "\n").joined(separator: " ")).")
        }
    }

    /// Refuses keys that no setting declares: a typo must not silently leave a default in place.
    private static func checkKeys(_ keys: [String], file: String, provider: any ConfigProvider) throws(WorkerConfigurationError) {
        let known = Set(WorkerSettings.all.flatMap(\.concreteKeys))
        // Sections (`metrics:`, `worker.type_limits:`) whose entries are all commented out parse
        // as empty leaves; they are fine as long as they hold nothing.
        var sections = Set(WorkerSettings.reservedSections.keys)
        for key in known {
            var parts = key.split(separator: ".").dropLast()
            while !parts.isEmpty { sections.insert(parts.joined(separator: ".")); parts = parts.dropLast() }
        }
        // The password row exists for the environment and the credential; the file must not hold it.
        if keys.contains("database.password") {
            throw WorkerConfigurationError("database.password in \(file): the password is never read from the configuration file; use database.password_file, the systemd credential \(passwordCredential) or MEDIANEST_DATABASE_PASSWORD.")
        }
        for key in keys.sorted() where !known.contains(key) {
            if sections.contains(key) {
                var text = ""
                if case .string(let value)? = try? provider.value(forKey: AbsoluteConfigKey(ConfigKey(key)), type: .string).value?.content { text = value }
                if ["", "~", "null"].contains(text) { continue }
                throw WorkerConfigurationError("\(key) in \(file) must be a section of keys, not a value (got \(text)).")
            }
            let section = String(key.prefix { $0 != "." })
            if let reason = WorkerSettings.reservedSections[section] {
                throw WorkerConfigurationError("\(key) in \(file): \(reason).")
            }
            let perType = WorkerSettings.all.first { $0.perJobType && key.hasPrefix($0.key + ".") }
            if let perType {
                throw WorkerConfigurationError("\(key) in \(file): unknown job type \(key.dropFirst(perType.key.count + 1)); known: \(JobType.all.map(\.rawValue).joined(separator: ", ")).")
            }
            let near = known.filter { $0.hasPrefix(section + ".") }.sorted()
            throw WorkerConfigurationError("unknown key \(key) in \(file)\(near.isEmpty ? "" : "; \(section) takes \(near.joined(separator: ", "))").")
        }
    }

    // MARK: - After the sources

    private static func finish(_ configuration: inout WorkerConfiguration, entries: [(key: String, source: String?)],
                               names: ProviderNames, checkStorageRoot: Bool) throws(WorkerConfigurationError) {
        if configuration.database.overrides["password"] == nil, let path = configuration.passwordFile, !path.isEmpty {
            let key = entries.first { $0.key == "database.password_file" }
            let name = key?.source.map { $0 == names.environment ? "MEDIANEST_DATABASE_PASSWORD_FILE" : "database.password_file in \($0)" } ?? "database.password_file"
            configuration.database = configuration.database.with("password", try readSecret(path, name: name))
        }
        if let (derived, name) = configuration.derivedRoot {
            guard let storage = configuration.storage else {
                throw WorkerConfigurationError("\(name) needs the storage root (--storage-root, storage.root): the derived root must lie inside the storage root.")
            }
            guard derived.hasPrefix("/") else { throw WorkerConfigurationError("\(name) must be an absolute path (got \(derived)).") }
            configuration.storage = StorageLayout(root: storage.root, derivedRoot: derived)
        }
        // Rescue runs twice per lease so a crashed worker's jobs are back within about one
        // lease of their last heartbeat; one worker at a time does it (an advisory try-lock).
        configuration.rescueInterval = configuration.lease / 2
        try configuration.validate()
        if checkStorageRoot, let root = configuration.storage?.root {
            do {
                try StorageRootMonitor.validateAtStart(root)
            } catch {
                throw WorkerConfigurationError((configuration.storageRootSource.map { "\($0): " } ?? "") + error.message)
            }
        }
    }

    /// Reads a password file: the first line, without its line end. The content never goes into
    /// a message.
    private static func readSecret(_ path: String, name: String) throws(WorkerConfigurationError) -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "it is not readable by this user or not UTF-8" : "it does not exist"
            throw WorkerConfigurationError("\(name): cannot read the password file \(path): \(reason).")
        }
        let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let password = line.hasSuffix("\r") ? String(line.dropLast()) : line
        guard !password.isEmpty else { throw WorkerConfigurationError("\(name): the password file \(path) is empty.") }
        return password
    }
}

/// Records the keys a file holds (see ``WorkerConfigurationLoader``).
private final class KeyRecorder: Sendable {
    private let keys = Mutex<[String]>([])
    func add(_ key: String) { keys.withLock { $0.append(key) } }
    var all: [String] { keys.withLock { $0 } }
}

/// Records which provider answered each key, and lookups that failed (a value of the wrong
/// shape), from the reader's access events.
private final class SourceRecorder: AccessReporter {
    private struct State {
        var sources: [String: String] = [:]
        var failures: [String: String] = [:]
    }
    private let state = Mutex(State())

    func report(_ event: AccessEvent) {
        let key = event.metadata.key.components.joined(separator: ".")
        for result in event.providerResults {
            switch result.result {
            case .success(let lookup) where lookup.value != nil:
                state.withLock { $0.sources[key] = $0.sources[key] ?? result.providerName }
                return
            case .success:
                continue
            case .failure:
                state.withLock { $0.failures[key] = $0.failures[key] ?? result.providerName }
                return
            }
        }
    }

    func source(of key: String) -> String? { state.withLock { $0.sources[key] } }
    func failure(of key: String) -> String? { state.withLock { $0.failures[key] } }
}
