import Foundation
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// ``FrameConverter/resize(_:width:height:)`` scales through planar RGB for speed; it must give
/// exactly the bytes of libswscale's RGBA-to-RGBA scaling, which it replaced.
@Suite("Still resizing through planar RGB")
struct StillResizeTests {
    /// A picture with detail in every channel (and, when asked, a varying alpha), from a fixed seed.
    static func picture(width: Int, height: Int, alpha: Bool) -> RGBAImage {
        var generator = SplitMix64(seed: 42)
        var pixels = [UInt8](repeating: 0, count: width * height * 4)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 4
                let noise = Int(generator.next() % 48)
                pixels[i] = UInt8(min(255, x * 255 / width + noise / 2))
                pixels[i + 1] = UInt8(min(255, y * 255 / height + noise / 3))
                pixels[i + 2] = UInt8(((x / 7 + y / 5) % 2) * 200 + noise)
                pixels[i + 3] = alpha ? UInt8((x * 3 + y) % 256) : 255
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: alpha)
    }

    @Test(arguments: [(false, 300, 225, 288, 216), (false, 288, 216, 64, 48), (true, 300, 225, 120, 90), (true, 50, 40, 101, 80)])
    func planarResizingGivesThePackedBytes(alpha: Bool, width: Int, height: Int, toWidth: Int, toHeight: Int) throws {
        var image = Self.picture(width: width, height: height, alpha: alpha)
        image.colourSpace = .p3
        let planar = try FrameConverter.resize(image, width: toWidth, height: toHeight)
        let packed = try FrameConverter.resizePacked(image, width: toWidth, height: toHeight)
        #expect(planar.width == toWidth && planar.height == toHeight && planar.hasAlpha == alpha && planar.colourSpace == .p3)
        let differing = zip(planar.pixels, packed.pixels).filter { $0 != $1 }.count
        #expect(planar.pixels.count == packed.pixels.count && differing == 0, "\(differing) bytes differ")
        if !alpha { #expect(stride(from: 3, to: planar.pixels.count, by: 4).allSatisfy { planar.pixels[$0] == 255 }) }
    }

    /// libswscale's vectorised output stores whole SIMD words, past the end of a row one or
    /// two pixels wide and so past the end of its plane (it keeps its scalar code for the last
    /// two rows only, which covers the overrun when rows are as wide as a word). A one-colour
    /// picture reduced to a sliver must stay that colour (give or take Lanczos' rounding of one
    /// level): with the planes packed end to end, the green plane's overrun overwrote the first
    /// rows of the blue and red ones (130, 50, 130 instead of 200, 50, 10).
    @Test(arguments: [(1, 64), (1, 3), (2, 3), (2, 40), (3, 17), (1, 200)])
    func aSliverOfOneColourStaysThatColour(toWidth: Int, toHeight: Int) throws {
        let colour: [UInt8] = [200, 50, 10, 255]
        let image = RGBAImage(width: 40, height: 300, pixels: Array([[UInt8]](repeating: colour, count: 40 * 300).joined()), hasAlpha: false)
        for resized in [try FrameConverter.resize(image, width: toWidth, height: toHeight),
                        try FrameConverter.resizePacked(image, width: toWidth, height: toHeight)] {
            #expect(resized.pixels.count == toWidth * toHeight * 4)
            let wrong = (0..<(toWidth * toHeight)).filter { pixel in
                (0..<4).contains { abs(Int(resized.pixels[pixel * 4 + $0]) - Int(colour[$0])) > 1 }
            }
            #expect(wrong.isEmpty, "pixels \(wrong.prefix(8)) are not \(colour): \(wrong.prefix(3).map { Array(resized.pixels[($0 * 4)..<($0 * 4 + 4)]) })")
        }
    }
}
