import Foundation
import MediaNestTestSupport

/// What a child process printed and how it exited.
struct ToolOutput {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `tool` with `arguments` and extra environment, and waits for it.
func runTool(_ tool: String, _ arguments: [String], environment extra: [String: String] = [:], removing: [String] = [],
             in directory: String? = nil) throws -> ToolOutput {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : try which(tool))
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    for key in removing { environment[key] = nil }
    environment.merge(extra) { _, new in new }
    process.environment = environment
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes before waiting so a chatty tool cannot block on a full pipe.
    let errData = ErrBox()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData.data = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ToolOutput(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData.data, as: UTF8.self))
}

private final class ErrBox: @unchecked Sendable { var data = Data() }

struct ToolNotFound: Error, CustomStringConvertible {
    var description: String
}

/// The absolute path of a tool on PATH.
func which(_ name: String) throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ToolNotFound(description: "\(name) is not on PATH")
}

/// A fresh directory under the temporary directory, removed by the caller.
func makeTemporaryDirectory(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "mn-\(label)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The worker binary `scripts/test.sh` built (`MEDIANEST_WORKER_BIN`), else the debug build.
var workerBinary: String {
    ProcessInfo.processInfo.environment["MEDIANEST_WORKER_BIN"]
        ?? repositoryRoot.appendingPathComponent(".build/debug/medianest-worker").path
}

var hasWorkerBinary: Bool { FileManager.default.isExecutableFile(atPath: workerBinary) }

/// PostgreSQL client tools: `MEDIANEST_PG_BINDIR` (set by scripts/test.sh) or PATH.
func pgTool(_ name: String) throws -> String {
    if let directory = ProcessInfo.processInfo.environment["MEDIANEST_PG_BINDIR"], FileManager.default.isExecutableFile(atPath: directory + "/" + name) {
        return directory + "/" + name
    }
    return try which(name)
}
