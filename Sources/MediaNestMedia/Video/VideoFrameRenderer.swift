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
    /// `image` turned clockwise by `degrees` (0, 90, 180 or 270; anything else is returned as is):
    /// the same quarter turns as EXIF orientations 6, 3 and 8.
    static func rotate(_ image: RGBAImage, clockwise degrees: Int) -> RGBAImage {
        switch degrees {
        case 90: ImageOrientation.right.apply(to: image)
        case 180: ImageOrientation.down.apply(to: image)
        case 270: ImageOrientation.left.apply(to: image)
        default: image
        }
    }
}
