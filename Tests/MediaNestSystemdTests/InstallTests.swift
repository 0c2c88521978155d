import Foundation
import MediaNestTestSupport
import Testing

/// `make install-files` into a temporary DESTDIR, then `systemd-analyze verify --root=DESTDIR`.
///
/// verify needs no running systemd (systemd 252 on Debian 12): with `--root` it loads units from
/// the root's search path (`/usr/local/lib/systemd/system` is on it) and checks that each
/// ExecStart binary exists inside the root, so the installed binary must be there. It also
/// follows dependencies (`multi-user.target`, `network-online.target`, `sysinit.target`), so
/// the host's own `/usr/lib/systemd/system` is copied into the root first. Unknown keys and bad
/// values are only warnings (exit 0), so the test also requires verify to print nothing.
@Suite("make install and the systemd units", .enabled(if: hasWorkerBinary, "needs the medianest-worker binary (scripts/test.sh builds it)"))
struct InstallTests {
    static let units = [
        "medianest-worker@.service", "medianest-worker.service", "medianest-migrate.service",
        "medianest-maintenance.service", "medianest-maintenance.timer", "medianest-backup.service", "medianest-backup.timer",
    ]

    func install(into destdir: String, prefix: String = "/usr/local") throws -> ToolOutput {
        try runTool("make", ["--no-print-directory", "-C", repositoryRoot.path, "install-files",
                             "DESTDIR=\(destdir)", "PREFIX=\(prefix)", "BINARY=\(workerBinary)"])
    }

    /// Lines of a unit file that are not comments or blank.
    func directives(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
            .filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }

    @Test func installPutsEverythingWhereTheUnitsExpectIt() throws {
        let destdir = try makeTemporaryDirectory("install")
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        let first = try install(into: destdir)
        try #require(first.status == 0, "\(first.stderr)")

        let fm = FileManager.default
        #expect(fm.isExecutableFile(atPath: destdir + "/usr/local/bin/medianest-worker"))
        #expect(fm.isExecutableFile(atPath: destdir + "/usr/local/libexec/medianest-backup"))
        #expect(fm.fileExists(atPath: destdir + "/usr/local/share/medianest-worker/migrations/0001_foundation.up.sql"))
        #expect(fm.fileExists(atPath: destdir + "/usr/local/share/doc/medianest-worker/OPERATIONS.md"))
        let installedUnits = try fm.contentsOfDirectory(atPath: destdir + "/usr/local/lib/systemd/system").sorted()
        #expect(installedUnits == InstallTests.units.sorted())
        let env = destdir + "/etc/medianest/worker.env"
        #expect(fm.fileExists(atPath: env))
        #expect(fm.fileExists(atPath: env + ".example"))
        #expect((try fm.attributesOfItem(atPath: env)[.posixPermissions] as? Int) == 0o640, "it may hold a password")
        // The configuration file the units point MEDIANEST_CONFIG at, and the binary reads it.
        let yaml = destdir + "/etc/medianest/worker.yaml"
        #expect(fm.fileExists(atPath: yaml + ".example"))
        let shown = try runTool(destdir + "/usr/local/bin/medianest-worker", ["config", "show", "--config", yaml], removing: [], in: destdir)
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("storage.root"), "\(shown.stdout)")

        // The installed binary finds the installed migrations on its own (../share/...).
        let status = try runTool(destdir + "/usr/local/bin/medianest-worker", ["migrate", "status", "--database-url", "host=/nonexistent"],
                                 removing: ["MEDIANEST_MIGRATIONS_DIR"], in: destdir)
        #expect(status.status != 0, "the database does not exist")
        #expect(!status.stderr.contains("no migrations directory"), "\(status.stderr)")

        // A second install keeps the operator's configuration.
        try "DATABASE_URL=postgresql://mine\n".write(toFile: env, atomically: true, encoding: .utf8)
        let second = try install(into: destdir)
        try #require(second.status == 0, "\(second.stderr)")
        #expect(try String(contentsOfFile: env, encoding: .utf8) == "DATABASE_URL=postgresql://mine\n")
        #expect(second.stdout.contains("kept the existing"))
    }

    @Test func unitsArePointedAtThePrefix() throws {
        let destdir = try makeTemporaryDirectory("prefix")
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        let result = try install(into: destdir, prefix: "/opt/medianest")
        try #require(result.status == 0, "\(result.stderr)")
        let unitDirectory = destdir + "/opt/medianest/lib/systemd/system"
        let worker = try directives(unitDirectory + "/medianest-worker@.service")
        #expect(worker.contains("ExecStart=/opt/medianest/bin/medianest-worker run --instance %i"))
        #expect(worker.contains("EnvironmentFile=/etc/medianest/worker.env"))
        #expect(try directives(unitDirectory + "/medianest-backup.service").contains("ExecStart=/opt/medianest/libexec/medianest-backup"))
        let all = try InstallTests.units.flatMap { try directives(unitDirectory + "/" + $0) }
        #expect(!all.contains { $0.contains("/usr/local") }, "every path follows PREFIX")
        #expect(FileManager.default.isExecutableFile(atPath: destdir + "/opt/medianest/bin/medianest-worker"))
    }

    @Test func workerUnitsAreNotifyHardenedAndAllowTheEncoders() throws {
        for name in ["medianest-worker@.service", "medianest-worker.service"] {
            let lines = try directives(repositoryRoot.appendingPathComponent("systemd/" + name).path)
            for required in ["Type=notify", "NotifyAccess=main", "Restart=on-failure", "User=medianest", "ProtectSystem=strict", "ProtectHome=yes",
                             "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                             "RestrictNamespaces=yes", "LockPersonality=yes", "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
                             "RestartPreventExitStatus=78"] {
                #expect(lines.contains(required), "\(name) lacks \(required)")
            }
            for prefix in ["WatchdogSec=", "StateDirectory=", "CacheDirectory=", "ReadWritePaths=", "MemoryHigh=", "MemoryMax=", "Nice=", "RestrictAddressFamilies="] {
                #expect(lines.contains { $0.hasPrefix(prefix) }, "\(name) lacks \(prefix)")
            }
            #expect(!lines.contains { $0.hasPrefix("MemoryDenyWriteExecute") }, "x264/x265 need W+X memory")
            #expect(!lines.contains { $0.contains("~@resources") })
        }
    }

    @Test func systemdAnalyzeVerifyAcceptsEveryInstalledUnit() throws {
        let analyze = try which("systemd-analyze")
        let destdir = try makeTemporaryDirectory("verify")
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        let installed = try install(into: destdir)
        try #require(installed.status == 0, "\(installed.stderr)")
        // The targets the units refer to.
        try FileManager.default.createDirectory(atPath: destdir + "/usr/lib/systemd", withIntermediateDirectories: true)
        let copied = try runTool("cp", ["-a", "/usr/lib/systemd/system", destdir + "/usr/lib/systemd/"])
        try #require(copied.status == 0, "\(copied.stderr)")

        let names = InstallTests.units.map { $0.replacingOccurrences(of: "@.service", with: "@1.service") }
        let verify = try runTool(analyze, ["verify", "--man=no", "--root=\(destdir)"] + names)
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "verify warns about nothing:\n\(verify.stderr)")

        // The check has teeth: a unit whose binary is missing, or with an unknown key, is reported.
        try FileManager.default.removeItem(atPath: destdir + "/usr/local/libexec/medianest-backup")
        let unit = destdir + "/usr/local/lib/systemd/system/medianest-maintenance.service"
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        try text.replacingOccurrences(of: "Nice=10", with: "Nice=10\nProtectEverything=yes").write(toFile: unit, atomically: true, encoding: .utf8)
        let broken = try runTool(analyze, ["verify", "--man=no", "--root=\(destdir)", "medianest-backup.service", "medianest-maintenance.service"])
        #expect(broken.status != 0)
        #expect(broken.stderr.contains("medianest-backup is not executable"), "\(broken.stderr)")
        #expect(broken.stderr.contains("ProtectEverything"), "\(broken.stderr)")
    }
}
