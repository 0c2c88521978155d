import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A file that changes while the metadata job reads it must fail with `file_changed` and hand
/// back nothing. The change is made through the extractor's test seam, after the last read and
/// before the check, so no timing is involved.
@Suite("A file changed while it is read fails with file_changed and records nothing")
struct FileChangeTests {
    typealias Name = MediaFixtures.Name
    let fixtures: MediaFixtures
    init() throws { fixtures = try MediaFixtures.load() }

    /// One way to change the file at `path`.
    enum Change: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case truncate, append, touchNanosecond, replaceByRename, remove
        var testDescription: String { rawValue }

        func apply(to path: String) throws {
            switch self {
            case .truncate:
                try #require(Glibc.truncate(path, 100) == 0)
            case .append:
                let handle = try #require(FileHandle(forWritingAtPath: path))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data([0, 1, 2, 3]))
                try handle.close()
            case .touchNanosecond:
                // Same size, same inode, same second: only the nanoseconds move.
                var info = stat()
                try #require(stat(path, &info) == 0)
                var mtime = info.st_mtim
                mtime.tv_nsec = mtime.tv_nsec == 999_999_999 ? mtime.tv_nsec - 1 : mtime.tv_nsec + 1
                var times = [info.st_atim, mtime]
                try #require(utimensat(AT_FDCWD, path, &times, 0) == 0)
            case .replaceByRename:
                // Same bytes, same size: only the inode behind the path differs.
                try FileManager.default.copyItem(atPath: path, toPath: path + ".new")
                try #require(rename(path + ".new", path) == 0)
            case .remove:
                try #require(unlink(path) == 0)
            }
        }
    }

    /// Copies `source` into a scratch root and extracts it, running `change` at the seam.
    func run(_ source: String, change: Change?, checksums: Bool = true) throws -> (error: JobError?, salvaged: [FileChecksums], seamCalls: Int) {
        let scratch = try fixtures.makeScratchDirectory("changed")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.copyItem(atPath: fixtures.path(source), toPath: scratch + "/" + source)
        let path = scratch + "/" + source
        let calls = Mutex(0)
        let failures = Mutex<[String]>([])
        var salvaged: [FileChecksums] = []
        let error = MetadataExtractor.$beforeChangeCheck.withValue({ _ in
            calls.withLock { $0 += 1 }
            do { try change?.apply(to: path) } catch { failures.withLock { $0.append("\(error)") } }
        }) {
            jobError { () throws(JobError) in
                _ = try MetadataExtractor.extract(root: scratch, relativePath: source, declaredMimeType: "video/mp4",
                                                  computeChecksums: checksums, salvage: { salvaged.append($0) })
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "the change could not be made: \(failures.withLock { $0 })")
        return (error, salvaged, calls.withLock { $0 })
    }

    @Test func anUnchangedFilePassesTheCheck() throws {
        let outcome = try run(Name.plainMP4, change: nil)
        #expect(outcome.error == nil)
        #expect(outcome.seamCalls == 1, "the seam sits on the success path")
    }

    @Test(arguments: Change.allCases)
    func aFileChangedAfterItWasReadFailsWithFileChanged(change: Change) throws {
        let outcome = try run(Name.plainMP4, change: change)
        let error = try #require(outcome.error)
        #expect(error.code == .fileChanged, "\(error)")
        #expect(error.isRetryable)
        #expect(error.message.contains(Name.plainMP4))
        #expect(outcome.salvaged.isEmpty)
    }

    @Test func aFileChangedWithoutChecksumsStillFails() throws {
        #expect(try run(Name.flac, change: .append, checksums: false).error?.code == .fileChanged)
    }

    @Test(arguments: [Change.truncate, .append])
    func aDamagedFileThatChangedFailsWithFileChangedAndSalvagesNothing(change: Change) throws {
        let outcome = try run(Name.truncatedMP4, change: change)
        #expect(outcome.error?.code == .fileChanged)
        #expect(outcome.seamCalls == 1, "the seam sits on the failure path too")
        #expect(outcome.salvaged.isEmpty)
    }

    @Test(arguments: [Name.truncatedMP4, Name.randomBytes, Name.textAsJPEG])
    func anIntactFileThatCannotBeUsedHandsBackItsChecksums(name: String) throws {
        let outcome = try run(name, change: nil)
        let error = try #require(outcome.error)
        #expect(MetadataExtractor.salvageableCodes.contains(error.code), "\(error)")
        let salvaged = try #require(outcome.salvaged.first)
        #expect(outcome.salvaged.count == 1)
        let expected = try Checksummer.compute(SafeFile.open(relativePath: name, in: fixtures.root))
        #expect(salvaged == expected)
        let md5 = try ProcessRunner.run("/usr/bin/env", ["md5sum", fixtures.path(name)]).stdout.prefix(32)
        #expect(salvaged.md5 == String(md5))
    }

    @Test func aFailureThatIsNotAboutTheContentSalvagesNothing() throws {
        let outcome = try run(Name.plainMP4, change: nil, checksums: true)
        #expect(outcome.error == nil)
        #expect(outcome.salvaged.isEmpty, "a success reports checksums in its result, not as salvage")
        let limited = try fixtures.makeScratchDirectory("limited")
        defer { try? FileManager.default.removeItem(atPath: limited) }
        try FileManager.default.copyItem(atPath: fixtures.path(Name.plainMP4), toPath: limited + "/" + Name.plainMP4)
        var salvaged: [FileChecksums] = []
        let error = jobError { () throws(JobError) in
            _ = try MetadataExtractor.extract(root: limited, relativePath: Name.plainMP4, declaredMimeType: "video/mp4",
                                              limits: MediaLimits(maxPixels: 100), salvage: { salvaged.append($0) })
        }
        #expect(error?.code == .pixelLimit)
        #expect(salvaged.isEmpty)
    }
}
