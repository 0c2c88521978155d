public import MediaNestMedia

/// Size, format and quality of one kind of still output (the thumbnail or the preview).
public struct StillOutputSettings: Sendable, Hashable {
    /// Longest edge in pixels; smaller sources are never upscaled.
    public var maxLongEdge: Int
    /// WebP, JPEG or PNG.
    public var format: ImageFormat
    /// 1–100; ignored for PNG.
    public var quality: Int

    /// Creates settings.
    /// - Parameters:
    ///   - maxLongEdge: Longest edge in pixels.
    ///   - format: The output format.
    ///   - quality: 1–100.
    public init(maxLongEdge: Int, format: ImageFormat, quality: Int) {
        self.maxLongEdge = maxLongEdge
        self.format = format
        self.quality = quality
    }

    /// A short text naming these settings (`webp-320-q80`), recorded next to the outputs so a
    /// change of settings makes them stale.
    public var key: String { "\(format.rawValue)-\(maxLongEdge)-q\(quality)" }

    /// Checks the values.
    /// - Parameter option: The option prefix to name in the message (`--thumbnail`).
    /// - Throws: ``WorkerConfigurationError``.
    func validate(_ option: String) throws(WorkerConfigurationError) {
        guard (16...8192).contains(maxLongEdge) else { throw WorkerConfigurationError("\(option)-size must be between 16 and 8192 pixels (got \(maxLongEdge)).") }
        guard (1...100).contains(quality) else { throw WorkerConfigurationError("\(option)-quality must be between 1 and 100 (got \(quality)).") }
    }
}

/// The thumbnail job's output: WebP, quality 80, 320 px on the long edge by default.
public typealias ThumbnailSettings = StillOutputSettings
/// The preview job's output: JPEG, quality 80, 1440 px on the long edge by default.
public typealias PreviewSettings = StillOutputSettings

extension StillOutputSettings {
    /// WebP, quality 80, 320 px.
    public static let thumbnailDefault = StillOutputSettings(maxLongEdge: 320, format: .webp, quality: 80)
    /// JPEG, quality 80, 1440 px.
    public static let previewDefault = StillOutputSettings(maxLongEdge: 1440, format: .jpeg, quality: 80)
}

/// Everything the thumbnail and preview jobs are configured with.
public struct StillImageSettings: Sendable, Hashable {
    /// The thumbnail output.
    public var thumbnail: ThumbnailSettings = .thumbnailDefault
    /// The preview output.
    public var preview: PreviewSettings = .previewDefault
    /// Most decoder threads one job may use. With the default per-type limits (one thumbnail or
    /// preview job per core) 1 keeps `concurrency × threads` within the cores.
    public var decoderThreads: Int = 1
    /// Whether the worker claims an item's pending thumbnail and preview jobs together and makes
    /// both outputs from one decode (see docs/THUMBNAILS.md, "One decode"); off, every still job
    /// is claimed and decoded on its own.
    public var oneDecode: Bool = true
    /// The trickplay sprite sheets the preview job makes for videos.
    public var trickplay = TrickplaySettings()
    /// The colour space of the thumbnail and preview (`stills.colorspace`): sRGB, or Display P3
    /// (with its profile embedded) for sources wider than sRGB. The ThumbHash is sRGB either way.
    public var colourSpace: StillColourSpace = .srgb

    /// The defaults.
    public init() {}

    /// Settings of one output kind.
    public func settings(for kind: StillKind) -> StillOutputSettings {
        kind == .thumbnail ? thumbnail : preview
    }

    /// Checks the values.
    /// - Throws: ``WorkerConfigurationError`` naming the option.
    public func validate() throws(WorkerConfigurationError) {
        try thumbnail.validate("--thumbnail")
        try preview.validate("--preview")
        guard (1...64).contains(decoderThreads) else { throw WorkerConfigurationError("--decoder-threads must be between 1 and 64 (got \(decoderThreads)).") }
    }
}

/// The two still outputs of an item.
public enum StillKind: String, Sendable, Hashable, CaseIterable {
    case thumbnail, preview
}

/// The trickplay sprite sheets of a video (scrub previews for players, as Plex and Jellyfin show):
/// a keyframe every ``interval``, ``tileWidth`` wide, tiled ``columns`` × ``rows`` per JPEG sheet.
public struct TrickplaySettings: Sendable, Hashable {
    /// Whether the preview job makes them for videos.
    public var enabled = true
    /// Media time between two tiles.
    public var interval: Duration = .seconds(10)
    /// Tile width in pixels (the height follows the video's display aspect).
    public var tileWidth = 320
    /// Tiles per row.
    public var columns = 10
    /// Rows per sheet.
    public var rows = 10
    /// JPEG quality of the sheets.
    public var quality = 80

    /// The defaults.
    public init() {}
}
