import CFFmpeg
import MediaNestCore

/// Turns a decoded video frame into the picture a viewer expects: sample aspect ratio applied
/// (anamorphic video is not squashed), display rotation applied (phone videos upright), HDR and
/// BT.2020 tone-mapped to sRGB (see ``HDRToneMapper``), 10-bit reduced to 8-bit.
enum VideoFrameRenderer {
    /// The size, in display orientation, of `frame` fitted into `maxLongEdge` (never upscaled).
    static func fittedSize(of frame: UnsafeMutablePointer<AVFrame>, source: VideoSource, maxLongEdge: Int) -> (width: Int, height: Int) {
        let unrotated = FrameConverter.displaySize(width: Int(frame.pointee.width), height: Int(frame.pointee.height),
                                                   sampleAspectRatio: source.sampleAspectRatio(of: frame))
        let fitted = RGBAImage.fittedSize(width: unrotated.0, height: unrotated.1, maxLongEdge: maxLongEdge)
        return source.rotation % 180 == 90 ? (fitted.height, fitted.width) : fitted
    }

    /// Renders `frame` at exactly `width` × `height` in display orientation.
    /// - Parameters:
    ///   - frame: A decoded frame of `source`'s stream.
    ///   - width: Output width after rotation.
    ///   - height: Output height after rotation.
    ///   - source: The stream (rotation, colour fallbacks).
    static func render(_ frame: UnsafeMutablePointer<AVFrame>, width: Int, height: Int, source: VideoSource) throws(JobError) -> RGBAImage {
        let sideways = source.rotation % 180 == 90
        let codedWidth = sideways ? height : width
        let codedHeight = sideways ? width : height
        let image: RGBAImage
        if let mapping = HDRToneMapper.mapping(for: frame, stream: source.stream) {
            image = try HDRToneMapper.convert(frame, width: codedWidth, height: codedHeight, mapping: mapping)
        } else {
            image = try FrameConverter.convert(frame, width: codedWidth, height: codedHeight)
        }
        return VideoGeometry.rotate(image, clockwise: source.rotation)
    }
}

/// Quarter-turn rotations of pictures (display matrices of phone videos).
enum VideoGeometry {
    /// `image` turned clockwise by `degrees` (0, 90, 180 or 270; anything else is returned as is).
    static func rotate(_ image: RGBAImage, clockwise degrees: Int) -> RGBAImage {
        let w = image.width, h = image.height
        switch degrees {
        case 90, 180, 270:
            break
        default:
            return image
        }
        let outWidth = degrees == 180 ? w : h
        let outHeight = degrees == 180 ? h : w
        var out = [UInt8](repeating: 0, count: image.pixels.count)
        image.pixels.withUnsafeBytes { srcRaw in
            out.withUnsafeMutableBytes { dstRaw in
                let src = srcRaw.bindMemory(to: UInt32.self)
                let dst = dstRaw.bindMemory(to: UInt32.self)
                for y in 0..<outHeight {
                    for x in 0..<outWidth {
                        // The source pixel that lands on (x, y).
                        let (sx, sy): (Int, Int) = switch degrees {
                        case 90: (y, h - 1 - x)
                        case 180: (w - 1 - x, h - 1 - y)
                        default: (w - 1 - y, x)
                        }
                        dst[y * outWidth + x] = src[sy * w + sx]
                    }
                }
            }
        }
        return RGBAImage(width: outWidth, height: outHeight, pixels: out, hasAlpha: image.hasAlpha)
    }
}
