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
    ///   (no frame decodes; a video of unknown duration is read forward instead), `pixel_limit`, `duration_limit`, `io_error`,
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
            let display = source.displaySize
            let width = min(tileWidth, display.width)
            let height = max(1, Int((Double(width) * Double(display.height) / Double(display.width)).rounded()))
            var sheets = SheetWriter(directory: directory, columns: columns, rows: rows, tileWidth: width, tileHeight: height, quality: quality)
            if let duration = source.duration, duration > 0 {
                let count = max(1, Int((duration / seconds).rounded(.up)))
                logger.debug("building trickplay", metadata: [
                    "tiles": "\(count)", "tile": "\(width)x\(height)", "duration": "\(duration)",
                ])
                var previous: (timestamp: Int64, tile: RGBAImage)?
                for index in 0..<count {
                    try source.checkStop()
                    let tile = try self.tile(at: Double(index) * seconds, source: source, width: width, height: height, previous: &previous)
                    try sheets.add(tile)
                    progress?.report(stage: "trickplay", fraction: Double(index + 1) / Double(count),
                                     details: ["tiles_done": .int(Int64(index + 1)), "tiles": .int(Int64(count))])
                    afterTile(index)
                }
            } else {
                // No duration in the container (a Matroska or MPEG stream written to a pipe, a
                // raw stream): the tiles cannot be placed by seeking, so the keyframes are read
                // in order from the start, and each tile time gets the keyframe at or before it.
                logger.debug("building trickplay by reading forward: the duration is unknown", metadata: ["tile": "\(width)x\(height)"])
                try forwardTiles(source: source, interval: seconds, limits: limits, width: width, height: height,
                                 progress: progress) { (tile, index) throws(JobError) in
                    try sheets.add(tile)
                    afterTile(index)
                }
            }
            let pending = try sheets.finish()
            guard !pending.isEmpty else {
                throw JobError(.corruptMedia, "No picture could be decoded from the video of \(file.relativePath), so it has no trickplay.")
            }
            let count = sheets.tilesAdded
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

    /// The tiles of a video of unknown duration, in order: the keyframes are read forward from
    /// the start (one intra decode each, non-key packets are skipped unread by the decoder), and
    /// tile `i` is the last keyframe at or before `i × interval` (the first keyframe for times
    /// before it). The last tile is the one for the last keyframe's time. Reading stops at the end
    /// of the file; past ``MediaLimits/maxDuration`` the job fails with `duration_limit`.
    private static func forwardTiles(source: VideoSource, interval: Double, limits: MediaLimits, width: Int, height: Int,
                                     progress: JobProgress?, emit: (RGBAImage, Int) throws(JobError) -> Void) throws(JobError) {
        try source.seek(to: 0)
        var index = 0
        var last: (time: Double, tile: RGBAImage)?
        /// Emits `tile` for every tile time before `time` (or at it, when `inclusive`).
        func emitTiles(upTo time: Double, inclusive: Bool, using tile: RGBAImage) throws(JobError) {
            while Double(index) * interval < time || inclusive && Double(index) * interval <= time {
                try emit(tile, index)
                index += 1
                progress?.report(stage: "trickplay", details: ["tiles_done": .int(Int64(index))])
            }
        }
        while true {
            try source.checkStop()
            guard case .packet(let packetTime, _) = try source.readPacket(budget: Int.max) else { break }
            let time = packetTime ?? last?.time ?? 0  // a packet without timestamps does not move time
            if time > limits.maxDuration.seconds {
                throw JobError(.durationLimit, "The video \(source.relativePath) runs past \(Int(limits.maxDuration.seconds)) s (the duration limit); found while reading it for trickplay.")
            }
            guard let frame = try source.decodeKeyframe() else { continue }
            let tile = try VideoFrameRenderer.render(frame.pointer, width: width, height: height, source: source)
            try emitTiles(upTo: time, inclusive: false, using: last?.tile ?? tile)
            last = (max(time, last?.time ?? 0), tile)
        }
        if let last { try emitTiles(upTo: last.time, inclusive: true, using: last.tile) }
    }

    /// Pastes tiles into `columns × rows` sheets, writing each sheet to a temporary file as soon
    /// as it is full (or at the end, only as tall as the rows it uses); the caller commits them
    /// all at once. One sheet is in memory at a time, whether or not the tile count is known.
    private struct SheetWriter {
        let directory: DerivedDirectory
        let columns: Int, rows: Int, tileWidth: Int, tileHeight: Int, quality: Int
        private(set) var tilesAdded = 0
        private var sheet: RGBAImage?
        private var tilesOnSheet = 0
        private var pending: [PendingOutput] = []

        init(directory: DerivedDirectory, columns: Int, rows: Int, tileWidth: Int, tileHeight: Int, quality: Int) {
            self.directory = directory
            self.columns = columns
            self.rows = rows
            self.tileWidth = tileWidth
            self.tileHeight = tileHeight
            self.quality = quality
        }

        mutating func add(_ tile: RGBAImage) throws(JobError) {
            if sheet == nil { sheet = RGBAImage(width: tileWidth * columns, height: tileHeight * rows) }
            let slot = tilesOnSheet
            Trickplay.paste(tile, into: &sheet!, x: (slot % columns) * tileWidth, y: (slot / columns) * tileHeight)
            tilesOnSheet += 1
            tilesAdded += 1
            if tilesOnSheet == columns * rows { try flush() }
        }

        /// Writes the last, partial sheet and returns every sheet written.
        mutating func finish() throws(JobError) -> [PendingOutput] {
            if tilesOnSheet > 0 { try flush() }
            return pending
        }

        private mutating func flush() throws(JobError) {
            guard var full = sheet else { return }
            sheet = nil
            let usedRows = (tilesOnSheet + columns - 1) / columns
            tilesOnSheet = 0
            if usedRows < rows {
                // The last sheet is only as tall as the rows it uses: keep the top rows.
                full.pixels.removeSubrange((full.width * tileHeight * usedRows * 4)...)
                full.height = tileHeight * usedRows
            }
            let bytes = try ImageEncoder.encode(full, as: .jpeg, quality: quality)
            let output = try directory.createOutput(named: Trickplay.sheetName(pending.count))
            pending.append(output)
            try output.write(bytes)
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
    fileprivate static func paste(_ tile: RGBAImage, into sheet: inout RGBAImage, x: Int, y: Int) {
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
