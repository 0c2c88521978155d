import ArgumentParser

/// The `medianest-worker` command line: the daemon and the operator's tools around it.
@main
struct MediaNestWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "medianest-worker",
        abstract: "Turns uploaded photos, videos and songs into thumbnails, previews, renditions, metadata and checksums.",
        discussion: """
            Jobs come from the processing_jobs table of a MediaNest PostgreSQL database. Connect with --database-url or DATABASE_URL (a libpq URI or key=value string); when neither is set, libpq's own defaults apply (PGHOST, PGUSER, ~/.pgpass, service files).
            """,
        version: "0.1.0",
        subcommands: MediaNestWorkerCommand.allSubcommands
    )

    /// Every subcommand, in the order `--help` lists them.
    static let allSubcommands: [any ParsableCommand.Type] = [
        RunCommand.self,
        ImportCommand.self,
        EnqueueCommand.self,
        StatusCommand.self,
        GalleryCommand.self,
        DuplicatesCommand.self,
        RetryCommand.self,
        CancelCommand.self,
        MigrateCommand.self,
        MaintenanceCommand.self,
        ConfigCommand.self,
        ProbeCommand.self,
        ChecksumCommand.self,
        ThumbnailCommand.self,
        TranscodeCommand.self,
        VersionCommand.self,
    ]
}

/// Prints the worker's version.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the worker's version.")
    func run() throws {
        print("medianest-worker 0.1.0")
    }
}
