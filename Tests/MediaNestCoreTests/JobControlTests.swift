import MediaNestCore
import Testing

/// What a handler sees of the engine: the stop token and the progress it reports.
@Suite("JobCancellation and JobProgress")
struct JobControlTests {
    @Test func theFirstStopReasonWinsAndCheckThrowsIt() {
        let token = JobCancellation()
        #expect(!token.shouldStop)
        #expect(throws: Never.self) { try token.check() }
        token.stop(.shutdown)
        token.stop(.cancelled)
        #expect(token.stopReason == .shutdown)
        #expect(throws: JobError(.shutdown, StopReason.shutdown.error.message)) { try token.check() }
    }

    @Test func aPassedDeadlineIsATimeoutAndAPassedLeaseIsLeaseLost() {
        let timedOut = JobCancellation(timeout: .zero)
        #expect(timedOut.stopReason == .timeout)

        let noLimit = JobCancellation(timeout: nil)
        noLimit.startClock(timeout: .seconds(3600))
        #expect(noLimit.stopReason == nil, "a clock restarted with an hour left has not run out")

        let leased = JobCancellation()
        leased.extendLease(until: .now - .seconds(1))
        #expect(leased.stopReason == .leaseLost)
    }

    @Test func aLeaseNeverMovesBackwards() {
        let token = JobCancellation()
        token.extendLease(until: .now + .seconds(3600))
        token.extendLease(until: .now - .seconds(1))
        #expect(token.stopReason == nil, "the earlier instant did not replace the later one")
    }

    @Test func progressKeepsTheLatestReportClampedAndCountsReports() {
        let progress = JobProgress()
        #expect(progress.current.snapshot == nil && progress.current.version == 0)
        progress.report(stage: "hashing", fraction: 1.7, details: ["bytes": 10])
        progress.report(stage: "probing", fraction: -0.2)
        let current = progress.current
        #expect(current.version == 2)
        #expect(current.snapshot == ProgressSnapshot(fraction: 0, stage: "probing"))
    }

    @Test func theProgressJSONRoundsTheFractionAndKeepsTheDetails() {
        let json = ProgressSnapshot(fraction: 0.123456, stage: "encoding", details: ["fps": 61.5]).json
        #expect(json.jsonText == #"{"fps":61.5,"fraction":0.123,"stage":"encoding"}"#)
    }
}
