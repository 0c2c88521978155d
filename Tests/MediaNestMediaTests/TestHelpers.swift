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
             logger: Logger = TestLogging.logger()) throws(JobError) -> MetadataResult {
    try MetadataExtractor.extract(root: fixtures.root, relativePath: name, declaredMimeType: declared, limits: limits,
                                  computeChecksums: checksums, cancellation: cancellation, logger: logger)
}

