import Foundation

/// A 64-bit perceptual hash of a picture (the DCT "pHash" of Zauner 2010, as the `imagehash`
/// Python library computes it): pictures that look alike have hashes that differ in few bits.
///
/// 1. Luma (BT.601 weights on the 8-bit sRGB values; transparent pixels count as their colour),
///    reduced by area averaging to 32 × 32. The aspect ratio is dropped on purpose: a resized copy
///    maps to the same 32 × 32 grid.
/// 2. The 2-D DCT-II of that grid; only the 8 × 8 lowest frequencies are kept (the coarse layout
///    of light and dark). Recompression and resampling change the high frequencies, which are
///    thrown away.
/// 3. Each of the 64 coefficients becomes one bit: 1 when it is above their median. Row by row
///    from the DC term, which is bit 63 (the most significant).
///
/// Why the DCT hash and not the difference hash (dHash, 9 × 8 neighbour comparisons): dHash's
/// bits compare neighbouring cells, so in flat regions (sky, walls) they flip under noise and
/// recompression, and a few per cent of cropping moves every cell; the DCT's low frequencies
/// average over the whole picture, which is what keeps a recompressed or slightly cropped copy
/// within a few bits (docs/DUPLICATES.md has the measurements). The cost is the same order:
/// about 10,000 multiply-adds on a 32 × 32 grid, next to nothing beside the decode.
public enum PerceptualHash {
    /// Side of the reduced grid.
    static let gridSide = 32
    /// Side of the kept block of low frequencies.
    static let keptSide = 8

    /// `cos((2x + 1) u π / 64)` for u < 8, x < 32.
    private static let cosines: [Double] = {
        var table = [Double](repeating: 0, count: keptSide * gridSide)
        for u in 0..<keptSide {
            for x in 0..<gridSide {
                table[u * gridSide + x] = cos(Double((2 * x + 1) * u) * Double.pi / Double(2 * gridSide))
            }
        }
        return table
    }()

    /// The hash of a picture.
    /// - Parameter image: Any size; usually the thumbnail the job just made.
    /// - Returns: 64 bits, bit 63 the DC coefficient's.
    public static func compute(_ image: RGBAImage) -> UInt64 {
        let grid = reducedLuma(image)
        // Rows first: for each grid row y, the 8 lowest horizontal frequencies.
        var rows = [Double](repeating: 0, count: gridSide * keptSide)
        for y in 0..<gridSide {
            for u in 0..<keptSide {
                var sum = 0.0
                for x in 0..<gridSide { sum += grid[y * gridSide + x] * cosines[u * gridSide + x] }
                rows[y * keptSide + u] = sum
            }
        }
        // Then columns: coefficient (v, u) = vertical frequency v, horizontal u.
        var coefficients = [Double](repeating: 0, count: keptSide * keptSide)
        for v in 0..<keptSide {
            for u in 0..<keptSide {
                var sum = 0.0
                for y in 0..<gridSide { sum += rows[y * keptSide + u] * cosines[v * gridSide + y] }
                coefficients[v * keptSide + u] = sum
            }
        }
        let sorted = coefficients.sorted()
        let median = (sorted[31] + sorted[32]) / 2
        var hash: UInt64 = 0
        for value in coefficients { hash = hash << 1 | (value > median ? 1 : 0) }
        return hash
    }

    /// Bits in which two hashes differ.
    public static func distance(_ a: UInt64, _ b: UInt64) -> Int { (a ^ b).nonzeroBitCount }

    /// The hash as 16 lower-case hex digits.
    public static func hex(_ hash: UInt64) -> String {
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The picture's luma averaged over a 32 × 32 grid of areas (each cell at least one pixel).
    static func reducedLuma(_ image: RGBAImage) -> [Double] {
        var grid = [Double](repeating: 0, count: gridSide * gridSide)
        let width = image.width, height = image.height
        image.pixels.withUnsafeBufferPointer { pixels in
            for cellY in 0..<gridSide {
                let y0 = cellY * height / gridSide
                let y1 = max(y0 + 1, (cellY + 1) * height / gridSide)
                for cellX in 0..<gridSide {
                    let x0 = cellX * width / gridSide
                    let x1 = max(x0 + 1, (cellX + 1) * width / gridSide)
                    var sum = 0
                    for y in y0..<y1 {
                        var i = (y * width + x0) * 4
                        for _ in x0..<x1 {
                            sum += 299 * Int(pixels[i]) + 587 * Int(pixels[i + 1]) + 114 * Int(pixels[i + 2])
                            i += 4
                        }
                    }
                    grid[cellY * gridSide + cellX] = Double(sum) / Double(1000 * (y1 - y0) * (x1 - x0))
                }
            }
        }
        return grid
    }
}
