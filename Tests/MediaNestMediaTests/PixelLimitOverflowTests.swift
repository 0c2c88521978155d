import MediaNestMedia
import Testing

/// Fuzz finding `probe/png-dimensions-product-overflow`: a PNG header claiming about 3.7 × 4.1
/// billion pixels made `Int64(width) * Int64(height)` overflow, and the metadata job trapped
/// instead of failing with `pixel_limit` (the still decoder had the same product for TIFF/PNG).
@Suite("Pixel limit: dimensions whose product overflows")
struct PixelLimitOverflowTests {
    @Test("a product past Int64.max is over the limit, not a trap")
    func overflowingProductIsOverTheLimit() {
        let limits = MediaLimits()
        #expect(limits.exceedsPixelLimit(width: 0xDF4F_9EBE, height: 0xF27E_F0E5))
        #expect(limits.exceedsPixelLimit(width: 0xFFFF_FFFF, height: 0xFFFF_FFFF))
        #expect(limits.exceedsPixelLimit(width: 10_001, height: 10_000))
        #expect(!limits.exceedsPixelLimit(width: 10_000, height: 10_000))
    }
}
