import CFFmpeg
import CZlib
import MediaNestCore

/// Decodes the plain TIFFs, uncompressed or deflated, a few rows at a time straight into the
/// reduction, so no full-size copy of the picture is ever held.
///
/// Why: FFmpeg 5.1 decodes a TIFF from one packet (the whole file in memory), inflates a deflated
/// strip whole into a buffer of its own and then copies it into the frame. A 16-bit RGB picture
/// in one strip (what FFmpeg, GIMP and many scanners write) thus cost the packet, the inflated
/// strip and the frame at once: 16 bytes per source pixel at peak. Here the file is read in
/// blocks, each strip is inflated row by row with zlib and the rows go to libswscale as slices
/// (``FrameConverter/SliceScaler``); the peak is the output and a buffer of about a megabyte.
///
/// What is taken: strips (not tiles), chunky samples of 8 or 16 bits, unsigned integers,
/// grey (BlackIsZero) with or without alpha and RGB with or without alpha, no compression or
/// deflate (8 and 32946), no predictor or the horizontal one, fill order 1, the first IFD only and
/// no DNG. Everything else, and any header this reader finds inconsistent, is left to FFmpeg
/// (``layout(_:limits:)`` returns `nil`), which decodes it as before.
///
/// The file is untrusted: every offset and count of the header is checked against the file's
/// size before anything is read, the strip tables are bounded, the picture against
/// ``MediaLimits/maxPixels``, and the job's stop is polled on every block.
///
/// The result is the one FFmpeg's path gives: the same libswscale pixel format (FFmpeg's TIFF
/// decoder's, in the file's byte order), filter and colour handling, fed by slices.
enum TIFFStripDecoder {
    /// The structure of a TIFF this decoder takes, read from its first IFD.
    struct Layout: Equatable {
        var width: Int
        var height: Int
        var littleEndian: Bool
        /// 8 or 16.
        var bitsPerSample: Int
        /// 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA).
        var samplesPerPixel: Int
        var deflated: Bool
        var horizontalPredictor: Bool
        var rowsPerStrip: Int
        var stripOffsets: [Int64]
        var stripByteCounts: [Int64]

        /// Bytes of one row of samples.
        var rowBytes: Int { width * samplesPerPixel * bitsPerSample / 8 }

        /// The pixel format FFmpeg's TIFF decoder gives such a picture.
        var pixelFormat: AVPixelFormat {
            switch (samplesPerPixel, bitsPerSample == 16, littleEndian) {
            case (1, false, _): AV_PIX_FMT_GRAY8
            case (1, true, true): AV_PIX_FMT_GRAY16LE
            case (1, true, false): AV_PIX_FMT_GRAY16BE
            case (2, false, _): AV_PIX_FMT_YA8
            case (2, true, true): AV_PIX_FMT_YA16LE
            case (2, true, false): AV_PIX_FMT_YA16BE
            case (3, false, _): AV_PIX_FMT_RGB24
            case (3, true, true): AV_PIX_FMT_RGB48LE
            case (3, true, false): AV_PIX_FMT_RGB48BE
            case (_, false, _): AV_PIX_FMT_RGBA
            case (_, true, true): AV_PIX_FMT_RGBA64LE
            case (_, true, false): AV_PIX_FMT_RGBA64BE
            }
        }
    }

    /// The most IFD entries read (baseline files have about 15–25).
    static let maxEntries = 1000
    /// The most strips accepted (a strip per row of a 1-million-row picture); more go to FFmpeg.
    static let maxStrips = 1 << 20
    /// Size of the blocks the file is read in, and roughly of the row buffer.
    static let blockBytes = 1 << 20

    /// The layout of `reader`'s TIFF when this decoder takes it, else `nil` (FFmpeg decodes it).
    /// - Throws: ``JobError`` `io_error` when the file cannot be read.
    static func layout(_ reader: ByteReader, limits: MediaLimits) throws(JobError) -> Layout? {
        let header = try reader.read(0, 8)
        guard header.count == 8 else { return nil }
        let little: Bool
        if header.starts(with: [0x49, 0x49, 0x2A, 0x00]) { little = true }
        else if header.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { little = false }
        else { return nil }
        func u16(_ b: [UInt8], _ i: Int) -> Int64 { little ? Int64(b[i]) | Int64(b[i + 1]) << 8 : Int64(b[i]) << 8 | Int64(b[i + 1]) }
        func u32(_ b: [UInt8], _ i: Int) -> Int64 {
            little ? Int64(b[i]) | Int64(b[i + 1]) << 8 | Int64(b[i + 2]) << 16 | Int64(b[i + 3]) << 24
                   : Int64(b[i]) << 24 | Int64(b[i + 1]) << 16 | Int64(b[i + 2]) << 8 | Int64(b[i + 3])
        }
        let ifd = u32(header, 4)
        let countBytes = try reader.read(ifd, 2)
        guard countBytes.count == 2 else { return nil }
        let count = Int(u16(countBytes, 0))
        guard count > 0, count <= maxEntries else { return nil }
        let entries = try reader.read(ifd + 2, count * 12)
        guard entries.count == count * 12 else { return nil }

        /// The SHORT or LONG values of entry `e`: inline when they fit in four bytes, else at the
        /// offset the entry gives, which must lie inside the file; `nil` when malformed or too many.
        func values(_ e: Int, limit: Int) throws(JobError) -> [Int64]? {
            let type = u16(entries, e + 2), valueCount = u32(entries, e + 4)
            let size: Int
            switch type {
            case 3: size = 2
            case 4: size = 4
            default: return nil
            }
            guard valueCount >= 1, valueCount <= Int64(limit) else { return nil }
            let total = Int(valueCount) * size
            let bytes: [UInt8]
            if total <= 4 {
                bytes = Array(entries[(e + 8)..<(e + 8 + total)])
            } else {
                let offset = u32(entries, e + 8)
                guard offset + Int64(total) <= reader.size else { return nil }
                bytes = try reader.read(offset, total)
                guard bytes.count == total else { return nil }
            }
            return (0..<Int(valueCount)).map { size == 2 ? u16(bytes, $0 * 2) : u32(bytes, $0 * 4) }
        }

        var width: Int64?, height: Int64?, bits: [Int64]?, compression: Int64 = 1, photometric: Int64?
        var samples: Int64 = 1, rowsPerStrip: Int64 = 0xFFFF_FFFF, offsets: [Int64]?, byteCounts: [Int64]?
        var planar: Int64 = 1, predictor: Int64 = 1, fillOrder: Int64 = 1, sampleFormat: [Int64] = [1]
        var resolutions: [(numerator: Int64, denominator: Int64)?] = [nil, nil]
        for index in 0..<count {
            let e = index * 12
            let tag = u16(entries, e)
            switch tag {
            case 254: guard try values(e, limit: 1) == [0] else { return nil }  // NewSubfileType: a full picture
            case 256: guard let v = try values(e, limit: 1) else { return nil }; width = v[0]
            case 257: guard let v = try values(e, limit: 1) else { return nil }; height = v[0]
            case 258: guard let v = try values(e, limit: 4) else { return nil }; bits = v
            case 259: guard let v = try values(e, limit: 1) else { return nil }; compression = v[0]
            case 262: guard let v = try values(e, limit: 1) else { return nil }; photometric = v[0]
            case 266: guard let v = try values(e, limit: 1) else { return nil }; fillOrder = v[0]
            case 273: guard let v = try values(e, limit: maxStrips) else { return nil }; offsets = v
            case 277: guard let v = try values(e, limit: 1) else { return nil }; samples = v[0]
            case 278: guard let v = try values(e, limit: 1) else { return nil }; rowsPerStrip = v[0]
            case 279: guard let v = try values(e, limit: maxStrips) else { return nil }; byteCounts = v
            case 284: guard let v = try values(e, limit: 1) else { return nil }; planar = v[0]
            case 317: guard let v = try values(e, limit: 1) else { return nil }; predictor = v[0]
            case 339: guard let v = try values(e, limit: 4) else { return nil }; sampleFormat = v
            case 282, 283:
                // X/YResolution: FFmpeg gives pixels of unequal resolutions a sample aspect ratio.
                guard u16(entries, e + 2) == 5, u32(entries, e + 4) == 1 else { return nil }
                let value = try reader.read(u32(entries, e + 8), 8)
                guard value.count == 8 else { return nil }
                resolutions[tag == 282 ? 0 : 1] = (u32(value, 0), u32(value, 4))
            // Tiles, sub-IFDs (DNG, reduced images), JPEG tables, DNG, YCbCr subsampling: FFmpeg's.
            case 322, 323, 324, 325, 330, 347, 530, 50706: return nil
            default: break
            }
        }
        guard let width, let height, width > 0, height > 0, width <= Int64(Int32.max), height <= Int64(Int32.max),
              !limits.exceedsPixelLimit(width: Int(width), height: Int(height)),
              (1...4).contains(samples), let bits, bits.count == Int(samples), let depth = bits.first, depth == 8 || depth == 16,
              bits.allSatisfy({ $0 == depth }), sampleFormat.allSatisfy({ $0 == 1 }),
              compression == 1 || compression == 8 || compression == 32946,
              predictor == 1 || predictor == 2, planar == 1, fillOrder == 1,
              photometric == (samples <= 2 ? 1 : 2), rowsPerStrip > 0,
              let offsets, let byteCounts else { return nil }
        if let x = resolutions[0], let y = resolutions[1], x.numerator > 0, x.denominator > 0, y.numerator > 0, y.denominator > 0,
           // Each part is a 32-bit count, so a product can pass Int64.max: compare in UInt64,
           // where (2^32 - 1)^2 fits (a fuzzer's file overflowed the Int64 product).
           UInt64(x.numerator) * UInt64(y.denominator) != UInt64(y.numerator) * UInt64(x.denominator) { return nil }
        let rows = min(rowsPerStrip, height)
        let stripCount = (height + rows - 1) / rows
        guard offsets.count == Int(stripCount), byteCounts.count == Int(stripCount) else { return nil }
        let layout = Layout(width: Int(width), height: Int(height), littleEndian: little, bitsPerSample: Int(depth),
                            samplesPerPixel: Int(samples), deflated: compression != 1, horizontalPredictor: predictor == 2,
                            rowsPerStrip: Int(rows), stripOffsets: offsets, stripByteCounts: byteCounts)
        for strip in 0..<Int(stripCount) {
            let offset = offsets[strip], byteCount = byteCounts[strip]
            guard offset >= 8, byteCount > 0, offset + byteCount <= reader.size else { return nil }
            // An uncompressed strip shorter than its rows is damage FFmpeg reports its own way.
            let stripRows = min(Int64(rows), height - Int64(strip) * Int64(rows))
            if !layout.deflated, byteCount < stripRows * Int64(layout.rowBytes) { return nil }
        }
        return layout
    }

    /// Decodes `layout`'s picture from `file` and reduces it to `width` × `height`.
    ///
    /// A strip that ends early or whose deflate stream is damaged leaves the rest of the picture
    /// black (transparent with alpha), as a truncated JPEG is shown grey; damage before the first
    /// row is `corrupt_media`.
    /// - Throws: ``JobError`` `corrupt_media`, `io_error`, `unsupported_format` or the stop's code.
    static func decode(file: SafeFile, layout: Layout, toWidth width: Int, height: Int, colour: ColourPlan?,
                       stop: StopGuard, what: String) throws(JobError) -> RGBAImage {
        // Grey goes through libswscale as FFmpeg's frame would: luma of unspecified range and matrix.
        let grey = layout.samplesPerPixel <= 2
        let scaler = try FrameConverter.SliceScaler(width: layout.width, height: layout.height, format: layout.pixelFormat, fullRange: false,
                                                    matrix: grey ? (layout.height >= 720 ? CFFmpeg_SWS_CS_ITU709 : CFFmpeg_SWS_CS_ITU601) : nil,
                                                    toWidth: width, height: height, colour: colour)
        let rowBytes = layout.rowBytes
        let bufferRows = max(1, min(layout.height, blockBytes / max(rowBytes, 1)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferRows * rowBytes, alignment: 16)
        defer { buffer.deallocate() }
        let base = buffer.baseAddress!
        var filled = 0        // rows in `buffer` not yet handed to libswscale
        var fed = 0           // rows handed to libswscale
        var damaged = false

        func flush() throws(JobError) {
            guard filled > 0 else { return }
            var planes: [UnsafePointer<UInt8>?] = [UnsafePointer(base.assumingMemoryBound(to: UInt8.self)), nil, nil, nil]
            var strides: [Int32] = [Int32(rowBytes), 0, 0, 0]
            try scaler.feed(planes: &planes, strides: &strides, firstRow: fed, rows: filled)
            fed += filled
            filled = 0
            try stop.check()
        }

        for strip in 0..<layout.stripOffsets.count {
            let stripRows = min(layout.rowsPerStrip, layout.height - strip * layout.rowsPerStrip)
            let source = try StripSource(file: file, offset: layout.stripOffsets[strip], length: layout.stripByteCounts[strip],
                                         deflated: layout.deflated, what: what)
            var done = 0
            while done < stripRows {
                let n = min(stripRows - done, bufferRows - filled)
                let destination = base + filled * rowBytes
                let got = damaged ? 0 : try source.read(into: destination, count: n * rowBytes)
                if got < n * rowBytes {
                    if !damaged && fed == 0 && filled == 0 && got < rowBytes {
                        throw JobError(.corruptMedia, "\(what.prefix(1).uppercased() + what.dropFirst()) cannot be decoded: its first strip is damaged.")
                    }
                    damaged = true
                    memset(destination + got, 0, n * rowBytes - got)
                }
                if layout.horizontalPredictor { undoPredictor(destination, rows: n, layout: layout) }
                filled += n
                done += n
                if filled == bufferRows { try flush() }
            }
        }
        try flush()
        return try scaler.finish()
    }

    /// The bytes of one strip, read from the file in blocks and inflated when deflated.
    private final class StripSource {
        let file: SafeFile
        let offset: Int64
        let length: Int64
        /// zlib's state; allocated so its address never moves (zlib checks it on every call).
        let stream: UnsafeMutablePointer<z_stream>?
        let input: UnsafeMutableRawBufferPointer?
        var consumed: Int64 = 0
        var ended = false

        init(file: SafeFile, offset: Int64, length: Int64, deflated: Bool, what: String) throws(JobError) {
            self.file = file
            self.offset = offset
            self.length = length
            guard deflated else { stream = nil; input = nil; return }
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            guard inflateInit_(stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                stream.deallocate()
                throw JobError(.internalError, "zlib could not start inflating \(what).")
            }
            self.stream = stream
            self.input = .allocate(byteCount: Int(min(Int64(TIFFStripDecoder.blockBytes), length)), alignment: 16)
        }

        deinit {
            if let stream {
                inflateEnd(stream)
                stream.deallocate()
            }
            input?.deallocate()
        }

        /// Fills `count` bytes at `destination`; returns how many it could (fewer when the strip
        /// ends early or is damaged).
        func read(into destination: UnsafeMutableRawPointer, count: Int) throws(JobError) -> Int {
            guard let stream, let input else {
                // Uncompressed: the rows are the strip's bytes.
                let available = Int(min(Int64(count), length - consumed))
                guard available > 0 else { return 0 }
                switch file.readFully(into: UnsafeMutableRawBufferPointer(start: destination, count: available), at: offset + consumed) {
                case .success(let got):
                    consumed += Int64(got)
                    return got
                case .failure(let code):
                    throw JobError(.ioError, "Reading \(file.relativePath) failed: \(errnoText(code)).")
                }
            }
            var produced = 0
            while produced < count && !ended {
                if stream.pointee.avail_in == 0 {
                    guard consumed < length else { break }
                    let block = Int(min(Int64(input.count), length - consumed))
                    switch file.readFully(into: UnsafeMutableRawBufferPointer(rebasing: input[0..<block]), at: offset + consumed) {
                    case .success(let got):
                        guard got > 0 else { return produced }
                        consumed += Int64(got)
                        stream.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        stream.pointee.avail_in = UInt32(got)
                    case .failure(let code):
                        throw JobError(.ioError, "Reading \(file.relativePath) failed: \(errnoText(code)).")
                    }
                }
                stream.pointee.next_out = (destination + produced).assumingMemoryBound(to: UInt8.self)
                stream.pointee.avail_out = UInt32(count - produced)
                let status = inflate(stream, Z_NO_FLUSH)
                produced = count - Int(stream.pointee.avail_out)
                switch status {
                case Z_STREAM_END: ended = true
                case Z_OK: continue
                case Z_BUF_ERROR where stream.pointee.avail_in == 0: continue
                default: ended = true  // damaged: what was inflated stands
                }
            }
            return produced
        }
    }

    /// Undoes the horizontal predictor (TIFF predictor 2) on `count` rows at `rows`: each sample
    /// was stored as its difference from the same sample of the pixel to its left, in the file's
    /// byte order.
    static func undoPredictor(_ rows: UnsafeMutableRawPointer, rows count: Int, layout: Layout) {
        let rowBytes = layout.rowBytes
        let step = layout.samplesPerPixel
        let p = rows.assumingMemoryBound(to: UInt8.self)
        for row in 0..<count {
            let base = row * rowBytes
            if layout.bitsPerSample == 8 {
                var i = base + step
                while i < base + rowBytes {
                    p[i] = p[i] &+ p[i - step]
                    i += 1
                }
            } else {
                let samples = rowBytes / 2
                var s = step
                while s < samples {
                    let at = base + s * 2, left = base + (s - step) * 2
                    if layout.littleEndian {
                        let v = (UInt16(p[at]) | UInt16(p[at + 1]) << 8) &+ (UInt16(p[left]) | UInt16(p[left + 1]) << 8)
                        p[at] = UInt8(v & 0xFF); p[at + 1] = UInt8(v >> 8)
                    } else {
                        let v = (UInt16(p[at]) << 8 | UInt16(p[at + 1])) &+ (UInt16(p[left]) << 8 | UInt16(p[left + 1]))
                        p[at] = UInt8(v >> 8); p[at + 1] = UInt8(v & 0xFF)
                    }
                    s += 1
                }
            }
        }
    }
}
