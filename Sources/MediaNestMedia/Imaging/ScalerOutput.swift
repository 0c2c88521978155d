import CFFmpeg

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

    // MARK: Sources

    /// Rows narrower than this many bytes are copied before libswscale reads them.
    static let narrowRowBytes = 64

    /// Runs `body` with source planes libswscale may read past.
    ///
    /// Its vectorised input functions load whole words too: valgrind shows reads of 4 to 16 bytes
    /// past the last row of a tightly packed RGBA source 1 to 5 pixels wide (none at 33). A read
    /// corrupts nothing, but past the end of an mmapped block that ends just before an unmapped
    /// page it faults, and an upload can choose a height that puts a sliver's pixels there.
    /// So when a plane's rows are narrower than ``narrowRowBytes``, the `rows` rows (luma rows;
    /// chroma planes get their share) are copied, tightly packed, into buffers followed by
    /// ``tailPadding`` bytes; otherwise the planes are used as they are. Copies are of slivers
    /// only, so they cost next to nothing.
    /// - Parameters:
    ///   - planes: Up to four plane pointers in libswscale's order for `format`, each at the first row to read.
    ///   - strides: Their strides in bytes (bottom-up strides are passed through as they are).
    ///   - format: The planes' pixel format.
    ///   - width: The picture's width.
    ///   - rows: How many (luma) rows libswscale reads.
    static func withReadableSource<R, E: Error>(planes: UnsafePointer<UnsafePointer<UInt8>?>, strides: UnsafePointer<Int32>,
                                               format: AVPixelFormat, width: Int, rows: Int,
                                               _ body: (UnsafePointer<UnsafePointer<UInt8>?>, UnsafePointer<Int32>) throws(E) -> R) throws(E) -> R {
        var rowBytes: [Int32] = [0, 0, 0, 0]
        var chromaShiftX: Int32 = 0, chromaShiftY: Int32 = 0
        guard av_image_fill_linesizes(&rowBytes, format, Int32(width)) >= 0,
              av_pix_fmt_get_chroma_sub_sample(format, &chromaShiftX, &chromaShiftY) >= 0,
              (0..<4).contains(where: { planes[$0] != nil && rowBytes[$0] > 0 && rowBytes[$0] < narrowRowBytes }),
              (0..<4).allSatisfy({ planes[$0] == nil || strides[$0] >= rowBytes[$0] }) else {
            return try body(planes, strides)
        }
        // One buffer: each plane's rows, tightly packed, then the padding.
        var offsets: [Int?] = [nil, nil, nil, nil]
        var planeRows = [0, 0, 0, 0]
        var total = 0
        for index in 0..<4 where planes[index] != nil && rowBytes[index] > 0 {
            planeRows[index] = index == 1 || index == 2 ? (rows + (1 << chromaShiftY) - 1) >> chromaShiftY : rows
            offsets[index] = total
            total += Int(rowBytes[index]) * planeRows[index] + tailPadding
        }
        var copy = [UInt8](repeating: 0, count: total)
        copy.withUnsafeMutableBufferPointer { out in
            for index in 0..<4 {
                guard let offset = offsets[index], let source = planes[index] else { continue }
                let bytes = Int(rowBytes[index])
                for row in 0..<planeRows[index] {
                    (out.baseAddress! + offset + row * bytes).update(from: source + row * Int(strides[index]), count: bytes)
                }
            }
        }
        let copiedStrides: [Int32] = (0..<4).map { offsets[$0] == nil ? 0 : rowBytes[$0] }
        return try copy.withUnsafeBufferPointer { buffer throws(E) -> R in
            let pointers: [UnsafePointer<UInt8>?] = offsets.map { offset in offset.map { buffer.baseAddress! + $0 } }
            return try pointers.withUnsafeBufferPointer { pointers throws(E) -> R in
                try copiedStrides.withUnsafeBufferPointer { copiedStrides throws(E) -> R in
                    try body(pointers.baseAddress!, copiedStrides.baseAddress!)
                }
            }
        }
    }
}

extension RGBAImage {
    /// Runs `body` with the picture's pixels as one RGBA plane libswscale may read past
    /// (``ScalerOutput/withReadableSource(planes:strides:format:width:rows:_:)``).
    func withReadablePixels<R>(_ body: (UnsafePointer<UnsafePointer<UInt8>?>, UnsafePointer<Int32>) -> R) -> R {
        pixels.withUnsafeBufferPointer { src in
            let planes: [UnsafePointer<UInt8>?] = [src.baseAddress, nil, nil, nil]
            let strides: [Int32] = [Int32(width * 4), 0, 0, 0]
            return planes.withUnsafeBufferPointer { planes in
                strides.withUnsafeBufferPointer { strides in
                    ScalerOutput.withReadableSource(planes: planes.baseAddress!, strides: strides.baseAddress!, format: AV_PIX_FMT_RGBA,
                                                    width: width, rows: height, body)
                }
            }
        }
    }
}
