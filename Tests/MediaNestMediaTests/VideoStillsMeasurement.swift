import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import Testing

/// Not a test: prints how long a 1080p H.264 video thumbnail takes in-process, for comparison with
/// `ffmpeg -ss T -i … -frames:v 1 -vf scale=320:-2 out.webp` (time that with hyperfine; the
/// command is printed). Run with `MEDIANEST_MEASURE=1 swift test -c release --filter VideoStillsMeasurement`.
@Suite("VideoStillsMeasurement", .enabled(if: ProcessInfo.processInfo.environment["MEDIANEST_MEASURE"] != nil))
struct VideoStillsMeasurement {
    @Test func videoThumbnailMillisecondsPerFrame() throws {
        let fixtures = try MediaFixtures.load()
        let directory = try fixtures.makeScratchDirectory("measure")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let name = "1080p.mp4"
        // 60 s of 1080p30 H.264 with 2 s GOPs, as a phone or camera writes it.
        let generated = try ProcessRunner.run("/usr/bin/ffmpeg", [
            "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=60",
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p", directory + "/" + name,
        ])
        #expect(generated.status == 0, "\(generated.stderr)")
        let runs = Int(ProcessInfo.processInfo.environment["MEDIANEST_MEASURE_RUNS"] ?? "") ?? 30
        let threads = Int(ProcessInfo.processInfo.environment["MEDIANEST_MEASURE_THREADS"] ?? "") ?? 1
        var statistics = VideoDecodeStatistics()
        var bytes = 0
        let clock = ContinuousClock()
        var total = Duration.zero
        var cpuNanoseconds = 0
        // Under load (other builds on the same cores) wall time overstates the cost; the thread's
        // CPU time does not (one decoder thread, so all the work is on this thread).
        func threadCPU() -> Int {
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            return now.tv_sec * 1_000_000_000 + now.tv_nsec
        }
        // Round 0 warms the page cache and FFmpeg's tables; it is not counted.
        for round in 0...runs {
            let start = clock.now
            let cpuStart = threadCPU()
            let file = try SafeFile.open(relativePath: name, in: directory)
            let image = try VideoStills.representativeFrame(file: file, limits: .default, maxLongEdge: 320, cancellation: nil,
                                                            logger: TestLogging.logger("medianest.tests.measure"), threads: threads, statistics: &statistics)
            bytes = try ImageEncoder.encode(image, as: .webp, quality: 80).count
            if round > 0 {
                total += clock.now - start
                cpuNanoseconds += threadCPU() - cpuStart
            }
        }
        let perFrame = (Double(total.components.seconds) * 1000 + Double(total.components.attoseconds) / 1e15) / Double(runs)
        print(String(format: "MEASURE video thumbnail 1080p H.264 -> 320 px WebP: %.2f ms per frame wall, %.2f ms CPU (threads %d, %d bytes, last run %@)",
                     perFrame, Double(cpuNanoseconds) / 1e6 / Double(runs), threads, bytes, "\(statistics)"))
        print("MEASURE peer (same clip, by hand): ffmpeg -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=60 -c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p 1080p.mp4; hyperfine -N --warmup 2 'ffmpeg -v error -y -ss 6 -i 1080p.mp4 -frames:v 1 -vf scale=320:-2 peer.webp'")
    }
}
