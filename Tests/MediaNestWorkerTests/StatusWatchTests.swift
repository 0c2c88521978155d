import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestTestSupport
import MediaNestWorker
import Testing

@Suite("status --watch rendering")
struct StatusViewTests {
    private func snapshot() -> WatchSnapshot {
        WatchSnapshot(
            takenAt: Date(timeIntervalSince1970: 1_800_000_000),
            types: [
                .init(type: "metadata", pending: 0, running: 0, completed: 12, failedLastHour: 1),
                .init(type: "thumbnail", pending: 7, running: 0, completed: 0, failedLastHour: 0),
                .init(type: "transcode", pending: 2, delayed: 1, running: 1, completed: 3, failedLastHour: 0),
            ],
            running: [.init(type: "transcode", item: "holiday\nclip.mov", workerID: "host:42/1", runningFor: 30,
                            progress: ["stage": "encoding", "fraction": 0.45, "fps": 62.4, "speed": 2.1, "eta_seconds": 12])],
            failures: [.init(type: "metadata", item: "broken.mp4", code: "corrupt_media", message: "The file is truncated.", ago: 90)],
            failuresLastHour: 1,
            workers: [.init(id: "host:42", types: ["metadata", "transcode"], concurrency: 4, up: 125, seenAgo: 1)])
    }

    @Test func showsTypesProgressFailuresAndWorkers() {
        let text = StatusView.render(snapshot(), interval: 2).joined(separator: "\n")
        #expect(text.hasPrefix("MediaNest queue  20"))
        #expect(text.contains("every 2s; Ctrl-C to quit"))
        // Thumbnails wait for a worker, transcodes do not; the view says which.
        #expect(text.contains("no live worker serves thumbnail"))
        #expect(!text.contains("no live worker serves transcode"))
        #expect(text.contains("1 waiting to retry"))
        #expect(text.contains("9 pending, 1 running"))
        #expect(text.contains("[████······] 45%"))
        #expect(text.contains("62 fps"))
        #expect(text.contains("2.1×"))
        #expect(text.contains("ETA 12s"))
        #expect(text.contains("holiday\\nclip.mov"), "a newline in a name must not break the layout")
        #expect(text.contains("FAILED IN THE LAST HOUR (1)"))
        #expect(text.contains("broken.mp4  corrupt_media: The file is truncated.  (1m30s ago)"))
        #expect(text.contains("host:42  metadata,transcode  concurrency 4  up 2m05s"))
    }

    @Test func aBrokenFileIsShownOnceWithEveryJobItStopped() {
        var broken = snapshot()
        let sentence = "The file is not a complete video: no moov atom."
        broken.failures = ["transcode", "preview", "thumbnail", "metadata"].map {
            .init(type: $0, item: "IMG_0004 (broken).MOV", code: "corrupt_media", message: sentence, ago: 5, mediaItemID: "item-4")
        } + [
            // Another item with the same name and reason, and the same item failing for another reason, stay apart.
            .init(type: "metadata", item: "IMG_0004 (broken).MOV", code: "corrupt_media", message: sentence, ago: 6, mediaItemID: "item-5"),
            .init(type: "transcode", item: "IMG_0004 (broken).MOV", code: "timeout", message: "The job ran past its time limit.", ago: 7, mediaItemID: "item-4"),
        ]
        broken.failuresLastHour = 6
        let lines = StatusView.render(broken)
        let withSentence = lines.filter { $0.contains(sentence) }
        #expect(withSentence.count == 2, "\(lines.joined(separator: "\n"))")
        #expect(withSentence.first?.contains("transcode,preview,thumbnail,metadata  IMG_0004 (broken).MOV  corrupt_media") == true,
                "\(withSentence)")
        #expect(lines.contains { $0.contains("timeout: The job ran past its time limit.") })
        #expect(lines.contains("FAILED IN THE LAST HOUR (6)"), "the count is of jobs")
    }

    @Test func drainedQueueSaysSoAndProgressWithoutETAIsEstimated() {
        var drained = snapshot()
        drained.types = [.init(type: "metadata", pending: 0, running: 0, completed: 5, failedLastHour: 0)]
        drained.running = []
        #expect(StatusView.render(drained).contains("Queue drained: nothing pending or running."))
        #expect(StatusView.progressText(["percent": 25], runningFor: 30).contains("ETA ~1m30s"))
        #expect(StatusView.progressText(["stage": "hashing"], runningFor: 3) == "hashing  (3s)")
    }

    @Test func terminalLinesAreCutToTheWidthAndKeepColoursClosed() {
        let lines = StatusView.render(snapshot(), width: 40, color: true)
        for line in lines {
            let visible = line.replacingOccurrences(of: #"\u{1B}\[[0-9;?]*[A-Za-z]"#, with: "", options: .regularExpression)
            #expect(visible.count <= 40, "\(line)")
        }
        #expect(lines.contains { $0.contains("\u{1B}[1m") })
    }
}

@Suite("status --watch process", .enabled(if: TestDatabase.isAvailable && executablesAvailable, "needs the test cluster and built executables"),
       .timeLimit(.minutes(2)))
struct StatusWatchProcessTests {
    @Test func refreshesIntoAPipeAndExitsZeroOnSIGINT() async throws {
        try await withMigratedDatabase("watch") { database, connection, owner in
            let item = try DatabaseFixtures.insertMediaItem(ownerID: owner, mimeType: "video/mp4", name: "clip.mp4", on: connection)
            try connection.execute("SELECT enqueue_media_processing($1::uuid)", [item])
            let process = Process()
            process.executableURL = binDirectory.appendingPathComponent("medianest-worker")
            process.arguments = ["status", "--watch", "--interval", "0.3", "--database-url", database.connectionString]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            let collected = OutputCollector()
            out.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
            try process.run()
            let twoRefreshes = try await waitUntil(timeout: .seconds(30)) { collected.text.components(separatedBy: "MediaNest queue").count - 1 >= 2 }
            #expect(twoRefreshes, "output so far:\n\(collected.text)")
            kill(process.processIdentifier, SIGINT)
            let exited = try await waitUntil(timeout: .seconds(10)) { !process.isRunning }
            #expect(exited)
            if !exited { process.terminate() }
            out.fileHandleForReading.readabilityHandler = nil
            #expect(process.terminationReason == .exit)
            #expect(process.terminationStatus == 0)
            let text = collected.text
            #expect(text.contains("transcode"))
            #expect(text.contains("no live worker serves metadata"))
            // Not a terminal: no escape sequences in the pipe.
            #expect(!text.contains("\u{1B}["))
        }
    }
}

final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ chunk: Data) {
        lock.lock()
        data.append(chunk)
        lock.unlock()
    }
    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
