import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Synchronization
import Testing

/// The error `body` threw, or `nil` when it did not throw.
func jobError(_ body: () throws(JobError) -> Void) -> JobError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

/// Runs the metadata extraction on a corpus file, without checksums unless asked.
func extract(_ fixtures: MediaFixtures, _ name: String, declared: String = "application/octet-stream",
             limits: MediaLimits = .default, checksums: Bool = false, cancellation: JobCancellation? = nil,
             logger: Logger = Logger(label: "test")) throws(JobError) -> MetadataResult {
    try MetadataExtractor.extract(root: fixtures.root, relativePath: name, declaredMimeType: declared, limits: limits,
                                  computeChecksums: checksums, cancellation: cancellation, logger: logger)
}

/// A log handler that keeps every line, for assertions.
struct CollectingLogHandler: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[(Logger.Level, String, Logger.Metadata?)]>([])
        var messages: [String] { lines.withLock { $0.map(\.1) } }
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        store.lines.withLock { $0.append((event.level, event.message.description, event.metadata)) }
    }

    static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "collect") { _ in CollectingLogHandler(store: store) }, store)
    }
}
