import Foundation
public import MediaNestCore
public import MediaNestDB
public import MediaNestQueue

/// What `status --watch` shows on one refresh.
public struct WatchSnapshot: Sendable, Hashable {
    /// Counts of one job type.
    public struct TypeRow: Sendable, Hashable {
        /// The job type.
        public var type: String
        /// Pending jobs, including ``delayed``.
        public var pending: Int
        /// Pending but waiting for a retry's backoff (`run_at` in the future).
        public var delayed: Int
        /// Running jobs.
        public var running: Int
        /// Completed jobs, ever.
        public var completed: Int
        /// Jobs that failed for good in the last hour.
        public var failedLastHour: Int
        public init(type: String, pending: Int, delayed: Int = 0, running: Int, completed: Int, failedLastHour: Int) {
            self.type = type
            self.pending = pending
            self.delayed = delayed
            self.running = running
            self.completed = completed
            self.failedLastHour = failedLastHour
        }
    }
    /// A running job with its progress.
    public struct RunningJob: Sendable, Hashable {
        /// The job type.
        public var type: String
        /// The item's original file name.
        public var item: String
        /// The worker running it.
        public var workerID: String
        /// Seconds since it started.
        public var runningFor: Double
        /// `progress_info`.
        public var progress: JSONValue
        public init(type: String, item: String, workerID: String, runningFor: Double, progress: JSONValue) {
            self.type = type
            self.item = item
            self.workerID = workerID
            self.runningFor = runningFor
            self.progress = progress
        }
    }
    /// A job that failed in the last hour.
    public struct Failure: Sendable, Hashable {
        /// The job type.
        public var type: String
        /// The item's original file name.
        public var item: String
        /// The stable error code.
        public var code: String
        /// The error message.
        public var message: String
        /// Seconds since it failed.
        public var ago: Double
        /// The item's id: failures of one item with one reason are shown as one line.
        public var mediaItemID: String
        public init(type: String, item: String, code: String, message: String, ago: Double, mediaItemID: String = "") {
            self.type = type
            self.item = item
            self.code = code
            self.message = message
            self.ago = ago
            self.mediaItemID = mediaItemID
        }
    }
    /// A live worker.
    public struct Worker: Sendable, Hashable {
        /// The worker id.
        public var id: String
        /// The job types it serves.
        public var types: [String]
        /// Its job slots.
        public var concurrency: Int
        /// Seconds since it started.
        public var up: Double
        /// Seconds since its last heartbeat.
        public var seenAgo: Double
        public init(id: String, types: [String], concurrency: Int, up: Double, seenAgo: Double) {
            self.id = id
            self.types = types
            self.concurrency = concurrency
            self.up = up
            self.seenAgo = seenAgo
        }
    }

    /// The database's `now()` when the snapshot was read.
    public var takenAt: Date
    /// Counts per job type.
    public var types: [TypeRow]
    /// The oldest running jobs.
    public var running: [RunningJob]
    /// The latest failures of the last hour.
    public var failures: [Failure]
    /// All failures of the last hour.
    public var failuresLastHour: Int
    /// Live workers.
    public var workers: [Worker]

    public init(takenAt: Date, types: [TypeRow], running: [RunningJob], failures: [Failure], failuresLastHour: Int, workers: [Worker]) {
        self.takenAt = takenAt
        self.types = types
        self.running = running
        self.failures = failures
        self.failuresLastHour = failuresLastHour
        self.workers = workers
    }

    /// The view of a queue snapshot: ages as seconds before ``QueueSnapshot/takenAt``.
    /// - Parameter snapshot: What ``QueueStateReader`` read.
    public init(_ snapshot: QueueSnapshot) {
        let now = snapshot.takenAt
        func since(_ date: Date?) -> Double { max(0, now.timeIntervalSince(date ?? now)) }
        self.init(takenAt: now,
                  types: snapshot.types.map {
                      TypeRow(type: $0.type.rawValue, pending: $0.pending, delayed: $0.delayed, running: $0.running, completed: $0.completed,
                              failedLastHour: $0.failedLastHour)
                  },
                  running: snapshot.running.map {
                      RunningJob(type: $0.type.rawValue, item: $0.item, workerID: $0.workerID, runningFor: since($0.startedAt), progress: $0.progress)
                  },
                  failures: snapshot.failures.map {
                      Failure(type: $0.type.rawValue, item: $0.item, code: $0.code, message: $0.message, ago: since($0.failedAt),
                              mediaItemID: $0.mediaItemID)
                  },
                  failuresLastHour: snapshot.failuresLastHour,
                  workers: snapshot.workers.map {
                      Worker(id: $0.id, types: $0.types, concurrency: $0.concurrency, up: since($0.startedAt), seenAgo: since($0.lastSeenAt))
                  })
    }

    /// Reads a snapshot through ``QueueStateReader`` (one read-only transaction, so the numbers agree).
    /// - Throws: ``DatabaseError``.
    public static func load(on connection: PGConnection, runningLimit: Int = 20, failureLimit: Int = 8) throws -> WatchSnapshot {
        WatchSnapshot(try QueueStateReader.snapshot(on: connection, runningLimit: runningLimit, failureLimit: failureLimit))
    }

    /// Nothing pending or running.
    public var isIdle: Bool { types.allSatisfy { $0.pending == 0 && $0.running == 0 } }
}

/// Renders a ``WatchSnapshot`` as text: a pure function, so the view is tested without a
/// terminal or a database.
public enum StatusView {
    /// The lines of one refresh.
    /// - Parameters:
    ///   - snapshot: The data.
    ///   - width: Terminal columns; every line is cut to it (0: no limit, for pipes and logs).
    ///   - interval: The refresh interval, shown in the title.
    ///   - color: Whether to use ANSI colours and bold.
    public static func render(_ snapshot: WatchSnapshot, width: Int = 0, interval: Double = 2, color: Bool = false) -> [String] {
        func style(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        var lines: [String] = []
        let time = timeFormatter.string(from: snapshot.takenAt)
        lines.append(style("MediaNest queue", "1") + "  \(time)  (every \(trimmed(interval))s; Ctrl-C to quit)")
        lines.append("")
        let served = Set(snapshot.workers.flatMap(\.types))
        let nameWidth = max(9, snapshot.types.map(\.type.count).max() ?? 0)
        lines.append(style(pad("TYPE", nameWidth) + "  " + ["PENDING", "RUNNING", "DONE", "FAILED 1H"].map { leftPad($0, 9) }.joined(separator: " "), "1"))
        if snapshot.types.isEmpty { lines.append("(no jobs yet)") }
        for row in snapshot.types {
            var line = pad(row.type, nameWidth) + "  " + [row.pending, row.running, row.completed, row.failedLastHour].map { leftPad(String($0), 9) }.joined(separator: " ")
            if row.delayed > 0 { line += "  \(row.delayed) waiting to retry" }
            if row.pending > row.delayed && !served.contains(row.type) {
                line += "  " + style("no live worker serves \(row.type)", "33")
            }
            lines.append(line)
        }
        let total = snapshot.types.reduce((0, 0)) { ($0.0 + $1.pending, $0.1 + $1.running) }
        if !snapshot.types.isEmpty {
            lines.append(total.0 == 0 && total.1 == 0 ? style("Queue drained: nothing pending or running.", "32")
                         : "\(total.0) pending, \(total.1) running")
        }

        lines.append("")
        lines.append(style("RUNNING (\(snapshot.running.count))", "1"))
        for job in snapshot.running {
            lines.append("  " + pad(job.type, nameWidth) + "  " + job.item.escapingControlCharacters() + "  " + progressText(job.progress, runningFor: job.runningFor)
                         + "  on \(job.workerID)")
        }

        if snapshot.failuresLastHour > 0 {
            lines.append("")
            lines.append(style("FAILED IN THE LAST HOUR (\(snapshot.failuresLastHour))", "1"))
            // One line per item and reason: a broken file fails each of its jobs with the same
            // sentence, which is worth reading once, with the jobs it stopped.
            for failure in oneLinePerReason(snapshot.failures) {
                lines.append("  " + pad(failure.type, nameWidth) + "  " + failure.item.escapingControlCharacters() + "  "
                             + style(failure.code, "31") + ": " + failure.message.escapingControlCharacters()
                             + "  (\(ProgressLine.duration(failure.ago)) ago)")
            }
        }

        lines.append("")
        lines.append(style("WORKERS (\(snapshot.workers.count))", "1"))
        if snapshot.workers.isEmpty { lines.append("  (no live worker)") }
        for worker in snapshot.workers {
            lines.append("  \(worker.id)  \(worker.types.joined(separator: ","))  concurrency \(worker.concurrency)  up \(ProgressLine.duration(worker.up))  seen \(ProgressLine.duration(worker.seenAgo)) ago")
        }
        guard width > 0 else { return lines }
        return lines.map { cut($0, to: width) }
    }

    /// `failures` with those of one item, code and message merged into the first (the newest):
    /// its type becomes the comma-separated types, newest failure first.
    static func oneLinePerReason(_ failures: [WatchSnapshot.Failure]) -> [WatchSnapshot.Failure] {
        var merged: [WatchSnapshot.Failure] = []
        for failure in failures {
            if let index = merged.firstIndex(where: {
                $0.mediaItemID == failure.mediaItemID && $0.item == failure.item && $0.code == failure.code && $0.message == failure.message
            }) {
                merged[index].type += "," + failure.type
            } else {
                merged.append(failure)
            }
        }
        return merged
    }

    /// `[████······] 45%  62 fps  2.1×  ETA 12s  (8s)` from a job's `progress_info`. Tolerates
    /// `fraction` or `percent`, `eta_seconds`/`eta`/`etaSeconds`, `speed` as a number or `"2.1x"`.
    public static func progressText(_ progress: JSONValue, runningFor: Double) -> String {
        var parts: [String] = []
        if let stage = progress["stage"]?.stringValue { parts.append(stage) }
        let percent = progress["fraction"]?.doubleValue.map { $0 * 100 } ?? progress["percent"]?.doubleValue
        if let percent {
            let clamped = min(100, max(0, percent))
            let filled = Int((clamped / 10).rounded(.down))
            parts.append("[" + String(repeating: "█", count: filled) + String(repeating: "·", count: 10 - filled) + "] \(Int(clamped))%")
        }
        if let fps = progress["fps"]?.doubleValue { parts.append(fps >= 10 ? "\(Int(fps.rounded())) fps" : String(format: "%.1f fps", fps)) }
        if let speed = progress["speed"]?.doubleValue {
            parts.append(String(format: "%.1f×", speed))
        } else if let speed = progress["speed"]?.stringValue {
            parts.append(speed)
        }
        let eta = progress["eta_seconds"]?.doubleValue ?? progress["eta"]?.doubleValue ?? progress["etaSeconds"]?.doubleValue
        if let eta {
            parts.append("ETA \(ProgressLine.duration(eta))")
        } else if let percent, percent > 0.5, percent < 100 {
            // The handler gave no ETA: estimate from the elapsed time.
            parts.append("ETA ~\(ProgressLine.duration(runningFor * (100 - percent) / percent))")
        }
        parts.append("(\(ProgressLine.duration(runningFor)))")
        return parts.joined(separator: "  ")
    }

    private static let timeFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        return formatter
    }()

    private static func trimmed(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    private static func leftPad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    /// Cuts a line to `width` visible characters, keeping ANSI escapes intact.
    static func cut(_ line: String, to width: Int) -> String {
        var visible = 0
        var out = ""
        var inEscape = false
        var truncated = false
        for character in line {
            if inEscape {
                out.append(character)
                if character.isLetter { inEscape = false }
                continue
            }
            if character == "\u{1B}" {
                inEscape = true
                out.append(character)
                continue
            }
            if visible >= width {
                truncated = true
                continue
            }
            out.append(character)
            visible += 1
        }
        if truncated && out.contains("\u{1B}") { out += "\u{1B}[0m" }
        return out
    }
}
