import Foundation
import MediaNestCore
import MediaNestMedia
import Testing

/// ``PerceptualHash``: the 64-bit DCT hash the thumbnail job stores for `duplicates`. The
/// end-to-end behaviour on ffmpeg-made photos (copies group, other framings do not) is in
/// `NearDuplicateCorpusTests` (MediaNestWorkerTests).
@Suite("perceptual hash")
struct PerceptualHashTests {
    /// A picture with structure at several scales: two overlapping soft blobs and stripes.
    static func scene(width: Int, height: Int, phase: Double = 0) -> RGBAImage {
        var image = RGBAImage(width: width, height: height)
        for y in 0..<height {
            for x in 0..<width {
                let u = Double(x) / Double(width), v = Double(y) / Double(height)
                let blob = exp(-((u - 0.3) * (u - 0.3) + (v - 0.4) * (v - 0.4)) * 12) + 0.7 * exp(-((u - 0.75) * (u - 0.75) + (v - 0.7) * (v - 0.7)) * 20)
                let stripes = 0.25 * sin((u * 3 + v * 1.5) * Double.pi * 2 + phase)
                let level = UInt8(max(0, min(255, (blob * 0.6 + stripes + 0.3) * 255)))
                image.setPixel(x: x, y: y, (level, UInt8(255 - Int(level) / 2), level / 2, 255))
            }
        }
        return image
    }

    @Test func aResizedCopyHasNearlyTheSameHash() throws {
        let original = Self.scene(width: 640, height: 480)
        let smaller = try original.fitted(maxLongEdge: 200)
        let hash = PerceptualHash.compute(original)
        #expect(PerceptualHash.distance(hash, PerceptualHash.compute(smaller)) <= 2)
        // Not a constant: another picture is far away.
        let other = Self.scene(width: 640, height: 480, phase: Double.pi)
        #expect(PerceptualHash.distance(hash, PerceptualHash.compute(other)) >= 16)
    }

    /// Inverting light and dark negates every frequency but the DC term: the AC bits flip.
    @Test func theNegativeDiffersInNearlyEveryBit() {
        let original = Self.scene(width: 320, height: 240)
        var negative = original
        for i in stride(from: 0, to: negative.pixels.count, by: 4) {
            for c in 0..<3 { negative.pixels[i + c] = 255 - negative.pixels[i + c] }
        }
        #expect(PerceptualHash.distance(PerceptualHash.compute(original), PerceptualHash.compute(negative)) >= 56)
    }

    /// Bit 63 is the DC coefficient (the mean brightness), larger than the median of any
    /// non-black picture; exactly half the bits are set when the 64 values are distinct.
    @Test func layoutIsDCFirstAndAboveTheMedianHalf() {
        let hash = PerceptualHash.compute(Self.scene(width: 300, height: 300))
        #expect(hash >> 63 == 1)
        #expect(hash.nonzeroBitCount == 32)
        #expect(PerceptualHash.hex(hash).count == 16)
        #expect(UInt64(PerceptualHash.hex(hash), radix: 16) == hash)
        #expect(PerceptualHash.hex(1) == "0000000000000001")
    }

    /// Pictures smaller than the 32 × 32 grid (a 1-pixel-wide strip) hash without trapping.
    @Test func tinyPicturesHash() {
        let strip = RGBAImage(width: 1, height: 7, fill: (200, 10, 10, 255))
        _ = PerceptualHash.compute(strip)
        _ = PerceptualHash.compute(RGBAImage(width: 1, height: 1))
    }
}
