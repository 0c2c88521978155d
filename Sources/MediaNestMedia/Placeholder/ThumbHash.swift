import Foundation
public import MediaNestCore

/// ThumbHash: a placeholder of about 25 bytes that a client paints before the real thumbnail
/// loads (Evan Wallace's algorithm, https://evanw.github.io/thumbhash/).
///
/// The picture is converted to a luminance/chroma space (L, P = yellow–blue, Q = red–green, and
/// alpha), and the lowest frequencies of a DCT of each channel are quantised to 4 bits. The
/// result keeps the average colour, the coarse layout, the aspect ratio and whether the picture
/// has transparency. This is the standard byte format, so the reference decoders (JavaScript,
/// Swift, Rust, Java) in clients read it unchanged; store it base64-encoded.
///
/// Layout: 5 header bytes (24 bits: L DC 6, P DC 6, Q DC 6, L scale 5, alpha flag 1; 16 bits:
/// L AC count along the short side 3, P scale 6, Q scale 6, landscape flag 1), one alpha byte
/// when the alpha flag is set (A DC 4, A scale 4), then the AC coefficients as 4-bit nibbles, low
/// nibble first. At most 25 bytes.
public enum ThumbHash {
    /// Largest side ``encode(_:)`` accepts without reducing first.
    public static let maxSide = 100

    /// Encodes a picture of at most 100 × 100 pixels.
    ///
    /// A larger picture is reduced first by simple area averaging; prefer
    /// ``encode(fitting:)``, which uses the high-quality scaler.
    /// - Parameter image: The picture (straight alpha).
    /// - Returns: The hash, 5 to 25 bytes.
    public static func encode(_ image: RGBAImage) -> [UInt8] {
        // Clients paint the placeholder as sRGB, whatever colour space the thumbnail is in.
        let image = image.inSRGB()
        let small = image.width > maxSide || image.height > maxSide ? boxReduced(image) : image
        return encodeSmall(small)
    }

    /// Reduces the picture to fit 100 × 100 with ``FrameConverter`` (Lanczos), then encodes it.
    /// - Parameter image: A picture of any size, usually the thumbnail just produced.
    /// - Returns: The hash.
    /// - Throws: ``JobError`` `internal_error` if the scaler cannot be set up.
    public static func encode(fitting image: RGBAImage) throws(JobError) -> [UInt8] {
        let size = RGBAImage.fittedSize(width: image.width, height: image.height, maxLongEdge: maxSide)
        // Clients paint the placeholder as sRGB, whatever colour space the thumbnail is in.
        return encodeSmall(try FrameConverter.resize(image.inSRGB(), width: size.width, height: size.height))
    }

    /// Renders a hash back to a small picture (32 pixels on the long side), as clients do.
    ///
    /// Malformed or truncated hashes never crash: missing bytes read as zero.
    /// - Parameter hash: A hash from ``encode(_:)``.
    /// - Returns: The placeholder picture; `hasAlpha` follows the hash's alpha flag.
    public static func decodeToImage(_ hash: [UInt8]) -> RGBAImage {
        let byte = { (index: Int) -> Int in index < hash.count ? Int(hash[index]) : 0 }
        let header24 = byte(0) | byte(1) << 8 | byte(2) << 16
        let header16 = byte(3) | byte(4) << 8
        let lDC = Double(header24 & 63) / 63
        let pDC = Double((header24 >> 6) & 63) / 31.5 - 1
        let qDC = Double((header24 >> 12) & 63) / 31.5 - 1
        let lScale = Double((header24 >> 18) & 31) / 31
        let hasAlpha = (header24 >> 23) != 0
        let pScale = Double((header16 >> 3) & 63) / 63
        let qScale = Double((header16 >> 9) & 63) / 63
        let isLandscape = (header16 >> 15) != 0
        let lx = max(3, isLandscape ? (hasAlpha ? 5 : 7) : header16 & 7)
        let ly = max(3, isLandscape ? header16 & 7 : (hasAlpha ? 5 : 7))
        let aDC = hasAlpha ? Double(byte(5) & 15) / 15 : 1
        let aScale = Double(byte(5) >> 4) / 15

        // The AC factors, with saturation boosted 1.25× to make up for quantisation.
        var acIndex = 0
        let acStart = hasAlpha ? 6 : 5
        func channel(_ nx: Int, _ ny: Int, _ scale: Double) -> [Double] {
            var ac: [Double] = []
            for cy in 0..<ny {
                var cx = cy > 0 ? 0 : 1
                while cx * ny < nx * (ny - cy) {
                    let nibble = (byte(acStart + acIndex >> 1) >> ((acIndex & 1) << 2)) & 15
                    ac.append((Double(nibble) / 7.5 - 1) * scale)
                    acIndex += 1
                    cx += 1
                }
            }
            return ac
        }
        let lAC = channel(lx, ly, lScale)
        let pAC = channel(3, 3, pScale * 1.25)
        let qAC = channel(3, 3, qScale * 1.25)
        let aAC = hasAlpha ? channel(5, 5, aScale) : []

        let ratio = approximateAspectRatio(hash)
        let w = max(1, Int((ratio > 1 ? 32 : 32 * ratio).rounded()))
        let h = max(1, Int((ratio > 1 ? 32 / ratio : 32).rounded()))
        var pixels = [UInt8](repeating: 0, count: w * h * 4)
        let nx = max(lx, hasAlpha ? 5 : 3), ny = max(ly, hasAlpha ? 5 : 3)
        var fx = [Double](repeating: 0, count: nx), fy = [Double](repeating: 0, count: ny)
        var i = 0
        for y in 0..<h {
            for x in 0..<w {
                var l = lDC, p = pDC, q = qDC, a = aDC
                for cx in 0..<nx { fx[cx] = cos(Double.pi / Double(w) * (Double(x) + 0.5) * Double(cx)) }
                for cy in 0..<ny { fy[cy] = cos(Double.pi / Double(h) * (Double(y) + 0.5) * Double(cy)) }
                var j = 0
                for cy in 0..<ly {
                    var cx = cy > 0 ? 0 : 1
                    let fy2 = fy[cy] * 2
                    while cx * ly < lx * (ly - cy) {
                        l += lAC[j] * fx[cx] * fy2
                        j += 1; cx += 1
                    }
                }
                j = 0
                for cy in 0..<3 {
                    var cx = cy > 0 ? 0 : 1
                    let fy2 = fy[cy] * 2
                    while cx < 3 - cy {
                        let f = fx[cx] * fy2
                        p += pAC[j] * f
                        q += qAC[j] * f
                        j += 1; cx += 1
                    }
                }
                if hasAlpha {
                    j = 0
                    for cy in 0..<5 {
                        var cx = cy > 0 ? 0 : 1
                        let fy2 = fy[cy] * 2
                        while cx < 5 - cy {
                            a += aAC[j] * fx[cx] * fy2
                            j += 1; cx += 1
                        }
                    }
                }
                let (r, g, b) = rgb(l: l, p: p, q: q)
                pixels[i] = unit(r); pixels[i + 1] = unit(g); pixels[i + 2] = unit(b); pixels[i + 3] = unit(a)
                i += 4
            }
        }
        return RGBAImage(width: w, height: h, pixels: pixels, hasAlpha: hasAlpha)
    }

    /// The average colour a hash encodes, each component 0...1.
    /// - Parameter hash: A hash.
    /// - Returns: Red, green, blue and alpha.
    public static func averageColor(_ hash: [UInt8]) -> (red: Double, green: Double, blue: Double, alpha: Double) {
        let byte = { (index: Int) -> Int in index < hash.count ? Int(hash[index]) : 0 }
        let header = byte(0) | byte(1) << 8 | byte(2) << 16
        let l = Double(header & 63) / 63
        let p = Double((header >> 6) & 63) / 31.5 - 1
        let q = Double((header >> 12) & 63) / 31.5 - 1
        let hasAlpha = (header >> 23) != 0
        let (r, g, b) = rgb(l: l, p: p, q: q)
        let clamp = { (v: Double) in max(0, min(1, v)) }
        return (clamp(r), clamp(g), clamp(b), hasAlpha ? Double(byte(5) & 15) / 15 : 1)
    }

    /// The approximate width / height ratio a hash encodes.
    public static func approximateAspectRatio(_ hash: [UInt8]) -> Double {
        guard hash.count >= 5 else { return 1 }
        let header = Int(hash[3])
        let hasAlpha = hash[2] & 0x80 != 0
        let isLandscape = hash[4] & 0x80 != 0
        let lx = isLandscape ? (hasAlpha ? 5 : 7) : header & 7
        let ly = isLandscape ? header & 7 : (hasAlpha ? 5 : 7)
        return ly > 0 && lx > 0 ? Double(lx) / Double(ly) : 1
    }

    /// Whether a hash says the picture has transparency.
    public static func hasAlpha(_ hash: [UInt8]) -> Bool {
        hash.count >= 3 && hash[2] & 0x80 != 0
    }

    // MARK: - Encoding

    private static func encodeSmall(_ image: RGBAImage) -> [UInt8] {
        let w = image.width, h = image.height, count = w * h
        let rgba = image.pixels
        var avgR = 0.0, avgG = 0.0, avgB = 0.0, avgA = 0.0
        for i in 0..<count {
            let alpha = Double(rgba[i * 4 + 3]) / 255
            avgR += alpha / 255 * Double(rgba[i * 4])
            avgG += alpha / 255 * Double(rgba[i * 4 + 1])
            avgB += alpha / 255 * Double(rgba[i * 4 + 2])
            avgA += alpha
        }
        if avgA > 0 {
            avgR /= avgA; avgG /= avgA; avgB /= avgA
        }
        let hasAlpha = avgA < Double(count)
        let lLimit = hasAlpha ? 5.0 : 7.0  // fewer luminance factors when alpha needs the room
        let lx = max(1, Int((lLimit * Double(w) / Double(max(w, h))).rounded()))
        let ly = max(1, Int((lLimit * Double(h) / Double(max(w, h))).rounded()))

        // LPQA, composited over the average colour so transparent pixels do not tint the result.
        var l = [Double](repeating: 0, count: count), p = l, q = l, a = l
        for i in 0..<count {
            let alpha = Double(rgba[i * 4 + 3]) / 255
            let r = avgR * (1 - alpha) + alpha / 255 * Double(rgba[i * 4])
            let g = avgG * (1 - alpha) + alpha / 255 * Double(rgba[i * 4 + 1])
            let b = avgB * (1 - alpha) + alpha / 255 * Double(rgba[i * 4 + 2])
            l[i] = (r + g + b) / 3
            p[i] = (r + g) / 2 - b
            q[i] = r - g
            a[i] = alpha
        }

        func encodeChannel(_ channel: [Double], _ nx: Int, _ ny: Int) -> (dc: Double, ac: [Double], scale: Double) {
            var dc = 0.0, scale = 0.0
            var ac: [Double] = []
            var fx = [Double](repeating: 0, count: w)
            for cy in 0..<ny {
                var cx = 0
                while cx * ny < nx * (ny - cy) {
                    for x in 0..<w { fx[x] = cos(Double.pi / Double(w) * Double(cx) * (Double(x) + 0.5)) }
                    var f = 0.0
                    for y in 0..<h {
                        let fy = cos(Double.pi / Double(h) * Double(cy) * (Double(y) + 0.5))
                        for x in 0..<w { f += channel[x + y * w] * fx[x] * fy }
                    }
                    f /= Double(count)
                    if cx > 0 || cy > 0 {
                        ac.append(f)
                        scale = max(scale, abs(f))
                    } else {
                        dc = f
                    }
                    cx += 1
                }
            }
            if scale > 0 { ac = ac.map { 0.5 + 0.5 / scale * $0 } }
            return (dc, ac, scale)
        }
        let lChannel = encodeChannel(l, max(3, lx), max(3, ly))
        let pChannel = encodeChannel(p, 3, 3)
        let qChannel = encodeChannel(q, 3, 3)
        let aChannel = hasAlpha ? encodeChannel(a, 5, 5) : (dc: 1, ac: [], scale: 0)

        func round(_ value: Double) -> Int { Int(value.rounded(.toNearestOrAwayFromZero)) }
        let isLandscape = w > h
        let header24 = round(63 * lChannel.dc) | round(31.5 + 31.5 * pChannel.dc) << 6 | round(31.5 + 31.5 * qChannel.dc) << 12
            | round(31 * lChannel.scale) << 18 | (hasAlpha ? 1 << 23 : 0)
        let header16 = (isLandscape ? ly : lx) | round(63 * pChannel.scale) << 3 | round(63 * qChannel.scale) << 9
            | (isLandscape ? 1 << 15 : 0)
        var hash: [UInt8] = [UInt8(header24 & 255), UInt8((header24 >> 8) & 255), UInt8((header24 >> 16) & 255),
                             UInt8(header16 & 255), UInt8((header16 >> 8) & 255)]
        if hasAlpha { hash.append(UInt8(round(15 * aChannel.dc) | round(15 * aChannel.scale) << 4)) }
        let acStart = hash.count
        var acIndex = 0
        for ac in hasAlpha ? [lChannel.ac, pChannel.ac, qChannel.ac, aChannel.ac] : [lChannel.ac, pChannel.ac, qChannel.ac] {
            for f in ac {
                let index = acStart + acIndex >> 1
                if index >= hash.count { hash.append(0) }
                hash[index] |= UInt8(round(15 * f) << ((acIndex & 1) << 2))
                acIndex += 1
            }
        }
        return hash
    }

    private static func rgb(l: Double, p: Double, q: Double) -> (Double, Double, Double) {
        let b = l - 2.0 / 3.0 * p
        let r = (3 * l - b + q) / 2
        return (r, r - q, b)
    }

    private static func unit(_ value: Double) -> UInt8 {
        // Truncation, like the reference implementation's Uint8Array store.
        UInt8(max(0, 255 * min(1, value)))
    }

    /// Area-averaging reduction to fit 100 × 100; only for ``encode(_:)`` on an oversized picture.
    private static func boxReduced(_ image: RGBAImage) -> RGBAImage {
        let size = RGBAImage.fittedSize(width: image.width, height: image.height, maxLongEdge: maxSide)
        var out = [UInt8](repeating: 0, count: size.width * size.height * 4)
        for y in 0..<size.height {
            let y0 = y * image.height / size.height, y1 = max(y0 + 1, (y + 1) * image.height / size.height)
            for x in 0..<size.width {
                let x0 = x * image.width / size.width, x1 = max(x0 + 1, (x + 1) * image.width / size.width)
                var sums = [0, 0, 0, 0]
                for sy in y0..<y1 {
                    for sx in x0..<x1 {
                        for c in 0..<4 { sums[c] += Int(image.pixels[(sy * image.width + sx) * 4 + c]) }
                    }
                }
                let n = (y1 - y0) * (x1 - x0)
                for c in 0..<4 { out[(y * size.width + x) * 4 + c] = UInt8((sums[c] + n / 2) / n) }
            }
        }
        return RGBAImage(width: size.width, height: size.height, pixels: out, hasAlpha: image.hasAlpha)
    }
}
