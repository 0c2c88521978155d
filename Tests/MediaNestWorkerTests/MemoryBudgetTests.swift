import ArgumentParser
import Foundation
import MediaNestCore
import MediaNestQueue
@testable import MediaNestWorker
import Testing

private let mib: Int64 = 1 << 20

private func item(mime: String, metadata: JSONValue = [:], size: Int64? = nil) -> MediaItemRecord {
    MediaItemRecord(id: "i", ownerID: "o", filename: "f", originalFilename: nil, mimeType: mime, fileSize: size,
                    storagePath: "f", metadata: metadata)
}

/// The memory budget's policy, without a database: what fits, what waits, what runs alone.
@Suite("memory budget")
struct MemoryBudgetTests {
    @Test func withoutACapacityEverythingFits() {
        var budget = MemoryBudget(capacity: nil)
        budget.reserve("a", bytes: 100_000 * mib)
        #expect(budget.admits(100_000 * mib))
        #expect(budget.available == nil)
        #expect(budget.slots(7, of: .transcode, minimum: mib) == 7)
    }

    @Test func aJobFitsWhatIsLeftAndNotMore() {
        var budget = MemoryBudget(capacity: 1000 * mib)
        budget.reserve("t1", bytes: 700 * mib)
        #expect(budget.available == 300 * mib)
        #expect(budget.admits(300 * mib))
        #expect(!budget.admits(301 * mib))
        budget.reserve("s1", bytes: 200 * mib)
        #expect(!budget.admits(101 * mib))
        budget.release("t1")
        #expect(budget.admits(800 * mib))
        #expect(budget.reserved == 200 * mib)
    }

    @Test func aJobLargerThanTheWholeBudgetRunsAloneAndNothingStartsBesideIt() {
        var budget = MemoryBudget(capacity: 500 * mib)
        #expect(budget.admits(2000 * mib), "an idle worker takes any job")
        budget.reserve("huge", bytes: 2000 * mib)
        #expect(!budget.admits(1), "nothing starts beside a job that exceeds the budget")
        #expect(budget.slots(4, of: .metadata, minimum: 48 * mib) == 0)
    }

    @Test func aHeldJobIsNotClaimedAgainUntilItsRoomIsFree() {
        var budget = MemoryBudget(capacity: 1000 * mib)
        budget.reserve("t1", bytes: 600 * mib)
        #expect(!budget.admits(600 * mib))
        budget.hold(.transcode, bytes: 600 * mib)
        #expect(budget.slots(1, of: .transcode, minimum: 64 * mib) == 0, "its type is held back")
        #expect(budget.takeHoldsThatFit().isEmpty)
        // Small stills still start beside the running transcode, within the room left.
        #expect(budget.admits(100 * mib))
        #expect(budget.slots(8, of: .thumbnail, minimum: 100 * mib) == 4)
        budget.reserve("s1", bytes: 100 * mib)
        budget.release("t1")
        #expect(budget.takeHoldsThatFit() == [.transcode])
        #expect(budget.holds.isEmpty)
        #expect(budget.slots(1, of: .transcode, minimum: 64 * mib) == 1)
    }

    @Test func smallJobsLeaveRoomForAWaitingJob() {
        var budget = MemoryBudget(capacity: 1000 * mib)
        budget.reserve("t1", bytes: 600 * mib)
        budget.hold(.transcode, bytes: 600 * mib)
        // 400 MiB are free, but stills may only take what still leaves 600 MiB once t1 ends.
        budget.reserve("s1", bytes: 300 * mib)
        #expect(budget.admits(100 * mib))
        budget.reserve("s2", bytes: 100 * mib)
        #expect(!budget.admits(1), "a third still would starve the waiting transcode")
        // A job at least the waiting one's size is not held back by that rule, only by the room.
        budget.release("t1")
        #expect(budget.admits(600 * mib))

        // There is room (500 of 1000 MiB free), but a 200 MiB still would leave less than the
        // waiting 600 MiB once the jobs running now end.
        var room = MemoryBudget(capacity: 1000 * mib)
        room.reserve("s1", bytes: 300 * mib)
        room.hold(.transcode, bytes: 600 * mib)
        #expect(!room.admits(200 * mib))
        #expect(room.admits(100 * mib))
    }

    @Test func aWaitingJobLargerThanTheBudgetLetsTheWorkerEmpty() {
        var budget = MemoryBudget(capacity: 500 * mib)
        budget.reserve("s1", bytes: 50 * mib)
        budget.hold(.transcode, bytes: 900 * mib)
        #expect(!budget.admits(10 * mib), "nothing new starts while an oversized job waits")
        #expect(budget.takeHoldsThatFit().isEmpty)
        budget.release("s1")
        #expect(budget.takeHoldsThatFit() == [.transcode], "an empty worker takes it")
        #expect(budget.admits(900 * mib))
    }

    @Test func anEmptyWorkerTakesOnlyTheLargestHeldJobFirst() {
        var budget = MemoryBudget(capacity: 1000 * mib)
        budget.hold(.transcode, bytes: 900 * mib)
        budget.hold(.preview, bytes: 500 * mib)
        #expect(budget.takeHoldsThatFit() == [.transcode])
        #expect(budget.holds == [.preview: 500 * mib])
    }

    @Test func slotsFollowTheSmallestJobOfTheType() {
        var budget = MemoryBudget(capacity: 1000 * mib)
        #expect(budget.slots(8, of: .thumbnail, minimum: 300 * mib) == 3)
        #expect(budget.slots(0, of: .thumbnail, minimum: 300 * mib) == 0)
        budget.reserve("a", bytes: 950 * mib)
        #expect(budget.slots(8, of: .thumbnail, minimum: 100 * mib) == 0)
        #expect(budget.slots(8, of: .metadata, minimum: 50 * mib) == 1)
    }

    // MARK: Estimates

    @Test func aTranscodeGrowsWithTheSourceResolution() {
        let estimator = JobMemoryEstimator()
        let p720 = estimator.estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["kind": "video", "width": 1280, "height": 720]))
        let p1080 = estimator.estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["kind": "video", "width": 1920, "height": 1080]))
        let p2160 = estimator.estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["kind": "video", "width": 3840, "height": 2160]))
        #expect(p720 < p1080 && p1080 < p2160)
        // Portrait is the same work as landscape.
        let portrait = estimator.estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["kind": "video", "width": 1080, "height": 1920]))
        #expect(portrait == p1080)
        // Not known yet (the metadata job has not run): taken as 2160p, never less.
        #expect(estimator.estimate(type: .transcode, item: item(mime: "video/mp4")) == p2160)
        // A lower rendition limit makes the encoder side smaller.
        #expect(JobMemoryEstimator(transcodeMaxResolution: 720).estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["width": 3840, "height": 2160])) < p2160)
        // Every encoder thread keeps frames of its own.
        #expect(JobMemoryEstimator(transcodeThreads: 8).estimate(type: .transcode, item: item(mime: "video/mp4", metadata: ["width": 1920, "height": 1080])) > p1080)
        // Audio needs no frames.
        #expect(estimator.estimate(type: .transcode, item: item(mime: "audio/mpeg")) < p720)
    }

    @Test func aStillGrowsWithItsPixelsAndItsBitDepth() {
        let estimator = JobMemoryEstimator()
        let small = estimator.estimate(type: .thumbnail, item: item(mime: "image/jpeg", metadata: ["kind": "image", "width": 640, "height": 480]))
        let p12 = estimator.estimate(type: .thumbnail, item: item(mime: "image/jpeg", metadata: ["kind": "image", "width": 4000, "height": 3000]))
        let p12Deep = estimator.estimate(type: .thumbnail, item: item(mime: "image/avif", metadata: ["kind": "image", "width": 4000, "height": 3000, "bit_depth": 10]))
        let p12PNG = estimator.estimate(type: .thumbnail, item: item(mime: "image/png", metadata: ["kind": "image", "width": 4000, "height": 3000, "bit_depth": 8]))
        #expect(small < p12 && p12 < p12PNG && p12PNG < p12Deep, "a JPEG decodes reduced, a PNG whole, a deep AVIF in several copies")
        #expect(estimator.estimate(type: .preview, item: item(mime: "image/jpeg", metadata: ["width": 4000, "height": 3000])) == p12)
        // Unknown dimensions: a 24 MP still; unknown depth of a HEIC: high.
        let unknown = estimator.estimate(type: .thumbnail, item: item(mime: "image/jpeg"))
        #expect(unknown == estimator.estimate(type: .thumbnail, item: item(mime: "image/jpeg", metadata: ["width": 6000, "height": 4000])))
        #expect(estimator.estimate(type: .thumbnail, item: item(mime: "image/heic")) > unknown)
        // Never more than the pixel limit allows to be decoded; absurd dimensions are ignored.
        let capped = JobMemoryEstimator(maxPixels: 1_000_000)
        #expect(capped.estimate(type: .thumbnail, item: item(mime: "image/png", metadata: ["width": 65535, "height": 65535]))
                == capped.estimate(type: .thumbnail, item: item(mime: "image/png", metadata: ["width": 1000, "height": 1000])))
        #expect(estimator.estimate(type: .thumbnail, item: item(mime: "image/png", metadata: ["width": -5, "height": 10]))
                == estimator.estimate(type: .thumbnail, item: item(mime: "image/png")))
    }

    @Test func metadataIsSmallAndAGoneItemCostsNothing() {
        let estimator = JobMemoryEstimator()
        let metadata = estimator.estimate(type: .metadata, item: item(mime: "video/mp4", metadata: ["width": 3840, "height": 2160]))
        #expect(metadata == estimator.minimum(for: .metadata))
        #expect(metadata < estimator.estimate(type: .thumbnail, item: item(mime: "image/jpeg", metadata: ["width": 640, "height": 480])) * 4)
        #expect(estimator.estimate(type: .transcode, item: nil) == 0)
        for type in JobType.all {
            for tiny in [item(mime: "image/jpeg", metadata: ["width": 1, "height": 1]), item(mime: "video/mp4", metadata: ["width": 2, "height": 2]), item(mime: "audio/mpeg")] {
                #expect(estimator.estimate(type: type, item: tiny) >= estimator.minimum(for: type), "\(type) \(tiny.mimeType)")
            }
        }
    }

    // MARK: Setting and cgroup

    @Test func theSettingTakesSizesAutoAndNone() {
        #expect(MemoryBudgetSetting.parse("auto") == .automatic)
        #expect(MemoryBudgetSetting.parse("none") == .unbounded)
        #expect(MemoryBudgetSetting.parse("max") == .unbounded)
        #expect(MemoryBudgetSetting.parse("1536M") == .bytes(1536 * mib))
        #expect(MemoryBudgetSetting.parse("2G") == .bytes(2048 * mib))
        #expect(MemoryBudgetSetting.parse("1.5GiB") == .bytes(1536 * mib))
        #expect(MemoryBudgetSetting.parse("1048576") == .bytes(mib))
        for bad in ["-1G", "0", "lots", "12Q", "G"] { #expect(MemoryBudgetSetting.parse(bad) == nil, "\(bad)") }
        #expect(MemoryBudgetSetting.bytes(1536 * mib).description == "1536M")
        #expect(MemoryBudgetSetting.automatic.capacity(cgroupLimit: { 1024 * mib }) == 1024 * mib - MemoryBudgetSetting.idleReserve)
        #expect(MemoryBudgetSetting.automatic.capacity(cgroupLimit: { nil }) == nil)
        #expect(MemoryBudgetSetting.bytes(5 * mib).capacity(cgroupLimit: { 1 }) == 5 * mib)
        #expect(MemoryBudgetSetting.unbounded.capacity(cgroupLimit: { 1 }) == nil)
    }

    @Test func theBudgetIsASettingLikeEveryOther() async throws {
        func load(_ arguments: [String], environment: [String: String] = [:]) async throws -> WorkerConfiguration {
            try await WorkerConfigurationLoader.load(options: WorkerOptions.parse(arguments), environment: environment).configuration
        }
        #expect(try await load([]).memoryBudget == .automatic)
        #expect(try await load(["--memory-budget", "2G"]).memoryBudget == .bytes(2048 * mib))
        #expect(try await load([], environment: ["MEDIANEST_MEMORY_BUDGET": "none"]).memoryBudget == .unbounded)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("budget-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "worker:\n  memory_budget: 1536M\n".write(toFile: dir + "/w.yaml", atomically: true, encoding: .utf8)
        #expect(try await load(["--config", dir + "/w.yaml"]).memoryBudget == .bytes(1536 * mib))
        do {
            _ = try await load(["--memory-budget", "lots"])
            Issue.record("a budget of 'lots' loaded")
        } catch let error as WorkerConfigurationError {
            #expect(error.message.contains("--memory-budget must be a size such as 1536M or 2G"), "\(error.message)")
        }
    }

    @Test func theCgroupLimitIsTheTightestMemoryMaxOfTheGroupAndItsAncestors() {
        let files = [
            "/sys/fs/cgroup/system.slice/medianest-worker.service/memory.max": "2147483648\n",
            "/sys/fs/cgroup/system.slice/memory.max": "max\n",
            "/sys/fs/cgroup/memory.max": "max\n",
        ]
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: "0::/system.slice/medianest-worker.service\n", readFile: { files[$0] }) == 2048 * mib)
        // A tighter parent (a slice with MemoryMax=) wins.
        var tight = files
        tight["/sys/fs/cgroup/system.slice/memory.max"] = "1073741824"
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: "0::/system.slice/medianest-worker.service\n", readFile: { tight[$0] }) == 1024 * mib)
        // No limit anywhere.
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: "0::/user.slice\n", readFile: { $0.hasSuffix("memory.max") ? "max" : nil }) == nil)
        // cgroup v1: the memory controller's group, or the mount root in a container; 2^63 rounded down means none.
        let v1 = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: v1, readFile: { $0 == "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" ? "536870912" : nil }) == 512 * mib)
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: v1, readFile: { $0 == "/sys/fs/cgroup/memory/memory.limit_in_bytes" ? "268435456" : nil }) == 256 * mib)
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: v1, readFile: { _ in "9223372036854771712" }) == nil)
        #expect(CgroupMemoryLimit.limit(procSelfCgroup: "", readFile: { _ in "1" }) == nil)
    }
}
