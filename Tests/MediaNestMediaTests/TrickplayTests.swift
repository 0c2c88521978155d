import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

@Suite("Trickplay sprite sheets", .timeLimit(.minutes(3)))
struct TrickplayTests {
    let itemID = "7c0ffee0-0b7d-4e55-9a7c-1f0e2d3c4b5a"

    private func makeDirectory(_ fixtures: MediaFixtures) throws -> (root: String, directory: DerivedDirectory) {
        let root = try fixtures.makeScratchDirectory("trickplay")
        return (root, try DerivedDirectory.forMediaItem(itemID, derivedRoot: root, subdirectory: "trickplay"))
    }

    private func build(_ fixtures: MediaFixtures, into directory: DerivedDirectory, interval: Duration = .seconds(1), columns: Int, rows: Int,
                       progress: JobProgress? = nil, cancellation: JobCancellation? = nil, statistics: inout VideoDecodeStatistics,
                       afterTile: (Int) -> Void = { _ in }) throws(JobError) -> TrickplayManifest {
        let file = try SafeFile.open(relativePath: MediaFixtures.StillsName.lumaRamp, in: fixtures.root)
        return try Trickplay.build(file: file, limits: .default, into: directory, interval: interval, tileWidth: 320, columns: columns, rows: rows,
                                   quality: 90, progress: progress, cancellation: cancellation, logger: TestLogging.logger(), threads: 1,
                                   statistics: &statistics, afterTile: afterTile)
    }

    private func sheet(_ root: String, _ path: String) throws -> RGBAImage {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: root + "/" + path)))
        return try PacketImageDecoder.decode(bytes, maxLongEdge: 10_000)
    }

    /// The expected grey of the ramp clip at `seconds`: Y = 25·t, limited range, in sRGB.
    private func expectedGrey(_ seconds: Int) -> Double {
        min(255, max(0, (Double(25 * seconds) - 16) * 255 / 219))
    }

    @Test func tilesAreTheFramesAtEachIntervalInOrderOnAsManySheetsAsNeeded() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let progress = JobProgress()
        var statistics = VideoDecodeStatistics()
        let manifest = try build(fixtures, into: directory, columns: 2, rows: 2, progress: progress, statistics: &statistics)

        // 9.5 s at one tile per second: tiles for 0…9 s, 4 + 4 + 2 on three sheets.
        #expect(manifest.count == 10)
        #expect(manifest.tileWidth == 64 && manifest.tileHeight == 36)
        #expect(manifest.columns == 2 && manifest.rows == 2 && manifest.interval == 1)
        #expect(manifest.sheets == (0..<3).map { "7c/\(itemID)/trickplay/sheet-00\($0).jpg" })
        #expect(directory.fileNames() == ["sheet-000.jpg", "sheet-001.jpg", "sheet-002.jpg"])
        let sheets = try manifest.sheets.map { try sheet(root, $0) }
        #expect(sheets.map(\.width) == [128, 128, 128])
        #expect(sheets.map(\.height) == [72, 72, 36])

        var previous = -1.0
        for index in 0..<manifest.count {
            let slot = index % 4
            let x = (slot % 2) * 64, y = (slot / 2) * 36
            let stats = PictureStats(sheets[index / 4], x: (x + 8)..<(x + 56), y: (y + 6)..<(y + 30))
            #expect(abs(stats.luma - expectedGrey(index)) < 12, "tile \(index): \(stats), expected \(expectedGrey(index))")
            #expect(stats.luma > previous, "tile \(index) is brighter than tile \(index - 1)")
            previous = stats.luma
        }
        // One keyframe decode per tile, never the frames in between.
        #expect(statistics.framesDecoded == 10, "\(statistics)")
        #expect(progress.current.snapshot?.stage == "trickplay" && progress.current.snapshot?.fraction == 1)
    }

    @Test func theDefaultLayoutPutsShortVideosOnOneSheetAndTheManifestIsJSON() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = try SafeFile.open(relativePath: MediaFixtures.StillsName.lumaRamp, in: fixtures.root)
        let manifest = try Trickplay.build(file: file, limits: .default, into: directory, interval: .seconds(2), progress: nil,
                                           cancellation: nil, logger: TestLogging.logger())
        // 9.5 s every 2 s: 0, 2, 4, 6, 8 → five tiles in the first row of a 10×10 sheet.
        #expect(manifest.count == 5 && manifest.columns == 10 && manifest.rows == 10)
        let image = try sheet(root, try #require(manifest.sheets.first))
        #expect(image.width == 640 && image.height == 36)
        #expect(PictureStats(image, x: 330..<380, y: 4..<32).luma < 8, "unused tiles stay black")

        let json = manifest.json
        #expect(json["tile_width"]?.intValue == 64 && json["tile_height"]?.intValue == 36)
        #expect(json["count"]?.intValue == 5 && json["interval"]?.doubleValue == 2)
        #expect(json["sheets"]?.arrayValue?.count == 1)
        let decoded = try JSONDecoder().decode(TrickplayManifest.self, from: Data(json.jsonText.utf8))
        #expect(decoded == manifest)
    }

    @Test func aCancelledRebuildLeavesNoTemporaryFileAndKeepsTheEarlierSheets() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var statistics = VideoDecodeStatistics()
        let first = try build(fixtures, into: directory, columns: 2, rows: 2, statistics: &statistics)
        let before = try first.sheets.map { try Data(contentsOf: URL(fileURLWithPath: root + "/" + $0)) }

        // The rebuild (another layout, so different bytes) is stopped after its sixth tile: by
        // then it has written its first sheet to a temporary file and started a second.
        let cancellation = JobCancellation()
        var sawTemporary = false
        let error = jobError { () throws(JobError) in
            _ = try build(fixtures, into: directory, columns: 5, rows: 1, cancellation: cancellation, statistics: &statistics) { tile in
                if tile == 5 {
                    sawTemporary = directory.fileNames().contains { $0.hasPrefix(".sheet-000.jpg.") && $0.hasSuffix(".tmp") }
                    cancellation.stop(.cancelled)
                }
            }
        }
        #expect(error?.code == .cancelled)
        #expect(sawTemporary, "the first sheet was pending when the stop came")
        #expect(directory.fileNames() == ["sheet-000.jpg", "sheet-001.jpg", "sheet-002.jpg"])
        let after = try first.sheets.map { try Data(contentsOf: URL(fileURLWithPath: root + "/" + $0)) }
        #expect(after == before)
    }

    @Test func aRebuildWithFewerSheetsRemovesTheOnesItNoLongerMakes() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var statistics = VideoDecodeStatistics()
        _ = try build(fixtures, into: directory, columns: 2, rows: 2, statistics: &statistics)
        #expect(directory.fileNames().count == 3)
        let manifest = try build(fixtures, into: directory, columns: 10, rows: 10, statistics: &statistics)
        #expect(manifest.sheets.count == 1)
        #expect(directory.fileNames() == ["sheet-000.jpg"])
        #expect(try sheet(root, manifest.sheets[0]).width == 640)
    }

    @Test func aRotatedVideoGetsPortraitTiles() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = try SafeFile.open(relativePath: MediaFixtures.Name.rotatedMP4, in: fixtures.root)
        let manifest = try Trickplay.build(file: file, limits: .default, into: directory, interval: .seconds(1), progress: nil,
                                           cancellation: nil, logger: TestLogging.logger())
        #expect(manifest.tileWidth == 32 && manifest.tileHeight == 64 && manifest.count == 1)
    }

    @Test func aBadLayoutIsRefused() throws {
        let fixtures = try MediaFixtures.loadStills()
        let (root, directory) = try makeDirectory(fixtures)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = try SafeFile.open(relativePath: MediaFixtures.StillsName.lumaRamp, in: fixtures.root)
        let error = jobError { () throws(JobError) in
            _ = try Trickplay.build(file: file, limits: .default, into: directory, columns: 0, progress: nil, cancellation: nil, logger: TestLogging.logger())
        }
        #expect(error?.code == .invalidInput)
        #expect(directory.fileNames().isEmpty)
    }
}

@Suite("Audio cover art")
struct AudioArtworkTests {
    @Test(arguments: [MediaFixtures.StillsName.coverMP3, MediaFixtures.StillsName.coverM4A, MediaFixtures.StillsName.coverFLAC,
                      MediaFixtures.StillsName.coverOpus])
    func embeddedCoverArtIsDecodedWithItsColours(name: String) throws {
        let fixtures = try MediaFixtures.loadStills()
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        let image = try #require(try AudioArtwork.coverArt(file: file, limits: .default, maxLongEdge: 320))
        #expect(image.width == 64 && image.height == 64)
        #expect(ImageEncoderTests.close(image.pixel(x: 32, y: 12), (255, 0, 0)), "\(image.pixel(x: 32, y: 12))")
        #expect(ImageEncoderTests.close(image.pixel(x: 32, y: 52), (0, 0, 255)), "\(image.pixel(x: 32, y: 52))")
    }

    @Test func coverArtIsFittedToTheRequestedSize() throws {
        let fixtures = try MediaFixtures.loadStills()
        let file = try SafeFile.open(relativePath: MediaFixtures.StillsName.coverMP3, in: fixtures.root)
        let image = try #require(try AudioArtwork.coverArt(file: file, limits: .default, maxLongEdge: 16))
        #expect(image.width == 16 && image.height == 16)
    }

    @Test(arguments: [MediaFixtures.Name.flac, MediaFixtures.Name.plainMP4])
    func filesWithoutCoverArtGiveNil(name: String) throws {
        let fixtures = try MediaFixtures.load()
        let file = try SafeFile.open(relativePath: name, in: fixtures.root)
        #expect(try AudioArtwork.coverArt(file: file, limits: .default, maxLongEdge: 320) == nil)
    }

    @Test func anOversizedCoverIsRefusedByItsHeader() throws {
        let fixtures = try MediaFixtures.loadStills()
        let file = try SafeFile.open(relativePath: MediaFixtures.StillsName.coverFLAC, in: fixtures.root)
        let error = jobError { () throws(JobError) in _ = try AudioArtwork.coverArt(file: file, limits: MediaLimits(maxPixels: 1000), maxLongEdge: 320) }
        #expect(error?.code == .pixelLimit)
    }
}
