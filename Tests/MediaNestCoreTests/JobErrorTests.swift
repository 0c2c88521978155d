import MediaNestCore
import Testing

/// The error model every module speaks: a stable code, a message a person can read (never a raw
/// control character), and whether a retry can help.
@Suite("JobError: codes, retryability, escaping, the stored JSON")
struct JobErrorTests {
    @Test func codesAreTheStableSnakeCaseNamesTheSchemaAndTheDocsUse() {
        let codes: [JobError.Code] = [
            .unsupportedFormat, .corruptMedia, .emptyFile, .mimeMismatch, .tooLarge, .pixelLimit, .durationLimit,
            .pathOutsideStorage, .notARegularFile, .fileMissing, .mediaItemMissing, .unknownJobType, .invalidInput,
            .timeout, .ioError, .diskFull, .fileChanged, .databaseUnavailable, .workerLost, .internalError,
            .cancelled, .shutdown, .leaseLost,
        ]
        #expect(Set(codes.map(\.rawValue)).count == codes.count, "no two codes share a name")
        for code in codes {
            #expect(code.rawValue.allSatisfy { $0.isLowercase || $0 == "_" }, "\(code) is snake_case")
        }
        // A few spelled out: these strings are in processing_jobs rows already written.
        #expect(JobError.Code.corruptMedia.rawValue == "corrupt_media")
        #expect(JobError.Code.pathOutsideStorage.rawValue == "path_outside_storage")
        #expect(JobError.Code.workerLost.rawValue == "worker_lost")
        #expect(JobError.Code("corrupt_media") == .corruptMedia, "a code read back from a row equals the constant")
    }

    @Test func onlyTransientFaultsAreRetryableUnlessTheThrowerSays() {
        for code: JobError.Code in [.timeout, .ioError, .fileChanged, .diskFull, .databaseUnavailable, .internalError, .workerLost] {
            #expect(JobError(code, "x").isRetryable, "\(code)")
        }
        for code: JobError.Code in [.corruptMedia, .unsupportedFormat, .pixelLimit, .mimeMismatch, .pathOutsideStorage, .cancelled, .leaseLost] {
            #expect(!JobError(code, "x").isRetryable, "\(code)")
        }
        #expect(!JobError(.ioError, "EACCES will not fix itself", retryable: false).isRetryable)
        #expect(JobError(.corruptMedia, "a partial upload may still complete", retryable: true).isRetryable)
    }

    @Test func theMessageNeverCarriesAControlCharacter() {
        var error = JobError(.fileMissing, "no such file: uploads/a.jpg\nforged line\u{1B}[2J")
        #expect(error.message == #"no such file: uploads/a.jpg\nforged line\u{1B}[2J"#)
        error.message = "set later\r\u{7}"
        #expect(error.message == #"set later\r\u{07}"#)
        #expect(error.description == #"file_missing: set later\r\u{07}"#)
    }

    @Test func wrappingKeepsJobErrorsAndClassifiesTheRest() {
        let original = JobError(.pixelLimit, "too many pixels")
        #expect(JobError.wrapping(original) == original)

        let cancelled = JobError.wrapping(CancellationError())
        #expect(cancelled.code == .cancelled && !cancelled.isRetryable)

        struct Bug: Error, CustomStringConvertible { var description: String { "index out of range" } }
        let wrapped = JobError.wrapping(Bug())
        #expect(wrapped.code == .internalError)
        #expect(wrapped.isRetryable, "a bug in one release must not fail jobs forever")
        #expect(wrapped.message == "index out of range")
    }

    @Test func theStoredJSONHasCodeMessageRetryableAndAttempt() throws {
        let json = JobError(.timeout, "ran past 300 s").json(attempt: 2)
        #expect(json.jsonText == #"{"attempt":2,"code":"timeout","message":"ran past 300 s","retryable":true}"#)
        #expect(try JSONValue(parsing: json.jsonText) == json)
    }

    @Test func everyStopReasonStopsWithItsOwnCode() {
        let expected: [(StopReason, JobError.Code)] = [
            (.cancelled, .cancelled), (.shutdown, .shutdown), (.timeout, .timeout), (.leaseLost, .leaseLost),
            (.mediaItemDeleted, .mediaItemMissing),
        ]
        for (reason, code) in expected {
            #expect(reason.error.code == code, "\(reason)")
            #expect(!reason.error.message.isEmpty)
        }
    }
}
