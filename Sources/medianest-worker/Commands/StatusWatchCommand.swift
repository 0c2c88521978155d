import ArgumentParser
import Dispatch
import Foundation
import MediaNestDB
import MediaNestWorker

/// `status --watch`: redraws ``StatusView`` every interval until Ctrl-C.
///
/// On a terminal it switches to the alternate screen, hides the cursor and redraws in place
/// (cursor home, clear to the end of the screen); SIGINT, SIGTERM and SIGHUP restore the
/// terminal and exit 0. Otherwise each refresh is printed as a plain snapshot after a separator line,
/// so a pipe or a log file gets a readable history.
enum StatusWatch {
    static func run(connection options: ConnectionOptions, interval: Double) throws {
        let interactive = isatty(STDOUT_FILENO) == 1
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }

        let out = FileHandle.standardOutput
        if interactive { out.write(Data("\u{1B}[?1049h\u{1B}[?25l".utf8)) }
        // Whatever happens below, the person gets their terminal back.
        defer { if interactive { out.write(Data("\u{1B}[?25h\u{1B}[?1049l".utf8)) } }

        var connection: PGConnection?
        var lastError = ""
        while true {
            var lines: [String]
            do {
                if connection == nil || connection?.isConnected == false { connection = try options.connect() }
                let snapshot = try WatchSnapshot.load(on: connection!)
                lines = StatusView.render(snapshot, width: interactive ? terminalWidth() : 0, interval: interval, color: interactive)
                lastError = ""
            } catch let error as WorkerStartupError {
                // An unmigrated or missing database never fixes itself: end with run's sentence.
                throw error
            } catch {
                // A database restart must not end the view: say so and try again next time.
                connection = nil
                lastError = "\(error)"
                lines = ["MediaNest queue: cannot read the queue: \(lastError)", "retrying every \(interval)s; Ctrl-C to quit"]
            }
            if interactive {
                out.write(Data(("\u{1B}[H" + lines.joined(separator: "\u{1B}[K\n") + "\u{1B}[K\n\u{1B}[J").utf8))
            } else {
                out.write(Data((lines.joined(separator: "\n") + "\n\n").utf8))
            }
            if stop.wait(timeout: .now() + interval) == .success { break }
        }
    }

    private static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 100
    }
}
