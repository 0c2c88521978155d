import Foundation
import Logging
import MediaNestCore
import MediaNestMedia
import MediaNestTestSupport
import MediaNestWorker
import Synchronization
import Testing

/// Near duplicates on photos made at test time with ffmpeg: copies group with their original at
/// ``DuplicateFinder/defaultDistance``; other photos of the same scene usually do not; different
/// scenes never do. Each picture goes the thumbnail job's way: decoded by ``StillRendering``
/// (at the preview's size), fitted to the 320 px thumbnail, hashed by ``PerceptualHash``.
///
/// `MEDIANEST_MEASURE=1` prints the distance of every pair (docs/DUPLICATES.md has a run).
@Suite("near duplicates on generated photos", .timeLimit(.minutes(6)))
struct NearDuplicateCorpusTests {
    /// Scenes: a "world" picture larger than the photo, so that other framings exist. Blurred and
    /// noisy like a sensor's output. Not a field of random noise (ffmpeg's `life` at frame 0): it
    /// has no coarse layout, so its hash is decided by faint low frequencies of the noise, and a
    /// 5 % crop moved it 14 bits (docs/DUPLICATES.md, "Where it is weak").
    static let scenes: [(name: String, source: String)] = [
        ("testsrc2", "testsrc2=size=800x600"),
        ("mandelbrot", "mandelbrot=size=800x600:start_x=-0.7453:start_y=0.1127:start_scale=0.02:end_scale=0.02:maxiter=400"),
        ("mandelbrot-b", "mandelbrot=size=800x600:start_x=-1.25066:start_y=0.02012:start_scale=0.0006:end_scale=0.0006:maxiter=400"),
        ("colorchart", "colorchart=patch_size=100x100,scale=800:600"),
        ("gradients", "gradients=size=800x600:seed=9:nb_colors=5"),
    ]
    /// The photo: a 600 × 450 window of the world at (100, 75).
    static let photo = "crop=600:450:100:75"
    /// Copies of the photo a library receives again: filter, JPEG quality (2 best, 31 worst).
    static let copies: [(name: String, filter: String, quality: Int)] = [
        ("resized to half", "scale=300:225", 2),
        ("recompressed at q25", "null", 25),
        ("cropped 5 % (centred)", "crop=iw*0.95:ih*0.95", 2),
        ("resized and recompressed", "scale=300:225", 20),
        ("brightened", "eq=brightness=0.06", 2),
    ]
    /// Other photos of the same scene, from the world: another framing or a changed subject.
    static let others: [(name: String, filter: String)] = [
        ("framed 5 % to the side", "crop=600:450:130:97"),
        ("framed 10 % to the side", "crop=600:450:160:120"),
        ("zoomed in 20 %", "crop=500:375:150:112,scale=600:450"),
        ("a person walked in", "crop=600:450:100:75,drawbox=x=350:y=125:w=130:h=170:color=0xb03020@1:t=fill"),
    ]

    struct Hashed {
        var scene: String
        var original: UInt64
        var copies: [(String, UInt64)] = []
        var others: [(String, UInt64)] = []
    }

    static func ffmpeg(_ arguments: [String]) throws {
        let result = try ProcessRunner.run("/usr/bin/ffmpeg", ["-v", "error", "-y"] + arguments)
        guard result.status == 0 else { throw FixtureError("ffmpeg \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    /// The thumbnail job's picture of a file, hashed.
    static func hash(_ name: String, in directory: String) throws -> UInt64 {
        var logger = Logger(label: "near-duplicates")
        logger.logLevel = .critical
        let file = try SafeFile.open(relativePath: name, in: directory)
        let still = try StillRendering.decode(file: file, declaredMimeType: "image/jpeg", fileName: name, maxLongEdge: 1440, limits: .default,
                                              decoderThreads: 1, cancellation: nil, logger: logger)
        return PerceptualHash.compute(try still.image.fitted(maxLongEdge: 320))
    }

    static func makeScene(_ index: Int, in directory: String) throws -> Hashed {
        let (name, source) = scenes[index]
        let world = "\(name)-world.png", original = "\(name).jpg"
        try ffmpeg(["-f", "lavfi", "-i", source, "-frames:v", "1", "-vf", "gblur=sigma=1.2,noise=alls=6:allf=u", "\(directory)/\(world)"])
        try ffmpeg(["-i", "\(directory)/\(world)", "-vf", photo, "-q:v", "2", "\(directory)/\(original)"])
        var hashed = Hashed(scene: name, original: try hash(original, in: directory))
        for (number, copy) in copies.enumerated() {
            let file = "\(name)-copy\(number).jpg"
            try ffmpeg(["-i", "\(directory)/\(original)", "-vf", copy.filter, "-q:v", "\(copy.quality)", "\(directory)/\(file)"])
            hashed.copies.append((copy.name, try hash(file, in: directory)))
        }
        for (number, other) in others.enumerated() {
            let file = "\(name)-other\(number).jpg"
            try ffmpeg(["-i", "\(directory)/\(world)", "-vf", other.filter, "-q:v", "2", "\(directory)/\(file)"])
            hashed.others.append((other.name, try hash(file, in: directory)))
        }
        return hashed
    }

    @Test func copiesGroupOtherFramingsUsuallyDoNotOtherScenesNever() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("medianest-near-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let results = Mutex<[Int: Result<Hashed, any Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: Self.scenes.count) { index in
            let result = Result { try Self.makeScene(index, in: directory) }
            results.withLock { $0[index] = result }
        }
        let scenes = try (0..<Self.scenes.count).map { index in try results.withLock { $0[index]! }.get() }
        let limit = DuplicateFinder.defaultDistance
        let measuring = ProcessInfo.processInfo.environment["MEDIANEST_MEASURE"] != nil

        var othersApart = 0, othersTotal = 0
        for scene in scenes {
            for (name, hash) in scene.copies {
                let distance = PerceptualHash.distance(scene.original, hash)
                if measuring { print("MEASURE copy\t\(name)\t\(scene.scene)\t\(distance)") }
                #expect(distance <= limit, "\(scene.scene), \(name): \(distance) bits")
            }
            for (name, hash) in scene.others {
                let distance = PerceptualHash.distance(scene.original, hash)
                if measuring { print("MEASURE same scene\t\(name)\t\(scene.scene)\t\(distance)") }
                othersTotal += 1
                if distance > limit { othersApart += 1 }
            }
            // The finder, on the original and its copies only: one group of all of them.
            let group = [scene.original] + scene.copies.map(\.1)
            #expect(DuplicateFinder.similarGroups(hashes: group, distance: limit) == [Array(group.indices)], "\(scene.scene)")
        }
        // "Usually": at least three in four other photos of the scene stay apart.
        #expect(othersApart * 4 >= othersTotal * 3, "\(othersApart) of \(othersTotal) other photos of a scene apart")
        for (a, first) in scenes.enumerated() {
            for second in scenes[(a + 1)...] {
                let distance = PerceptualHash.distance(first.original, second.original)
                if measuring { print("MEASURE other scene\t\(first.scene) / \(second.scene)\t\t\(distance)") }
                #expect(distance > limit, "\(first.scene) and \(second.scene): \(distance) bits")
            }
        }
    }
}
