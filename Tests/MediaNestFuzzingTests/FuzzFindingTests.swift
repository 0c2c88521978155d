import MediaNestCore
import Testing

/// What the fixes of the fuzzers' findings do, beyond not crashing (the inputs themselves are
/// replayed by ``FuzzRegressionReplayTests``).
@Suite("Fuzz findings")
struct FuzzFindingTests {
    /// `json/high-surrogate-before-non-low-surrogate`: `\ud83d` followed by an escape that is not a
    /// low surrogate trapped on `low - 0xDC00` (UInt32 underflow) and took the worker down with it
    /// while reading stills.json or a jsonb column.
    @Test("a high surrogate not followed by a low one reads as U+FFFD, and the next escape as itself")
    func loneHighSurrogate() throws {
        #expect(try JSONValue(parsing: #""\ud83d\u0041""#) == .string("\u{FFFD}A"))
        #expect(try JSONValue(parsing: #""\ud83d\uda00x""#) == .string("\u{FFFD}\u{FFFD}x"))
        // A proper pair still makes one scalar.
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("\u{1F600}"))
    }
}
