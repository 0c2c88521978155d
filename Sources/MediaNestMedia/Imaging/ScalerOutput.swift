/// Planes for libswscale to write into, with the room it takes past their end.
///
/// libswscale's vectorised output functions store whole SIMD words per row, so a row narrower
/// than a word is written past its end. It switches to its scalar functions for the last two
/// rows of the picture, which is enough when a row is at least a word wide (the overrun lands
/// in the next row, written afterwards) and FFmpeg's own frames have padded strides. A tightly
/// packed plane of a picture one or two pixels wide has neither: the word stored for row
/// `h - 3` reaches past the end of the plane. Measured on FFmpeg 5.1 (AVX2), over the formats
/// and filters the project uses and outputs up to 40 × 70: up to 14 bytes past an 8-bit plane
/// and 26 past a 16-bit one. In the worker an upload 66 × 3632 pixels, whose frame is scored on
/// a 1 × 64 grey sample, wrote into the heap block after the plane (the `still` fuzz target's
/// AddressSanitizer reports, `asan_allocator.cpp:191`), and between planes packed end to end
/// the overrun overwrote the first rows of the next plane.
///
/// So every plane the project hands libswscale (not an `AVFrame` FFmpeg allocated itself) is
/// followed by ``tailPadding`` bytes it may scribble on, and the padding is dropped afterwards
/// without copying the plane.
enum ScalerOutput {
    /// Bytes left free after each plane: well above the 26 measured, and above what two 64-byte
    /// stores (an AVX-512 build's words) could reach.
    static let tailPadding = 256

    /// `count` zeroed elements and the padding after them.
    static func plane<Element: FixedWidthInteger>(_ count: Int, of: Element.Type = UInt8.self) -> [Element] {
        [Element](repeating: 0, count: count + paddingElements(Element.self))
    }

    /// Drops the padding from a plane made by ``plane(_:of:)`` (its capacity stays).
    static func dropPadding<Element: FixedWidthInteger>(_ plane: inout [Element]) {
        plane.removeLast(paddingElements(Element.self))
    }

    /// The padding, in elements.
    static func paddingElements<Element: FixedWidthInteger>(_: Element.Type) -> Int {
        (tailPadding + MemoryLayout<Element>.stride - 1) / MemoryLayout<Element>.stride
    }
}
