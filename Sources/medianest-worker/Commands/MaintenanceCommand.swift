import ArgumentParser
import Foundation
import Logging
import MediaNestDB
import MediaNestQueue
import MediaNestSystemd

extension LoggingFormat: ExpressibleByArgument {}
extension MaintenancePolicy.PartitionAction: ExpressibleByArgument {}

/// `medianest-worker maintenance`: the seed's retention and partitioning, run daily by
/// `medianest-maintenance.timer` on every host; an advisory lock lets one host do it.
struct MaintenanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintenance",
        abstract: "Create audit_logs partitions ahead of time and delete data past its retention.",
        discussion: """
            Creates the current and the next --partition-months-ahead months' audit_logs partitions, detaches and drops partitions older than --audit-retention-months, and deletes in batches of --batch-size rows (one transaction each): audit rows past retention in audit_logs_default, expired cache_entries, expired notifications and read ones older than --notification-retention-days, sessions expired more than --session-retention-days ago, and completed, failed or cancelled processing_jobs older than --job-retention-days whose item has no pending or running job.
            Safe to run on every host at once: a session advisory lock lets one run work; the others print that they skipped and exit 0. Exits 1 when the database fails.
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Report what would be done; change nothing.") var dryRun = false
    @Flag(help: "Print the report as one JSON object on stdout.") var json = false
    @Option(help: "Months after the current one that must have an audit_logs partition.") var partitionMonthsAhead = 3
    @Option(help: "Whole months of audit_logs kept before the current one (default: 84, seven years, the seed's archive retention).")
    var auditRetentionMonths = 84
    @Option(help: "drop or detach an audit_logs partition past retention (detach keeps it as a table to archive).")
    var auditPartitionAction = MaintenancePolicy.PartitionAction.drop
    @Option(help: "Days a read notification is kept after it was read; expired ones go at once.") var notificationRetentionDays = 30
    @Option(help: "Days an expired session is kept.") var sessionRetentionDays = 7
    @Option(help: "Days a completed, failed or cancelled job is kept after it finished.") var jobRetentionDays = 30
    @Option(help: "Rows deleted per transaction.") var batchSize = 1000
    @Option(help: "auto, journald, text or json (auto: journald when stderr is the journal).") var logFormat = LoggingFormat.auto

    func run() throws {
        var policy = MaintenancePolicy()
        policy.partitionMonthsAhead = partitionMonthsAhead
        policy.auditLogRetentionMonths = auditRetentionMonths
        policy.auditPartitionAction = auditPartitionAction
        policy.readNotificationRetentionDays = notificationRetentionDays
        policy.expiredSessionRetentionDays = sessionRetentionDays
        policy.finishedJobRetentionDays = jobRetentionDays
        policy.batchSize = batchSize
        do { try policy.validate() } catch { throw ValidationError(error.message) }

        // Logs go to stderr (stdout carries the report), journald-prefixed under systemd.
        let format = LoggingFormat.detect(requested: logFormat)
        LoggingSystem.bootstrap { label in MediaNestLogHandler(label: label, format: format, level: .info) }

        try operatorAction {
            let report = try Maintenance(policy: policy).run(on: try connection.connect(), dryRun: dryRun)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(MaintenanceCommand.summary(report))
            }
        }
    }

    static func summary(_ report: MaintenanceReport) -> String {
        if report.skipped {
            return "Maintenance skipped: another session (backend pid \(report.lockHolderPID.map(String.init) ?? "unknown")) holds the maintenance lock; it is running there."
        }
        let verb = report.dryRun ? "would be" : "were"
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        var lines = [report.dryRun ? "Maintenance dry run (nothing changed):" : "Maintenance finished in \(String(format: "%.2f", report.durationSeconds)) s:"]
        lines.append("  audit_logs partitions created: \(list(report.partitionsCreated))")
        lines.append("  audit_logs partitions dropped: \(list(report.partitionsDropped))")
        if !report.partitionsDetached.isEmpty { lines.append("  audit_logs partitions detached (kept as tables): \(list(report.partitionsDetached))") }
        if !report.partitionsDeferred.isEmpty { lines.append("  left for the next run (lock busy): \(list(report.partitionsDeferred))") }
        lines.append("  rows that \(verb) deleted: audit_logs_default \(report.auditDefaultRowsDeleted), cache_entries \(report.cacheEntriesDeleted), notifications \(report.notificationsDeleted), user_sessions \(report.userSessionsDeleted), processing_jobs \(report.processingJobsDeleted)")
        if !report.dryRun { lines.append("  in \(report.batches) batch\(report.batches == 1 ? "" : "es")") }
        return lines.joined(separator: "\n")
    }
}
