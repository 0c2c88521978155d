import CFFmpeg
public import MediaNestCore

/// The cover art embedded in a song (`attached_pic`): ID3 APIC in MP3, `covr` in M4A, PICTURE
/// blocks in FLAC, METADATA_BLOCK_PICTURE in Ogg/Opus. FFmpeg's demuxers turn each into a video
/// stream with the `attached_pic` disposition whose one packet is the image file.
public enum AudioArtwork {
    /// The embedded cover art of `file`, fitted into `maxLongEdge`, or `nil` when there is none.
    ///
    /// With several pictures, the front cover (`comment` tag "Cover (front)") wins, then the
    /// first in file order; a picture that cannot be decoded is skipped in favour of the next.
    /// - Parameters:
    ///   - file: The safely opened audio (or video) file.
    ///   - limits: Pixel and time limits (the picture's header is checked before decoding).
    ///   - maxLongEdge: Longest edge of the result (never upscaled).
    /// - Returns: The picture, or `nil` when the file has no embedded picture.
    /// - Throws: ``JobError`` from opening the file (`unsupported_format`, `corrupt_media`, ...),
    ///   or, when the file has cover art but none of it can be used, the first picture's error
    ///   (`pixel_limit`, `unsupported_format`, `corrupt_media`); a caller that prefers a waveform
    ///   then can catch it.
    public static func coverArt(file: SafeFile, limits: MediaLimits, maxLongEdge: Int) throws(JobError) -> RGBAImage? {
        let input = try MediaInput.open(file, limits: limits)
        let pictures = input.streams.filter {
            $0.pointee.disposition & CFFmpeg_AV_DISPOSITION_ATTACHED_PIC != 0 && $0.pointee.attached_pic.size > 0
                && $0.pointee.attached_pic.data != nil
        }
        func isFront(_ stream: UnsafeMutablePointer<AVStream>) -> Bool {
            guard let entry = av_dict_get(stream.pointee.metadata, "comment", nil, 0), let value = entry.pointee.value else { return false }
            return String(cString: value).lowercased() == "cover (front)"
        }
        let ordered = pictures.filter(isFront) + pictures.filter { !isFront($0) }
        var firstError: JobError?
        for (position, stream) in ordered.enumerated() {
            let packet = stream.pointee.attached_pic
            let bytes = Array(UnsafeBufferPointer(start: packet.data, count: Int(packet.size)))
            let what = ordered.count > 1 ? "cover art \(position + 1) of \(file.relativePath)" : "the cover art of \(file.relativePath)"
            do {
                return try PacketImageDecoder.decode(bytes, codec: codec(for: stream.pointee.codecpar.pointee.codec_id),
                                                     maxLongEdge: maxLongEdge, limits: limits, what: what)
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return nil
    }

    /// The packet decoder's codec for a stream's codec id; `nil` lets it sniff the bytes.
    static func codec(for id: AVCodecID) -> PacketImageDecoder.Codec? {
        switch id {
        case AV_CODEC_ID_MJPEG: .jpeg
        case AV_CODEC_ID_PNG: .png
        case AV_CODEC_ID_BMP: .bmp
        case AV_CODEC_ID_WEBP: .webp
        case AV_CODEC_ID_GIF: .gif
        case AV_CODEC_ID_TIFF: .tiff
        default: nil
        }
    }
}
