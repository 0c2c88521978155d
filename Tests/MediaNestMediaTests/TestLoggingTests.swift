import CFFmpeg
import Logging
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// The tests' own logging: quiet unless asked, FFmpeg included, and a capture for the tests that
/// assert on lines.
@Suite("Test logging")
struct TestLoggingTests {
    @Test func theLevelComesFromTheEnvironmentAndDefaultsToCritical() {
        #expect(TestLogging.level(named: nil) == .critical)
        #expect(TestLogging.level(named: "") == .critical)
        #expect(TestLogging.level(named: "loud") == .critical)
        #expect(TestLogging.level(named: "Debug") == .debug)
        #expect(TestLogging.level(named: " info ") == .info)
    }

    @Test func aLoggerMadeAnywhereInTheTestProcessIsAtTheTestLevel() {
        // Nothing here calls TestLogging first: the bootstrap ran when the test binary loaded, so
        // a library's default `Logger(label:)` is as quiet as the tests' own.
        #expect(Logger(label: "medianest.anything").logLevel == TestLogging.level)
        #expect(av_log_get_level() == FFmpegLog.ffmpegLevel(for: min(TestLogging.level, .error)),
                "FFmpeg formats nothing below the test level (errors still reach capturing loggers)")
    }

    @Test func ffmpegLevelsMapOntoSwiftLogLevels() {
        #expect(FFmpegLog.ffmpegLevel(for: .critical) == AV_LOG_PANIC)
        // FFmpeg's "fatal" is fatal to one stream (a corrupt upload), so it is the job's error.
        #expect(FFmpegLog.level(for: AV_LOG_FATAL) == .error)
        #expect(FFmpegLog.ffmpegLevel(for: .error) == AV_LOG_ERROR)
        #expect(FFmpegLog.ffmpegLevel(for: .warning) == AV_LOG_WARNING)
        #expect(FFmpegLog.ffmpegLevel(for: .debug) == AV_LOG_INFO)
        #expect(FFmpegLog.ffmpegLevel(for: .trace) == AV_LOG_VERBOSE)
        // The inverse: the lines FFmpeg still formats at the level chosen for L are logged at L or above.
        for level in [Logger.Level.trace, .debug, .warning, .error, .critical] {
            #expect(FFmpegLog.level(for: FFmpegLog.ffmpegLevel(for: level)) == level, "\(level)")
        }
    }

    @Test func aCapturedLogKeepsEveryLineWithItsLevelAndMetadata() {
        let log = CapturedLog()
        var logger = log.logger(label: "medianest.tests.capture")
        logger[metadataKey: "job_id"] = "j-1"
        logger.trace("first")
        logger.warning("second", metadata: ["sqlstate": "55P03"])
        #expect(log.messages == ["first", "second"], "trace is kept whatever MEDIANEST_TEST_LOG says")
        #expect(log.levels(containing: "second") == [.warning])
        #expect(log.matching("second", jobID: "j-1").first?.metadata["sqlstate"] == "55P03")
        #expect(log.matching("second", jobID: "j-2").isEmpty)
        #expect(log.text == "[trace] first job_id=j-1\n[warning] second job_id=j-1 sqlstate=55P03")
    }
}
