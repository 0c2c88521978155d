/// The eight EXIF orientations (TIFF tag 0x0112), and how to turn a stored picture upright.
///
/// The value says where the stored picture's first row and first column belong when shown:
///
/// | value | row 0 is the | column 0 is the | to show it                      |
/// |-------|--------------|-----------------|---------------------------------|
/// | 1     | top          | left            | as stored                       |
/// | 2     | top          | right           | mirror left–right               |
/// | 3     | bottom       | right           | rotate 180°                     |
/// | 4     | bottom       | left            | mirror top–bottom               |
/// | 5     | left         | top             | transpose (mirror on the main diagonal) |
/// | 6     | right        | top             | rotate 90° clockwise            |
/// | 7     | right        | bottom          | transverse (mirror on the anti-diagonal) |
/// | 8     | left         | bottom          | rotate 90° counter-clockwise    |
///
/// Applied to the already reduced picture, so turning a 12 MP photo upright costs what turning a
/// 320 px thumbnail costs.
public enum ImageOrientation: Int, Sendable, Hashable, CaseIterable {
    case up = 1, upMirrored, down, downMirrored, leftMirrored, right, rightMirrored, left

    /// Whether showing the picture swaps its width and height (values 5–8).
    public var swapsDimensions: Bool { rawValue >= 5 }

    /// The orientation for an EXIF value; `nil`, 0 and anything outside 1–8 mean "as stored".
    public init(exifValue: Int?) {
        self = exifValue.flatMap(ImageOrientation.init(rawValue:)) ?? .up
    }

    /// Returns `image` turned upright: rotated and mirrored as the EXIF value says.
    /// - Parameter image: The stored picture.
    /// - Returns: The picture as it is meant to be seen.
    public func apply(to image: RGBAImage) -> RGBAImage {
        if self == .up { return image }
        let w = image.width, h = image.height
        let outWidth = swapsDimensions ? h : w
        let outHeight = swapsDimensions ? w : h
        var out = [UInt8](repeating: 0, count: image.pixels.count)
        image.pixels.withUnsafeBytes { sourceBytes in
            out.withUnsafeMutableBytes { destinationBytes in
                // One 32-bit load and store per pixel: RGBA is four bytes and the buffers are aligned.
                let source = sourceBytes.bindMemory(to: UInt32.self)
                let destination = destinationBytes.bindMemory(to: UInt32.self)
                for dy in 0..<outHeight {
                    for dx in 0..<outWidth {
                        // (sx, sy): the stored pixel shown at (dx, dy).
                        let sx: Int, sy: Int
                        switch self {
                        case .up: (sx, sy) = (dx, dy)
                        case .upMirrored: (sx, sy) = (w - 1 - dx, dy)
                        case .down: (sx, sy) = (w - 1 - dx, h - 1 - dy)
                        case .downMirrored: (sx, sy) = (dx, h - 1 - dy)
                        case .leftMirrored: (sx, sy) = (dy, dx)
                        case .right: (sx, sy) = (dy, h - 1 - dx)
                        case .rightMirrored: (sx, sy) = (w - 1 - dy, h - 1 - dx)
                        case .left: (sx, sy) = (w - 1 - dy, dx)
                        }
                        destination[dy * outWidth + dx] = source[sy * w + sx]
                    }
                }
            }
        }
        var turned = RGBAImage(width: outWidth, height: outHeight, pixels: out, hasAlpha: image.hasAlpha)
        turned.colourSpace = image.colourSpace
        return turned
    }
}

extension RGBAImage {
    /// The picture turned upright for an EXIF orientation value (1–8; anything else: unchanged).
    /// - Parameter exifOrientation: The EXIF Orientation tag's value.
    public func oriented(exifOrientation: Int?) -> RGBAImage {
        ImageOrientation(exifValue: exifOrientation).apply(to: self)
    }
}
