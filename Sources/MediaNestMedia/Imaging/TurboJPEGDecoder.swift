import CTurboJPEG
import MediaNestCore

/// Decodes JPEGs with libjpeg-turbo's TurboJPEG API, scaled in the DCT domain, straight to RGBA.
///
/// Used by ``StillImageDecoder`` for YCbCr and greyscale JPEGs (baseline and progressive): its
/// entropy decoder is faster than libavcodec's mjpeg and it offers eighth-step scaling factors
/// (1/8, 1/4, 3/8, 1/2, 5/8, 3/4, 7/8), finer than `lowres`. CMYK/YCCK JPEGs stay with libavcodec,
/// which converts them to RGB (TurboJPEG 2.1 would only hand back CMYK).
enum TurboJPEGDecoder {
    /// What the header says, read before anything is decoded.
    struct Header {
        var width: Int
        var height: Int
        /// `TJCS_*`: `TJCS_YCbCr`, `TJCS_GRAY`, `TJCS_RGB`, `TJCS_CMYK` or `TJCS_YCCK`.
        var colorspace: Int32

        /// Whether TurboJPEG can give RGB for it (CMYK and YCCK it can only give as CMYK).
        var decodesToRGB: Bool { colorspace != Int32(TJCS_CMYK.rawValue) && colorspace != Int32(TJCS_YCCK.rawValue) }
    }

    /// Why a decode did not give a picture.
    enum Failure: Error {
        /// TurboJPEG refused the data (a hard error); the caller may try libavcodec.
        case hard(String)
    }

    /// One TurboJPEG decompressor (one `tjhandle`), destroyed with its owner.
    ///
    /// A handle is made per decode: `tjInitDecompress` costs a few microseconds against the
    /// milliseconds of a decode, and a per-call handle needs no thread-affinity bookkeeping.
    final class Handle {
        let pointer: tjhandle

        init() throws(Failure) {
            guard let handle = tjInitDecompress() else { throw .hard("TurboJPEG could not make a decompressor: \(String(cString: tjGetErrorStr2(nil)))") }
            pointer = handle
        }

        deinit { tjDestroy(pointer) }

        var errorText: String { String(cString: tjGetErrorStr2(pointer)) }
    }

    /// The header of a JPEG held in `bytes`, or a hard failure when TurboJPEG cannot read it.
    static func header(_ bytes: UnsafeRawBufferPointer, handle: Handle) throws(Failure) -> Header {
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let status = tjDecompressHeader3(handle.pointer, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt(bytes.count),
                                         &width, &height, &subsampling, &colorspace)
        guard status == 0, width > 0, height > 0 else { throw .hard(handle.errorText) }
        return Header(width: Int(width), height: Int(height), colorspace: colorspace)
    }

    /// The largest reduction TurboJPEG offers (its scaling factors up to 1/1) whose result still
    /// covers `maxLongEdge` on the long edge, as a fraction; 1/1 when the picture is smaller.
    /// The same rule as ``PacketImageDecoder/jpegLowres(width:height:maxLongEdge:)``, with finer steps.
    static func scalingFactor(width: Int, height: Int, maxLongEdge: Int) -> (num: Int, denom: Int) {
        var count: Int32 = 0
        guard let factors = tjGetScalingFactors(&count), count > 0 else { return (1, 1) }
        let long = max(width, height)
        var best = (num: 1, denom: 1)
        for i in 0..<Int(count) {
            let (num, denom) = (Int(factors[i].num), Int(factors[i].denom))
            guard num <= denom else { continue }
            // TJSCALED rounds up: ceil(long * num / denom).
            let scaled = (long * num + denom - 1) / denom
            if scaled >= maxLongEdge && num * best.denom < best.num * denom { best = (num, denom) }
        }
        return best
    }

    /// Decodes `bytes` at `factor` to RGBA. A truncated or slightly damaged JPEG (a TurboJPEG
    /// warning) gives what decoded; rows never reached stay mid-grey.
    /// - Parameter cmyk: Decode a CMYK/YCCK JPEG to its CMYK samples instead (four bytes per
    ///   pixel in the picture's RGBA slots), for its ICC profile to convert.
    /// - Returns: The picture (opaque) and whether TurboJPEG warned.
    static func decode(_ bytes: UnsafeRawBufferPointer, header: Header, factor: (num: Int, denom: Int), fastDCT: Bool,
                       handle: Handle, cmyk: Bool = false) throws(Failure) -> (image: RGBAImage, warned: Bool) {
        let width = (header.width * factor.num + factor.denom - 1) / factor.denom
        let height = (header.height * factor.num + factor.denom - 1) / factor.denom
        // Progressive JPEGs with thousands of scans are a known CPU bomb; 500 is libjpeg-turbo's limit.
        var flags = Int32(TJFLAG_LIMITSCANS)
        if fastDCT { flags |= Int32(TJFLAG_FASTDCT) }
        var status: Int32 = 0
        // Decoded straight into the picture's bytes (no second copy of the picture).
        let rgba = [UInt8](unsafeUninitializedCapacity: width * height * 4) { buffer, count in
            // Mid-grey, opaque: what a row the decoder never reached shows (as libavcodec does).
            let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
            for i in 0..<(width * height) { raw.storeBytes(of: UInt32(littleEndian: 0xFF80_8080), toByteOffset: i * 4, as: UInt32.self) }
            status = tjDecompress2(handle.pointer, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt(bytes.count),
                                   buffer.baseAddress, Int32(width), Int32(width * 4), Int32(height),
                                   Int32(cmyk ? TJPF_CMYK.rawValue : TJPF_RGBA.rawValue), flags)
            count = width * height * 4
        }
        var warned = false
        if status != 0 {
            // tjGetErrorCode says "warning" also for a fatal error after an earlier warning; the
            // picture is then partly decoded, which is what a damaged file can give anyway.
            guard tjGetErrorCode(handle.pointer) == Int32(TJERR_WARNING.rawValue) else { throw .hard(handle.errorText) }
            warned = true
        }
        return (RGBAImage(width: width, height: height, pixels: rgba, hasAlpha: false), warned)
    }
}
