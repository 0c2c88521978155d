/// A decoded still picture: 8-bit sRGB (or Display P3, see ``colourSpace``), four bytes per pixel
/// (R, G, B, A), rows top to bottom with no padding, alpha not premultiplied.
///
/// This is the one picture type every image path of the worker meets in: the FFmpeg decoders
/// (through ``FrameConverter``), libheif, the embedded previews of camera RAW files, video
/// frames, and the waveform drawn for audio. Orientation, placeholders (ThumbHash) and the
/// encoders (``ImageEncoder``) all take it, so a new decoder only has to produce one.
///
/// Pictures here are already reduced to about the size they are needed at; a full-size 100 MP
/// frame is never turned into one.
public struct RGBAImage: Sendable, Hashable {
    /// Width in pixels (at least 1).
    public var width: Int
    /// Height in pixels (at least 1).
    public var height: Int
    /// `width * height * 4` bytes.
    public var pixels: [UInt8]
    /// Whether any pixel may be less than fully opaque (decides WebP/PNG alpha and JPEG flattening).
    public var hasAlpha: Bool
    /// The colour space of the pixels: sRGB, or Display P3 when `stills.colorspace` is `p3` and the
    /// source was wider (the encoders then embed the Display P3 profile).
    public var colourSpace: StillColourSpace = .srgb

    /// Wraps existing pixels.
    /// - Parameters:
    ///   - width: Width in pixels, at least 1.
    ///   - height: Height in pixels, at least 1.
    ///   - pixels: Exactly `width * height * 4` bytes.
    ///   - hasAlpha: Whether the alpha channel carries information.
    public init(width: Int, height: Int, pixels: [UInt8], hasAlpha: Bool) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 4, "RGBAImage: \(width)x\(height) needs \(width * height * 4) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.hasAlpha = hasAlpha
    }

    /// A picture of one colour.
    /// - Parameters:
    ///   - width: Width in pixels.
    ///   - height: Height in pixels.
    ///   - fill: The colour, as (r, g, b, a).
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 255)) {
        var pixels = [UInt8](repeating: 0, count: width * height * 4)
        for i in stride(from: 0, to: pixels.count, by: 4) {
            pixels[i] = fill.0; pixels[i + 1] = fill.1; pixels[i + 2] = fill.2; pixels[i + 3] = fill.3
        }
        self.init(width: width, height: height, pixels: pixels, hasAlpha: fill.3 != 255)
    }

    /// The pixel at (`x`, `y`) as (r, g, b, a); (0, 0) is the top-left corner.
    public func pixel(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8, a: UInt8) {
        let i = (y * width + x) * 4
        return (pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3])
    }

    /// Sets the pixel at (`x`, `y`).
    public mutating func setPixel(x: Int, y: Int, _ value: (UInt8, UInt8, UInt8, UInt8)) {
        let i = (y * width + x) * 4
        pixels[i] = value.0; pixels[i + 1] = value.1; pixels[i + 2] = value.2; pixels[i + 3] = value.3
    }

    /// The picture composited onto an opaque background (for formats without alpha, such as JPEG).
    /// - Parameter background: The colour that shows through transparent pixels; a light neutral
    ///   grey by default, which reads as "transparent" on both light and dark pages.
    /// - Returns: An opaque copy (`hasAlpha == false`); `self` when it has no alpha.
    public func flattened(onto background: (UInt8, UInt8, UInt8) = (238, 238, 238)) -> RGBAImage {
        guard hasAlpha else { return self }
        var out = pixels
        let bg = [UInt32(background.0), UInt32(background.1), UInt32(background.2)]
        out.withUnsafeMutableBufferPointer { p in
            for i in stride(from: 0, to: p.count, by: 4) {
                let a = UInt32(p[i + 3])
                if a == 255 { continue }
                for c in 0..<3 {
                    p[i + c] = UInt8((UInt32(p[i + c]) * a + bg[c] * (255 - a) + 127) / 255)
                }
                p[i + 3] = 255
            }
        }
        var flat = RGBAImage(width: width, height: height, pixels: out, hasAlpha: false)
        flat.colourSpace = colourSpace
        return flat
    }

    /// The size that fits inside `maxLongEdge` on the long edge, keeping the aspect ratio and never
    /// upscaling; each side at least 1.
    /// - Parameters:
    ///   - width: Source width.
    ///   - height: Source height.
    ///   - maxLongEdge: Longest allowed edge in pixels.
    public static func fittedSize(width: Int, height: Int, maxLongEdge: Int) -> (width: Int, height: Int) {
        let long = max(width, height)
        guard long > maxLongEdge, maxLongEdge > 0 else { return (max(1, width), max(1, height)) }
        let scale = Double(maxLongEdge) / Double(long)
        return (max(1, Int((Double(width) * scale).rounded())), max(1, Int((Double(height) * scale).rounded())))
    }
}
