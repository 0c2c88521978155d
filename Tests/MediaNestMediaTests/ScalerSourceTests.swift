import CFFmpeg
import Foundation
@testable import MediaNestMedia
import Testing

/// libswscale's vectorised input reads whole words, past the last row of a source narrower
/// than a word. ``ScalerOutput/withReadableSource(planes:strides:format:width:rows:_:)`` copies
/// such slivers into padded buffers first.
@Suite("libswscale never reads past a sliver's pixels")
struct ScalerSourceTests {
    /// A sliver whose last pixel is the last byte before an unreadable page: a read past it
    /// faults (the test process dies, which is how this test fails without the copy).
    @Test(arguments: [(1, 50, 10), (1, 3, 1), (2, 64, 8), (3, 7, 3), (5, 101, 20)])
    func aSliverAtTheEndOfReadableMemoryConverts(width: Int, height: Int, toHeight: Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let region = try #require(mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(region != MAP_FAILED)
        defer { munmap(region, 2 * page) }
        try #require(mprotect(region + page, page, PROT_NONE) == 0)
        let bytes = width * height * 4
        let start = (region + page - bytes).assumingMemoryBound(to: UInt8.self)
        for pixel in 0..<(width * height) {
            (start + pixel * 4).update(from: [200, 50, 10, 255], count: 4)
        }
        var planes: [UnsafePointer<UInt8>?] = [UnsafePointer(start), nil, nil, nil]
        var strides: [Int32] = [Int32(width * 4), 0, 0, 0]
        let image = try FrameConverter.convert(planes: &planes, strides: &strides, width: width, height: height, format: AV_PIX_FMT_RGBA,
                                               fullRange: true, matrix: nil, toWidth: width, height: toHeight)
        #expect(image.width == width && image.height == toHeight)
        #expect(stride(from: 0, to: image.pixels.count, by: 4).allSatisfy { abs(Int(image.pixels[$0]) - 200) <= 1 && abs(Int(image.pixels[$0 + 2]) - 10) <= 1 })
    }

    /// Only slivers are copied: a wide picture's planes reach libswscale as they are.
    @Test func onlyNarrowRowsAreCopied() {
        let wide = [UInt8](repeating: 7, count: 64 * 4 * 2)
        let narrow = [UInt8](repeating: 7, count: 3 * 4 * 2)
        for (pixels, width, copied) in [(wide, 64, false), (narrow, 3, true)] {
            pixels.withUnsafeBufferPointer { buffer in
                let planes: [UnsafePointer<UInt8>?] = [buffer.baseAddress, nil, nil, nil]
                let strides: [Int32] = [Int32(width * 4), 0, 0, 0]
                ScalerOutput.withReadableSource(planes: planes, strides: strides, format: AV_PIX_FMT_RGBA, width: width, rows: 2) { given, givenStrides in
                    #expect((given[0] != buffer.baseAddress) == copied)
                    #expect(givenStrides[0] == Int32(width * 4))
                    #expect(given[1] == nil)
                    #expect(UnsafeBufferPointer(start: given[0], count: width * 8).allSatisfy { $0 == 7 })
                }
            }
        }
    }
}
