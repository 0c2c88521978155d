import Foundation
public import MediaNestDB

/// A PostgreSQL cluster of a test's own, for tests that stop or restart the server.
///
/// The shared cluster of `scripts/test.sh` must never be restarted (other tests run on it in
/// parallel), so a test that needs a restart makes one of these: `initdb` into a temporary
/// directory, a Unix socket in that directory only (no TCP), trust authentication. PostgreSQL
/// refuses to run as root, so as root every server command runs as `postgres` via `runuser`.
public final class PrivateCluster: Sendable {
    /// The temporary directory holding the data directory, socket and log.
    public let directory: String
    /// The port number (only names the socket file; nothing listens on TCP).
    public let port: Int
    private let binDirectory: String
    private let owner: String?

    /// The server binaries: `MEDIANEST_PG_BINDIR`, else `/usr/lib/postgresql/15/bin`.
    public static var binDirectory: String {
        ProcessInfo.processInfo.environment["MEDIANEST_PG_BINDIR"] ?? "/usr/lib/postgresql/15/bin"
    }

    /// Creates and starts a cluster.
    /// - Throws: ``PrivateClusterError`` with the tool's output when initdb or pg_ctl fails.
    public init() throws {
        binDirectory = PrivateCluster.binDirectory
        owner = getuid() == 0 ? "postgres" : nil
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-private-pg-\(UUID().uuidString.prefix(8))").path
        port = Int.random(in: 20_000..<60_000)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o777)
        try run("initdb", ["-D", "\(directory)/data", "-U", "medianest", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        try start()
    }

    deinit {
        try? run("pg_ctl", ["-D", "\(directory)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A configuration for the cluster's `postgres` database (or `database`).
    public func configuration(database: String = "postgres") -> DatabaseConfiguration {
        DatabaseConfiguration(connectionString: connectionString(database: database), applicationName: "medianest-tests", connectTimeoutSeconds: 5)
    }

    /// A libpq `key=value` string for child processes.
    public func connectionString(database: String = "postgres") -> String {
        "host=\(directory) port=\(port) user=medianest dbname=\(database)"
    }

    /// Starts the server and waits until it accepts connections.
    public func start() throws {
        try run("pg_ctl", ["-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w", "-t", "30", "start",
                           "-o", "-c listen_addresses='' -p \(port) -c unix_socket_directories=\(directory) -c fsync=off -c max_connections=100"])
    }

    /// Stops the server (`fast`: disconnects clients, as a restart by an operator does).
    public func stop() throws {
        try run("pg_ctl", ["-D", "\(directory)/data", "-m", "fast", "-w", "-t", "30", "stop"])
    }

    /// Stops and starts the server.
    public func restart() throws {
        try stop()
        try start()
    }

    /// Runs a server tool with `posix_spawn` and `waitpid`. Foundation's `Process` cannot be
    /// used here: on Linux it notices a child's exit through a descriptor the child inherits, and
    /// the server that `pg_ctl start` leaves behind inherits it too, so `waitUntilExit` would wait
    /// for the server to stop.
    private func run(_ tool: String, _ arguments: [String]) throws {
        let outputPath = "\(directory)/\(tool).out"
        let argv: [String] = owner.map { ["/usr/sbin/runuser", "-u", $0, "--", "\(binDirectory)/\(tool)"] } ?? ["\(binDirectory)/\(tool)"]
        let all = argv + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = all.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, all[0], &actions, nil, &cArguments, environ)
        guard spawned == 0 else {
            throw PrivateClusterError(message: "could not start \(all[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exitCode == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw PrivateClusterError(message: "\(tool) \(arguments.joined(separator: " ")) failed (\(exitCode)): \(text)")
        }
    }
}

/// A private cluster command failed.
public struct PrivateClusterError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
