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

    private func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        let output = Pipe()
        if let owner {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", owner, "--", "\(binDirectory)/\(tool)"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "\(binDirectory)/\(tool)")
            process.arguments = arguments
        }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PrivateClusterError(message: "\(tool) \(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(text)")
        }
    }
}

/// A private cluster command failed.
public struct PrivateClusterError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
