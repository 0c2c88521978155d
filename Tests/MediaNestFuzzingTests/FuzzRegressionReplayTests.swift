import Foundation
import MediaNestCore
import MediaNestFuzzing
import Testing

/// Replays every input the fuzzers found (`Tests/FuzzRegressions/<target>/`, see docs/FUZZING.md)
/// through the same entry point the libFuzzer executable calls.
///
/// Each of these inputs once crashed the worker, tripped AddressSanitizer, or ran past the
/// fuzzer's memory or time limit. Now each must be handled: the product reads it or refuses it
/// with the error code its file name ends with (`<what>.<code>`, `accepted` for a read), a crash
/// takes the test binary down, and a refusal as `internal_error` is never right for bad input.
@Suite("Fuzz regressions")
struct FuzzRegressionReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzRegressions")

    /// The kept inputs of one target, sorted by name.
    static func inputs(of target: FuzzTarget) -> [URL] {
        let directory = root.appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { directory.appendingPathComponent($0) }
    }

    @Test("every kept input is handled with the outcome its name records", arguments: FuzzTarget.allCases)
    func replay(target: FuzzTarget) throws {
        for url in Self.inputs(of: target) {
            let bytes = [UInt8](try Data(contentsOf: url))
            #expect(bytes.count <= target.maxInputBytes, "\(url.lastPathComponent) is longer than the fuzzer's -max_len")
            let expected = url.pathExtension
            let outcome = target.run(bytes)
            // scripts/fuzz.sh names a new finding `.unfixed`: it stays red until the bug is fixed.
            if expected == "unfixed" {
                Issue.record("\(target.rawValue)/\(url.lastPathComponent) is a fuzzer finding not fixed yet (it now gives \(outcome)); fix it, then rename it to the outcome (docs/FUZZING.md)")
                continue
            }
            switch outcome {
            case .accepted:
                #expect(expected == "accepted", "\(target.rawValue)/\(url.lastPathComponent) was read; its name says \(expected)")
            case .rejected(let code):
                #expect(code != .internalError, "\(target.rawValue)/\(url.lastPathComponent) was refused as internal_error")
                #expect(expected == code.rawValue, "\(target.rawValue)/\(url.lastPathComponent) was refused with \(code.rawValue); its name says \(expected)")
            }
        }
    }
}
