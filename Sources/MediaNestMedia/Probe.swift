import CFFmpeg
import Foundation
public import MediaNestCore

/// What FFmpeg knows about a file without decoding a frame: container, streams, chapters, tags.
public struct MediaProbe: Sendable, Hashable {
    /// The demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    public var formatName: String
    /// The demuxer's long name, e.g. `QuickTime / MOV`.
    public var formatLongName: String?
    /// Duration in seconds, when known.
    public var duration: Double?
    /// Overall bit rate in bits per second, when known.
    public var bitRate: Int64?
    /// Start time in seconds, when known.
    public var startTime: Double?
    /// Every stream, in file order.
    public var streams: [StreamInfo]
    /// Chapters, in file order.
    public var chapters: [ChapterInfo]
    /// Container-level tags, keys lowercased.
    public var tags: [String: String]

    /// The first video stream that is not cover art.
    public var primaryVideo: StreamInfo? { streams.first { $0.kind == .video && !$0.isAttachedPicture } }
    /// The first audio stream.
    public var primaryAudio: StreamInfo? { streams.first { $0.kind == .audio } }

    /// Whether the file is a still picture, though FFmpeg reads it: an image demuxer
    /// (`jpegxl_pipe`, `png_pipe`, ...; ``MediaInput/imageDemuxers``) other than `gif`, whose
    /// files may animate, or a container whose only stream is one video stream that says it holds
    /// a single frame, or only cover art. Such a file is an image: a preview, never trickplay,
    /// no rendition.
    public var isStillImage: Bool {
        if formatName != "gif", MediaInput.imageDemuxers.contains(formatName) { return true }
        let pictures = streams.filter { $0.kind == .video }
        guard pictures.count == 1, !streams.contains(where: { $0.kind == .audio }) else { return false }
        return pictures[0].isAttachedPicture || pictures[0].frameCount == 1
    }
}

/// One stream of a ``MediaProbe``.
public struct StreamInfo: Sendable, Hashable {
    /// The kind of data a stream carries.
    public enum Kind: String, Sendable, Hashable {
        // Named as in ffprobe's codec_type.
        case video, audio, subtitle, data, attachment, unknown
    }

    /// The stream index in the container.
    public var index: Int
    /// What the stream carries.
    public var kind: Kind
    /// FFmpeg's codec name, e.g. `h264`.
    public var codecName: String
    /// The codec profile, e.g. `High` or `Main 10`.
    public var profile: String?
    /// The pixel format, e.g. `yuv420p10le`.
    public var pixelFormat: String?
    /// Bits per component of the first plane.
    public var bitDepth: Int?
    /// Stored frame width.
    public var width: Int?
    /// Stored frame height.
    public var height: Int?
    /// Width as shown: after sample aspect ratio and rotation.
    public var displayWidth: Int?
    /// Height as shown: after sample aspect ratio and rotation.
    public var displayHeight: Int?
    /// Clockwise rotation to apply for display, 0, 90, 180 or 270.
    public var rotation: Int
    /// Sample (pixel) aspect ratio as `num:den`, when set.
    public var sampleAspectRatio: String?
    /// Average frame rate.
    public var averageFrameRate: Double?
    /// Real base frame rate.
    public var realFrameRate: Double?
    /// Colour primaries, e.g. `bt2020`.
    public var colorPrimaries: String?
    /// Transfer characteristics, e.g. `smpte2084`.
    public var colorTransfer: String?
    /// Colour space (matrix), e.g. `bt709`.
    public var colorSpace: String?
    /// Whether the transfer is PQ (`smpte2084`) or HLG (`arib-std-b67`).
    public var isHDR: Bool
    /// Audio channel count.
    public var channels: Int?
    /// Audio channel layout, e.g. `stereo` or `5.1(side)`.
    public var channelLayout: String?
    /// Audio sample rate in Hz.
    public var sampleRate: Int?
    /// Whether this is embedded cover art (`attached_pic` disposition).
    public var isAttachedPicture: Bool
    /// Whether this is the default stream of its kind.
    public var isDefault: Bool
    /// Stream duration in seconds, when known.
    public var duration: Double?
    /// The number of frames the container says the stream holds (`nb_frames`), when it says.
    public var frameCount: Int?
    /// Stream bit rate, when known.
    public var bitRate: Int64?
    /// Stream-level tags, keys lowercased.
    public var tags: [String: String]
}

/// A chapter of a ``MediaProbe``.
public struct ChapterInfo: Sendable, Hashable {
    /// Start, in seconds.
    public var start: Double
    /// End, in seconds.
    public var end: Double
    /// The chapter title, when tagged.
    public var title: String?
}

extension MediaInput {
    /// Reads everything ``MediaProbe`` holds from the open input; never decodes a frame.
    /// - Returns: The probe.
    public func probe() -> MediaProbe {
        guard let context else {
            return MediaProbe(formatName: formatName, formatLongName: formatLongName, streams: [], chapters: [], tags: [:])
        }
        let c = context.pointee
        var probe = MediaProbe(formatName: formatName, formatLongName: formatLongName, streams: [], chapters: [], tags: dictionary(c.metadata))
        if c.duration != CFFmpeg_AV_NOPTS_VALUE, c.duration > 0 { probe.duration = Double(c.duration) / Double(CFFmpeg_AV_TIME_BASE) }
        if c.start_time != CFFmpeg_AV_NOPTS_VALUE { probe.startTime = Double(c.start_time) / Double(CFFmpeg_AV_TIME_BASE) }
        if c.bit_rate > 0 { probe.bitRate = c.bit_rate }
        probe.streams = streams.map(streamInfo)
        if let chapters = c.chapters {
            for index in 0..<Int(c.nb_chapters) {
                guard let chapter = chapters[index]?.pointee else { continue }
                let base = av_q2d(chapter.time_base)
                probe.chapters.append(ChapterInfo(start: Double(chapter.start) * base, end: Double(chapter.end) * base,
                                                  title: dictionary(chapter.metadata)["title"]))
            }
        }
        return probe
    }

    private func streamInfo(_ pointer: UnsafeMutablePointer<AVStream>) -> StreamInfo {
        let stream = pointer.pointee
        let p = stream.codecpar.pointee
        let kind: StreamInfo.Kind = switch p.codec_type {
        case AVMEDIA_TYPE_VIDEO: .video
        case AVMEDIA_TYPE_AUDIO: .audio
        case AVMEDIA_TYPE_SUBTITLE: .subtitle
        case AVMEDIA_TYPE_DATA: .data
        case AVMEDIA_TYPE_ATTACHMENT: .attachment
        default: .unknown
        }
        var info = StreamInfo(
            index: Int(stream.index), kind: kind, codecName: String(cString: avcodec_get_name(p.codec_id)),
            profile: avcodec_profile_name(p.codec_id, p.profile).map { String(cString: $0) },
            rotation: 0, isHDR: false,
            isAttachedPicture: stream.disposition & CFFmpeg_AV_DISPOSITION_ATTACHED_PIC != 0,
            isDefault: stream.disposition & CFFmpeg_AV_DISPOSITION_DEFAULT != 0,
            tags: dictionary(stream.metadata))
        if stream.duration != CFFmpeg_AV_NOPTS_VALUE, stream.duration > 0 { info.duration = Double(stream.duration) * av_q2d(stream.time_base) }
        if p.bit_rate > 0 { info.bitRate = p.bit_rate }
        if stream.nb_frames > 0 { info.frameCount = Int(stream.nb_frames) }

        if kind == .video {
            if p.format >= 0 {
                info.pixelFormat = CFFmpeg_pix_fmt_name(p.format).map { String(cString: $0) }
                let depth = Int(CFFmpeg_pix_fmt_depth(p.format))
                if depth > 0 { info.bitDepth = depth }
            }
            if p.width > 0, p.height > 0 {
                info.width = Int(p.width)
                info.height = Int(p.height)
                var displayWidth = Double(p.width)
                let sar = p.sample_aspect_ratio.num > 0 && p.sample_aspect_ratio.den > 0 ? p.sample_aspect_ratio : stream.sample_aspect_ratio
                if sar.num > 0, sar.den > 0 {
                    info.sampleAspectRatio = "\(sar.num):\(sar.den)"
                    displayWidth = (displayWidth * Double(sar.num) / Double(sar.den)).rounded()
                }
                info.rotation = rotation(of: pointer)
                let swap = info.rotation == 90 || info.rotation == 270
                info.displayWidth = swap ? Int(p.height) : Int(displayWidth)
                info.displayHeight = swap ? Int(displayWidth) : Int(p.height)
            } else {
                info.rotation = rotation(of: pointer)
            }
            info.averageFrameRate = rate(stream.avg_frame_rate)
            info.realFrameRate = rate(stream.r_frame_rate)
            if p.color_primaries != AVCOL_PRI_UNSPECIFIED { info.colorPrimaries = av_color_primaries_name(p.color_primaries).map { String(cString: $0) } }
            if p.color_trc != AVCOL_TRC_UNSPECIFIED { info.colorTransfer = av_color_transfer_name(p.color_trc).map { String(cString: $0) } }
            if p.color_space != AVCOL_SPC_UNSPECIFIED { info.colorSpace = av_color_space_name(p.color_space).map { String(cString: $0) } }
            info.isHDR = p.color_trc == AVCOL_TRC_SMPTE2084 || p.color_trc == AVCOL_TRC_ARIB_STD_B67
        } else if kind == .audio {
            if p.sample_rate > 0 { info.sampleRate = Int(p.sample_rate) }
            var layout = p.ch_layout
            if layout.nb_channels > 0 {
                info.channels = Int(layout.nb_channels)
                var text = [CChar](repeating: 0, count: 128)
                let written = text.withUnsafeMutableBufferPointer { av_channel_layout_describe(&layout, $0.baseAddress, $0.count) }
                if written > 0 { info.channelLayout = cString(text) }
            }
        }
        return info
    }

    private func rotation(of stream: UnsafeMutablePointer<AVStream>) -> Int { displayRotation(of: stream) }
}

/// Clockwise display rotation from a stream's display matrix, normalised to 0/90/180/270.
///
/// FFmpeg's `av_display_rotation_get` answers counter-clockwise degrees (and 5.1's mov muxer
/// writes `-metadata:s:v rotate=N` as a counter-clockwise matrix), hence the minus.
func displayRotation(of stream: UnsafeMutablePointer<AVStream>) -> Int {
    var size = 0
    guard let data = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 9 * 4 else { return 0 }
    let matrix = UnsafeRawPointer(data).bindMemory(to: Int32.self, capacity: 9)
    let counterClockwise = av_display_rotation_get(matrix)
    guard counterClockwise.isFinite else { return 0 }
    return normalizedRotation(-counterClockwise)
}

/// Rounds an angle to the nearest quarter turn in 0..<360.
func normalizedRotation(_ degrees: Double) -> Int {
    var quarter = Int((degrees / 90).rounded()) % 4
    if quarter < 0 { quarter += 4 }
    return quarter * 90
}

private func rate(_ value: AVRational) -> Double? {
    guard value.num > 0, value.den > 0 else { return nil }
    return Double(value.num) / Double(value.den)
}

/// The entries of an `AVDictionary`, keys lowercased (first value wins).
func dictionary(_ dict: OpaquePointer?) -> [String: String] {
    var result: [String: String] = [:]
    var entry: UnsafeMutablePointer<AVDictionaryEntry>?
    while let next = av_dict_get(dict, "", entry, CFFmpeg_AV_DICT_IGNORE_SUFFIX) {
        entry = next
        guard let key = next.pointee.key, let value = next.pointee.value else { continue }
        let name = String(cString: key).lowercased()
        if result[name] == nil { result[name] = String(cString: value) }
    }
    return result
}

extension MediaProbe {
    /// The full probe as JSON, for the `media_metadata` row of provider `local`.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "format": .object(compact([
                "name": .string(formatName),
                "long_name": formatLongName.map(JSONValue.string),
                "duration": duration.map(JSONValue.double),
                "bit_rate": bitRate.map(JSONValue.int),
                "start_time": startTime.map(JSONValue.double),
                "tags": tags.isEmpty ? nil : .object(tags.mapValues(JSONValue.string)),
            ])),
            "streams": .array(streams.map(\.json)),
        ]
        if !chapters.isEmpty {
            object["chapters"] = .array(chapters.map { chapter in
                .object(compact(["start": .double(chapter.start), "end": .double(chapter.end), "title": chapter.title.map(JSONValue.string)]))
            })
        }
        return .object(object)
    }
}

extension StreamInfo {
    /// This stream as JSON (absent values omitted).
    public var json: JSONValue {
        .object(compact([
            "index": .int(Int64(index)),
            "type": .string(kind.rawValue),
            "codec": .string(codecName),
            "profile": profile.map(JSONValue.string),
            "pix_fmt": pixelFormat.map(JSONValue.string),
            "bit_depth": bitDepth.map { .int(Int64($0)) },
            "coded_width": width.map { .int(Int64($0)) },
            "coded_height": height.map { .int(Int64($0)) },
            "display_width": displayWidth.map { .int(Int64($0)) },
            "display_height": displayHeight.map { .int(Int64($0)) },
            "rotation": kind == .video ? .int(Int64(rotation)) : nil,
            "sample_aspect_ratio": sampleAspectRatio.map(JSONValue.string),
            "avg_frame_rate": averageFrameRate.map(JSONValue.double),
            "r_frame_rate": realFrameRate.map(JSONValue.double),
            "color_primaries": colorPrimaries.map(JSONValue.string),
            "color_transfer": colorTransfer.map(JSONValue.string),
            "color_space": colorSpace.map(JSONValue.string),
            "hdr": kind == .video ? .bool(isHDR) : nil,
            "channels": channels.map { .int(Int64($0)) },
            "channel_layout": channelLayout.map(JSONValue.string),
            "sample_rate": sampleRate.map { .int(Int64($0)) },
            "attached_pic": isAttachedPicture ? .bool(true) : nil,
            "default": .bool(isDefault),
            "duration": duration.map(JSONValue.double),
            "bit_rate": bitRate.map(JSONValue.int),
            "tags": tags.isEmpty ? nil : .object(tags.mapValues(JSONValue.string)),
        ]))
    }
}

/// Drops `nil` members.
func compact(_ members: [String: JSONValue?]) -> [String: JSONValue] {
    members.compactMapValues { $0 }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
