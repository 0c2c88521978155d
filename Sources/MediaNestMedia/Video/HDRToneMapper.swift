import CFFmpeg
import Foundation
import MediaNestCore

/// Turns PQ (HDR10) and HLG video frames, and BT.2020 SDR frames, into 8-bit sRGB pictures that
/// look like what a player would show on an SDR screen, instead of the flat, washed-out grey one
/// gets by treating the HDR signal as if it were BT.709.
///
/// The work happens on the picture already reduced to its output size (a thumbnail or preview,
/// not the 4K frame), so a plain Swift loop over lookup tables is fast enough:
/// 1. libswscale converts the YUV frame to 16-bit RGB at the output size (BT.2020 matrix, the
///    frame's range), still in the PQ or HLG signal domain;
/// 2. the transfer's EOTF gives linear light in units of SDR reference white (203 cd/m², the
///    HDR reference white of ITU-R BT.2408): PQ is absolute; HLG goes through its inverse OETF and
///    the OOTF of a 1000 cd/m² display (system gamma 1.2);
/// 3. BT.2020 primaries become BT.709/sRGB primaries (linear 3×3 matrix, negatives clipped);
/// 4. the ITU-R BT.2390 EETF (a Hermite knee in the PQ domain) compresses everything between
///    reference white and the content's peak (MaxCLL, else the mastering display's maximum, else
///    1000 cd/m²). It is applied to max(R, G, B) and the three channels are scaled by the same
///    gain, so hue and saturation survive; below the knee the picture is left as it is;
/// 5. the sRGB OETF and 8-bit quantisation.
enum HDRToneMapper {
    /// How the frame's signal is to be read.
    enum Transfer: Sendable, Hashable {
        /// SMPTE ST 2084 (HDR10, Dolby Vision base layers).
        case pq
        /// ARIB STD-B67 hybrid log-gamma.
        case hlg
        /// BT.2020 SDR (BT.1886 gamma 2.4 display); only the primaries need converting.
        case sdr
    }

    /// What a frame needs.
    struct Mapping: Sendable, Hashable {
        var transfer: Transfer
        /// Whether the primaries are BT.2020 (else BT.709 is assumed).
        var bt2020Primaries: Bool
        /// The content's peak luminance in cd/m².
        var peakNits: Double
    }

    /// SDR reference white in cd/m² (BT.2408).
    static let referenceWhite = 203.0

    /// The mapping `frame` needs, or `nil` for ordinary SDR BT.601/709 video (for which
    /// ``FrameConverter`` is right). Unspecified frame properties fall back to the stream's.
    static func mapping(for frame: UnsafePointer<AVFrame>, stream: UnsafeMutablePointer<AVStream>) -> Mapping? {
        let parameters = stream.pointee.codecpar.pointee
        let trc = frame.pointee.color_trc != AVCOL_TRC_UNSPECIFIED ? frame.pointee.color_trc : parameters.color_trc
        let primaries = frame.pointee.color_primaries != AVCOL_PRI_UNSPECIFIED ? frame.pointee.color_primaries : parameters.color_primaries
        let bt2020 = primaries == AVCOL_PRI_BT2020
        switch trc {
        case AVCOL_TRC_SMPTE2084:
            return Mapping(transfer: .pq, bt2020Primaries: bt2020, peakNits: peakLuminance(frame: frame, stream: stream) ?? 1000)
        case AVCOL_TRC_ARIB_STD_B67:
            return Mapping(transfer: .hlg, bt2020Primaries: bt2020, peakNits: 1000)
        default:
            return bt2020 ? Mapping(transfer: .sdr, bt2020Primaries: true, peakNits: referenceWhite) : nil
        }
    }

    /// MaxCLL, else the mastering display's peak, from the frame's or the stream's side data.
    static func peakLuminance(frame: UnsafePointer<AVFrame>, stream: UnsafeMutablePointer<AVStream>) -> Double? {
        var maxCLL: Double?
        var mastering: Double?
        if let side = av_frame_get_side_data(frame, AV_FRAME_DATA_CONTENT_LIGHT_LEVEL), let data = side.pointee.data,
           side.pointee.size >= MemoryLayout<AVContentLightMetadata>.size {
            let value = UnsafeRawPointer(data).loadUnaligned(as: AVContentLightMetadata.self).MaxCLL
            if value > 0 { maxCLL = Double(value) }
        }
        if maxCLL == nil {
            var size = 0
            if let data = av_stream_get_side_data(stream, AV_PKT_DATA_CONTENT_LIGHT_LEVEL, &size), size >= MemoryLayout<AVContentLightMetadata>.size {
                let value = UnsafeRawPointer(data).loadUnaligned(as: AVContentLightMetadata.self).MaxCLL
                if value > 0 { maxCLL = Double(value) }
            }
        }
        if let side = av_frame_get_side_data(frame, AV_FRAME_DATA_MASTERING_DISPLAY_METADATA), let data = side.pointee.data,
           side.pointee.size >= MemoryLayout<AVMasteringDisplayMetadata>.size {
            let metadata = UnsafeRawPointer(data).loadUnaligned(as: AVMasteringDisplayMetadata.self)
            if metadata.has_luminance != 0, metadata.max_luminance.den > 0 { mastering = av_q2d(metadata.max_luminance) }
        }
        if mastering == nil {
            var size = 0
            if let data = av_stream_get_side_data(stream, AV_PKT_DATA_MASTERING_DISPLAY_METADATA, &size), size >= MemoryLayout<AVMasteringDisplayMetadata>.size {
                let metadata = UnsafeRawPointer(data).loadUnaligned(as: AVMasteringDisplayMetadata.self)
                if metadata.has_luminance != 0, metadata.max_luminance.den > 0 { mastering = av_q2d(metadata.max_luminance) }
            }
        }
        guard let peak = maxCLL ?? mastering, peak.isFinite, peak > 0 else { return nil }
        return peak
    }

    /// Converts `frame` to an sRGB picture of exactly `width` × `height`, tone-mapped per `mapping`.
    /// - Throws: ``JobError`` `unsupported_format` for a pixel format libswscale cannot read.
    static func convert(_ frame: UnsafePointer<AVFrame>, width: Int, height: Int, mapping: Mapping) throws(JobError) -> RGBAImage {
        let rgb = try signalRGB48(frame, width: width, height: height)
        let tables = Tables.make(for: mapping)
        var pixels = [UInt8](repeating: 255, count: width * height * 4)
        let m = mapping.bt2020Primaries ? bt2020ToBT709 : identity
        let hlg = mapping.transfer == .hlg
        let hlgScale = 1000.0 / referenceWhite
        let gainTop = Double(tables.gain.count - 1)
        let oetfTop = Double(tables.oetf.count - 1)
        rgb.withUnsafeBufferPointer { source in
            pixels.withUnsafeMutableBufferPointer { out in
                tables.eotf.withUnsafeBufferPointer { eotf in
                    tables.gain.withUnsafeBufferPointer { gain in
                        tables.oetf.withUnsafeBufferPointer { oetf in
                            tables.hlgSystemGamma.withUnsafeBufferPointer { hlgGamma in
                                for i in 0..<(width * height) {
                                    var r = eotf[Int(source[i * 3] >> 4)]
                                    var g = eotf[Int(source[i * 3 + 1] >> 4)]
                                    var b = eotf[Int(source[i * 3 + 2] >> 4)]
                                    if hlg {
                                        // OOTF: scene light to display light, Ys^(γ-1) with γ = 1.2.
                                        let ys = min(1, max(0, 0.2627 * r + 0.6780 * g + 0.0593 * b))
                                        let factor = hlgScale * hlgGamma[Int((ys.squareRoot() * 4095).rounded())]
                                        r *= factor; g *= factor; b *= factor
                                    }
                                    let r2 = max(0, m.0 * r + m.1 * g + m.2 * b)
                                    let g2 = max(0, m.3 * r + m.4 * g + m.5 * b)
                                    let b2 = max(0, m.6 * r + m.7 * g + m.8 * b)
                                    let peak = max(r2, max(g2, b2))
                                    var k = 1.0
                                    if peak > 0 {
                                        let position = min(1, peak / tables.gainRange).squareRoot() * gainTop
                                        k = gain[Int(position.rounded())]
                                        if peak > tables.gainRange { k *= tables.gainRange / peak }
                                    }
                                    out[i * 4] = oetf[Int((min(1, r2 * k).squareRoot() * oetfTop).rounded())]
                                    out[i * 4 + 1] = oetf[Int((min(1, g2 * k).squareRoot() * oetfTop).rounded())]
                                    out[i * 4 + 2] = oetf[Int((min(1, b2 * k).squareRoot() * oetfTop).rounded())]
                                }
                            }
                        }
                    }
                }
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: false)
    }

    /// The frame as 16-bit RGB in the signal domain (no transfer change), at the output size.
    private static func signalRGB48(_ frame: UnsafePointer<AVFrame>, width: Int, height: Int) throws(JobError) -> [UInt16] {
        let source = FrameConverter.sourceFormat(of: frame)
        guard let context = sws_getContext(frame.pointee.width, frame.pointee.height, source.format,
                                           Int32(width), Int32(height), AV_PIX_FMT_RGB48LE,
                                           FrameConverter.qualityFlags, nil, nil, nil) else {
            let name = CFFmpeg_pix_fmt_name(frame.pointee.format).map { String(cString: $0) } ?? "format \(frame.pointee.format)"
            throw JobError(.unsupportedFormat, "The video's pixel format (\(name)) cannot be converted.")
        }
        defer { sws_freeContext(context) }
        if CFFmpeg_pix_fmt_is_rgb(source.format.rawValue) == 0 {
            let matrix = sws_getCoefficients(FrameConverter.yuvMatrix(of: frame))
            _ = sws_setColorspaceDetails(context, matrix, source.fullRange ? 1 : 0, matrix, 1, 0, 1 << 16, 1 << 16)
        }
        var rgb = ScalerOutput.plane(width * height * 3, of: UInt16.self)
        let status: Int32 = rgb.withUnsafeMutableBytes { out in
            var dst: [UnsafeMutablePointer<UInt8>?] = [out.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil, nil]
            var dstStride: [Int32] = [Int32(width * 6), 0, 0, 0]
            return withUnsafePointer(to: frame.pointee.data) { dataTuple in
                withUnsafePointer(to: frame.pointee.linesize) { strideTuple in
                    dataTuple.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { src in
                        strideTuple.withMemoryRebound(to: Int32.self, capacity: 8) { srcStride in
                            sws_scale(context, src, srcStride, 0, frame.pointee.height, &dst, &dstStride)
                        }
                    }
                }
            }
        }
        guard status > 0 else { throw ffmpegError(status, code: .corruptMedia, "The video frame could not be converted") }
        ScalerOutput.dropPadding(&rgb)
        return rgb
    }

    /// Linear BT.2020 RGB to linear BT.709 RGB (row-major).
    static let bt2020ToBT709 = (1.6605, -0.5876, -0.0728, -0.1246, 1.1329, -0.0083, -0.0182, -0.1006, 1.1187)
    static let identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    /// Lookup tables for one mapping.
    struct Tables {
        /// 12-bit signal code → linear light (units of reference white; HLG: scene light 0…1).
        var eotf: [Double]
        /// HLG only: Ys^0.2 indexed by sqrt(Ys) · 4095.
        var hlgSystemGamma: [Double]
        /// Tone-map gain indexed by sqrt(max(R,G,B) / gainRange) · 4095.
        var gain: [Double]
        /// The linear value the last gain entry stands for (the content's peak).
        var gainRange: Double
        /// sRGB OETF to 8 bits, indexed by sqrt(linear) · 4095.
        var oetf: [UInt8]

        static func make(for mapping: Mapping) -> Tables {
            let size = 4096
            let eotf: [Double] = (0..<size).map { index in
                let code = Double(index) / Double(size - 1)
                switch mapping.transfer {
                case .pq: return pqEOTF(code) * 10000 / referenceWhite
                case .hlg: return hlgInverseOETF(code)
                case .sdr: return pow(code, 2.4)
                }
            }
            let hlgGamma: [Double] = mapping.transfer == .hlg
                ? (0..<size).map { pow(pow(Double($0) / Double(size - 1), 2), 0.2) }
                : []
            let peak = mapping.transfer == .sdr ? 1.0 : min(10000, max(400, mapping.peakNits)) / referenceWhite
            let curve = mapping.transfer == .sdr ? nil : BT2390(sourcePeakNits: peak * referenceWhite, targetPeakNits: referenceWhite)
            var gain = [Double](repeating: 1, count: size)
            for index in 1..<size {
                let x = peak * pow(Double(index) / Double(size - 1), 2)
                gain[index] = curve.map { $0.map(x * referenceWhite) / referenceWhite / x } ?? 1
            }
            gain[0] = gain[1]
            let oetf: [UInt8] = (0..<size).map { index in
                let linear = pow(Double(index) / Double(size - 1), 2)
                let encoded = linear <= 0.0031308 ? 12.92 * linear : 1.055 * pow(linear, 1 / 2.4) - 0.055
                return UInt8(max(0, min(255, (encoded * 255).rounded())))
            }
            return Tables(eotf: eotf, hlgSystemGamma: hlgGamma, gain: gain, gainRange: peak, oetf: oetf)
        }
    }

    /// The ITU-R BT.2390 EETF: identity up to a knee, then a Hermite spline in the PQ domain that
    /// lands the source peak on the target peak.
    struct BT2390 {
        let sourcePQ: Double
        let maxLuminance: Double
        let kneeStart: Double

        init(sourcePeakNits: Double, targetPeakNits: Double) {
            sourcePQ = pqInverseEOTF(sourcePeakNits / 10000)
            maxLuminance = min(1, pqInverseEOTF(targetPeakNits / 10000) / sourcePQ)
            kneeStart = 1.5 * maxLuminance - 0.5
        }

        /// Maps a luminance in cd/m² to the target's range, in cd/m².
        func map(_ nits: Double) -> Double {
            let e1 = min(1, pqInverseEOTF(max(0, nits) / 10000) / sourcePQ)
            var e2 = e1
            if e1 > kneeStart, kneeStart < 1 {
                let t = (e1 - kneeStart) / (1 - kneeStart)
                let t2 = t * t, t3 = t2 * t
                e2 = (2 * t3 - 3 * t2 + 1) * kneeStart + (t3 - 2 * t2 + t) * (1 - kneeStart) + (-2 * t3 + 3 * t2) * maxLuminance
            }
            return pqEOTF(e2 * sourcePQ) * 10000
        }
    }

    // SMPTE ST 2084 constants.
    private static let m1 = 2610.0 / 16384
    private static let m2 = 2523.0 / 4096 * 128
    private static let c1 = 3424.0 / 4096
    private static let c2 = 2413.0 / 4096 * 32
    private static let c3 = 2392.0 / 4096 * 32

    /// PQ signal (0…1) to luminance relative to 10000 cd/m².
    static func pqEOTF(_ signal: Double) -> Double {
        let p = pow(max(0, signal), 1 / m2)
        return pow(max(p - c1, 0) / (c2 - c3 * p), 1 / m1)
    }

    /// Luminance relative to 10000 cd/m² to PQ signal.
    static func pqInverseEOTF(_ luminance: Double) -> Double {
        let y = pow(max(0, luminance), m1)
        return pow((c1 + c2 * y) / (1 + c3 * y), m2)
    }

    /// HLG signal (0…1) to scene-linear light (0…1).
    static func hlgInverseOETF(_ signal: Double) -> Double {
        let a = 0.17883277, b = 0.28466892, c = 0.55991073
        return signal <= 0.5 ? signal * signal / 3 : (exp((signal - c) / a) + b) / 12
    }
}
