import MediaNestCore
import MediaNestMedia
import Testing

@Suite("ThumbHash placeholders")
struct ThumbHashTests {
    static func pattern(width: Int, height: Int, alpha: Bool) -> RGBAImage {
        var pixels: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                pixels += [UInt8(x * 11 % 256), UInt8(y * 15 % 256), UInt8(x * y * 7 % 256), alpha ? UInt8((x * 8 + y * 3) % 256) : 255]
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: alpha)
    }

    /// Hashes produced by an independent implementation (PyPI thumbhash-python 1.0.1, a port of
    /// the reference) for the same pixels: the byte format is the one clients decode.
    @Test func matchesAnIndependentImplementationByteForByte() {
        #expect(ThumbHash.encode(Self.pattern(width: 23, height: 17, alpha: false))
            == [93, 8, 14, 37, 154, 96, 118, 119, 112, 119, 135, 118, 136, 104, 135, 135, 192, 145, 12, 247, 136])
        #expect(ThumbHash.encode(Self.pattern(width: 20, height: 31, alpha: true))
            == [31, 8, 134, 19, 10, 39, 160, 166, 72, 41, 185, 192, 167, 7, 170, 168, 112, 119, 131, 120, 135, 120, 119])
    }

    @Test func roundTripKeepsAverageColourAndLayout() throws {
        var image = RGBAImage(width: 80, height: 40)
        for y in 0..<40 { for x in 0..<80 { image.setPixel(x: x, y: y, x < 40 ? (255, 0, 0, 255) : (0, 0, 255, 255)) } }
        let hash = ThumbHash.encode(image)
        #expect(hash.count <= 25 && hash.count >= 5)
        #expect(!ThumbHash.hasAlpha(hash))
        let average = ThumbHash.averageColor(hash)
        #expect(abs(average.red - 0.5) < 0.08 && average.green < 0.08 && abs(average.blue - 0.5) < 0.08 && average.alpha == 1, "\(average)")
        #expect(abs(ThumbHash.approximateAspectRatio(hash) - 2) < 0.5)

        let decoded = ThumbHash.decodeToImage(hash)
        // 80x40 keeps 7x4 luminance factors, so the placeholder is 32 x round(32 / 1.75).
        #expect(decoded.width == 32 && decoded.height == 18 && !decoded.hasAlpha)
        let left = decoded.pixel(x: 4, y: 8), right = decoded.pixel(x: 27, y: 8)
        #expect(left.r > left.b + 80 && right.b > right.r + 80, "left \(left), right \(right)")
    }

    @Test func transparencySetsTheAlphaFlag() {
        var image = RGBAImage(width: 50, height: 50, fill: (0, 200, 0, 255))
        for y in 0..<50 { for x in 25..<50 { image.setPixel(x: x, y: y, (0, 0, 0, 0)) } }
        let hash = ThumbHash.encode(image)
        #expect(ThumbHash.hasAlpha(hash) && hash.count <= 25)
        let decoded = ThumbHash.decodeToImage(hash)
        #expect(decoded.hasAlpha)
        #expect(decoded.pixel(x: 3, y: 16).a > decoded.pixel(x: 28, y: 16).a + 100)
        #expect(ThumbHash.averageColor(hash).alpha < 0.8)
    }

    @Test func largePicturesAreReducedFirst() throws {
        var image = RGBAImage(width: 640, height: 480)
        for y in 0..<480 { for x in 0..<640 { image.setPixel(x: x, y: y, y < 240 ? (250, 250, 250, 255) : (10, 10, 10, 255)) } }
        let fitted = try ThumbHash.encode(fitting: image)
        let direct = ThumbHash.encode(image)
        for hash in [fitted, direct] {
            #expect(hash.count <= 25)
            let decoded = ThumbHash.decodeToImage(hash)
            #expect(decoded.pixel(x: 16, y: 2).r > decoded.pixel(x: 16, y: decoded.height - 3).r + 120)
        }
    }

    @Test func malformedHashesDecodeWithoutCrashing() {
        for hash in [[], [0xFF], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [UInt8](repeating: 0xFF, count: 40)] as [[UInt8]] {
            let image = ThumbHash.decodeToImage(hash)
            #expect(image.width >= 1 && image.height >= 1 && image.width <= 32 && image.height <= 32)
        }
    }
}
