import CFFmpeg
import Foundation
public import Logging
public import MediaNestCore

/// Where a trickplay build put its sprite sheets and how they are laid out: what a player needs
/// to show scrub previews. Stored as `processing_info.trickplay`.
///
/// Tile `i` (the frame for time `i × interval`) is on sheet `i / (columns × rows)`, at column
/// `(i % (columns × rows)) % columns` and row `(i % (columns × rows)) / columns`, its top-left
/// corner at (`column × tileWidth`, `row × tileHeight`). Every sheet is `columns × tileWidth`
/// wide; the last one is only as tall as the rows it uses.
public struct TrickplayManifest: Codable, Sendable, Hashable {
    /// Seconds between two tiles.
    public var interval: Double
    /// Width of one tile in pixels.
    public var tileWidth: Int
    /// Height of one tile in pixels.
    public var tileHeight: Int
    /// Tiles per sheet row.
    public var columns: Int
    /// Tile rows per full sheet.
    public var rows: Int
    /// Number of tiles over all sheets.
    public var count: Int
    /// The sheets in order, relative to the derived root (`3f/<id>/trickplay/sheet-000.jpg`).
    public var sheets: [String]
    /// The sheets' image format (always `jpeg`).
    public var format: String

    enum CodingKeys: String, CodingKey {
        case interval, columns, rows, count, sheets, format
        case tileWidth = "tile_width"
        case tileHeight = "tile_height"
    }

    /// Creates a manifest.
    public init(interval: Double, tileWidth: Int, tileHeight: Int, columns: Int, rows: Int, count: Int, sheets: [String], format: String = "jpeg") {
        self.interval = interval
        self.tileWidth = tileWidth
        self.tileHeight = tileHeight
        self.columns = columns
        self.rows = rows
        self.count = count
        self.sheets = sheets
        self.format = format
    }

    /// The manifest as the JSON object stored in `processing_info.trickplay`.
    public var json: JSONValue {
        .object([
            "interval": .double(interval),
            "tile_width": .int(Int64(tileWidth)),
            "tile_height": .int(Int64(tileHeight)),
            "columns": .int(Int64(columns)),
            "rows": .int(Int64(rows)),
            "count": .int(Int64(count)),
            "sheets": .array(sheets.map { .string($0) }),
            "format": .string(format),
        ])
    }
}

/// Builds trickplay sprite sheets: one frame every `interval` seconds, each from the keyframe at or
/// before its time (a seek and one intra decode per tile, never a decode of the whole video),
/// tiled `columns × rows` into JPEG sheets `sheet-000.jpg`, `sheet-001.jpg`, ...
///
/// The sheets of a run become visible together at the end: each is written to a temporary file as
/// soon as it is full, and all are renamed into place only once every tile is done. A failed or
/// cancelled run therefore leaves no temporary file and does not touch the sheets of an earlier
/// successful run; a successful run replaces them, and deletes sheets it no longer makes.
public enum Trickplay {
    /// The name of sheet `index`.
    public static func sheetName(_ index: Int) -> String { String(format: "sheet-%03d.jpg", index) }

    /// Builds the sheets of the video in `file` into `directory`.
    /// - Parameters:
    ///   - file: The safely opened video.
    ///   - limits: Pixel, duration and time limits.
    ///   - directory: Where the sheets go (the item's `trickplay` directory).
    ///   - interval: Time between tiles (default 10 s).
    ///   - tileWidth: Tile width in pixels (default 320); never more than the video's display
    ///     width, so small videos are not upscaled. The height follows the display aspect.
    ///   - columns: Tiles per row (default 10).
    ///   - rows: Rows per sheet (default 10).
    ///   - quality: JPEG quality, 1–100 (default 80).
    ///   - progress: Receives stage `trickplay` with the fraction of tiles done.
    ///   - cancellation: The job's token; checked between tiles and by FFmpeg, so a stop takes
    ///     effect within one tile.
    ///   - logger: The job's logger; FFmpeg's lines go to it too.
    ///   - threads: Decoder threads for this job.
    /// - Returns: The manifest; sheet paths are relative to the derived root.
    /// - Throws: ``JobError`` `invalid_input` (bad layout), `unsupported_format`, `corrupt_media`
    ///   (no duration, no frame decodes), `pixel_limit`, `duration_limit`, `io_error`,
    ///   `disk_full`, or a stop's code.
    public static func build(file: SafeFile, limits: MediaLimits, into directory: DerivedDirectory, interval: Duration = .seconds(10),
                             tileWidth: Int = 320, columns: Int = 10, rows: Int = 10, quality: Int = 80, progress: JobProgress?,
                             cancellation: JobCancellation?, logger: Logger, threads: Int = 1) throws(JobError) -> TrickplayManifest {
        var statistics = VideoDecodeStatistics()
        return try build(file: file, limits: limits, into: directory, interval: interval, tileWidth: tileWidth, columns: columns, rows: rows,
                         quality: quality, progress: progress, cancellation: cancellation, logger: logger, threads: threads,
                         statistics: &statistics, afterTile: { _ in })
    }

    /// The build, with counters and a hook run after each tile (tests stop a build at a chosen tile).
    static func build(file: SafeFile, limits: MediaLimits, into directory: DerivedDirectory, interval: Duration, tileWidth: Int, columns: Int,
                      rows: Int, quality: Int, progress: JobProgress?, cancellation: JobCancellation?, logger: Logger, threads: Int,
                      statistics: inout VideoDecodeStatistics, afterTile: (Int) -> Void) throws(JobError) -> TrickplayManifest {
        let seconds = interval.seconds
        guard seconds >= 0.1, (1...4096).contains(tileWidth), (1...100).contains(columns), (1...100).contains(rows) else {
            throw JobError(.invalidInput, "The trickplay layout is invalid: interval \(seconds) s (at least 0.1 s), tile width \(tileWidth) (1–4096), \(columns)×\(rows) tiles (1–100 each).", retryable: false)
        }
        return try FFmpegLog.withJobLogger(logger) { () throws(JobError) -> TrickplayManifest in
            let source = try VideoSource(file: file, limits: limits, cancellation: cancellation, threads: threads, outputLongEdge: tileWidth)
            defer { statistics = source.statistics }
            guard let duration = source.duration, duration > 0 else {
                throw JobError(.corruptMedia, "The video \(file.relativePath) has no known duration, so trickplay frames cannot be placed.")
            }
            let display = source.displaySize
            let width = min(tileWidth, display.width)
            let height = max(1, Int((Double(width) * Double(display.height) / Double(display.width)).rounded()))
            let count = max(1, Int((duration / seconds).rounded(.up)))
            let perSheet = columns * rows
            let sheetCount = (count + perSheet - 1) / perSheet
            logger.debug("building trickplay", metadata: [
                "tiles": "\(count)", "sheets": "\(sheetCount)", "tile": "\(width)x\(height)", "duration": "\(duration)",
            ])

            var pending: [PendingOutput] = []
            var sheet: RGBAImage?
            var previous: (timestamp: Int64, tile: RGBAImage)?
            for index in 0..<count {
                try source.checkStop()
                let tile = try self.tile(at: Double(index) * seconds, source: source, width: width, height: height, previous: &previous)
                let slot = index % perSheet
                if slot == 0 {
                    let tilesHere = min(perSheet, count - index)
                    let usedRows = (tilesHere + columns - 1) / columns
                    sheet = RGBAImage(width: width * columns, height: height * usedRows)
                }
                paste(tile, into: &sheet!, x: (slot % columns) * width, y: (slot / columns) * height)
                if slot == perSheet - 1 || index == count - 1 {
                    let bytes = try ImageEncoder.encode(sheet!, as: .jpeg, quality: quality)
                    sheet = nil
                    let output = try directory.createOutput(named: sheetName(index / perSheet))
                    pending.append(output)
                    try output.write(bytes)
                }
                progress?.report(stage: "trickplay", fraction: Double(index + 1) / Double(count),
                                 details: ["tiles_done": .int(Int64(index + 1)), "tiles": .int(Int64(count))])
                afterTile(index)
            }
            try source.checkStop()
            for output in pending { try output.commit() }
            // Sheets of an earlier, longer run that this run does not replace.
            let made = Set(pending.map(\.name))
            for name in directory.fileNames() where name.hasPrefix("sheet-") && name.hasSuffix(".jpg") && !made.contains(name) {
                directory.remove(named: name)
            }
            return TrickplayManifest(interval: seconds, tileWidth: width, tileHeight: height, columns: columns, rows: rows,
                                     count: count, sheets: pending.map(\.relativePath))
        }
    }

    /// The tile for `time`: the keyframe at or before it; the previous tile again when the seek
    /// lands on the same keyframe (keyframes sparser than the interval); black when nothing decodes.
    private static func tile(at time: Double, source: VideoSource, width: Int, height: Int,
                             previous: inout (timestamp: Int64, tile: RGBAImage)?) throws(JobError) -> RGBAImage {
        try source.seek(to: time)
        guard case .packet(_, let timestamp) = try source.readPacket(budget: VideoStills.packetBudgetPerCandidate) else {
            return previous?.tile ?? RGBAImage(width: width, height: height)
        }
        if let previous, previous.timestamp == timestamp, timestamp != Int64.min { return previous.tile }
        guard let frame = try source.decodeKeyframe() else {
            return previous?.tile ?? RGBAImage(width: width, height: height)
        }
        let tile = try VideoFrameRenderer.render(frame.pointer, width: width, height: height, source: source)
        previous = (timestamp, tile)
        return tile
    }

    /// Copies `tile` into `sheet` with its top-left corner at (`x`, `y`).
    private static func paste(_ tile: RGBAImage, into sheet: inout RGBAImage, x: Int, y: Int) {
        let rowBytes = tile.width * 4
        let sheetWidth = sheet.width
        tile.pixels.withUnsafeBytes { src in
            sheet.pixels.withUnsafeMutableBytes { dst in
                for row in 0..<tile.height {
                    let from = src.baseAddress! + row * rowBytes
                    let to = dst.baseAddress! + ((y + row) * sheetWidth + x) * 4
                    to.copyMemory(from: from, byteCount: rowBytes)
                }
            }
        }
    }
}
