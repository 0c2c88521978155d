import CLcms2

/// One LittleCMS profile (`cmsHPROFILE`), closed with its owner.
///
/// A profile is used by one thread at a time: LittleCMS reads a profile's tags lazily and caches
/// them in the profile, so a profile is never shared. Profiles live only while a transform is
/// built (``ColourManagement``); transforms hold nothing of them afterwards.
final class ICCProfile {
    let handle: cmsHPROFILE

    /// Opens an ICC profile from its bytes; `nil` when LittleCMS cannot read it (damaged,
    /// truncated, or not a profile at all) or it is larger than ``EmbeddedColour/maxProfileBytes``.
    init?(_ bytes: [UInt8]) {
        // An ICC header alone is 128 bytes, plus the tag count.
        guard bytes.count >= 132, bytes.count <= EmbeddedColour.maxProfileBytes,
              let handle = bytes.withUnsafeBytes({ cmsOpenProfileFromMem($0.baseAddress, UInt32($0.count)) }) else { return nil }
        self.handle = handle
    }

    private init(owning handle: cmsHPROFILE) {
        self.handle = handle
    }

    deinit { cmsCloseProfile(handle) }

    /// Whether the profile describes RGB pixels.
    var isRGB: Bool { cmsGetColorSpace(handle) == cmsSigRgbData }
    /// Whether the profile describes CMYK pixels.
    var isCMYK: Bool { cmsGetColorSpace(handle) == cmsSigCmykData }

    /// The profile's description (`desc` tag), e.g. "Display P3" or "Adobe RGB (1998)".
    var description: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = cmsGetProfileInfoASCII(handle, cmsInfoDescription, "en", "US", &buffer, UInt32(buffer.count))
        guard length > 1 else { return nil }
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let trimmed = text.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed()
        return trimmed.isEmpty ? nil : String(String(trimmed).prefix(120))
    }

    /// The profile's bytes as LittleCMS writes them.
    func serialized() -> [UInt8]? {
        var size: UInt32 = 0
        guard cmsSaveProfileToMem(handle, nil, &size) != 0, size > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        guard bytes.withUnsafeMutableBytes({ cmsSaveProfileToMem(handle, $0.baseAddress, &size) }) != 0 else { return nil }
        return Array(bytes.prefix(Int(size)))
    }

    // MARK: Matrix-shaper comparisons

    /// The red, green and blue colorants (D50-adapted XYZ) and tone curves of an RGB
    /// matrix-shaper profile; `nil` for any other kind (LUT-based, CMYK, grey).
    private func matrixShaper() -> (colorants: [cmsCIEXYZ], curves: [OpaquePointer])? {
        guard isRGB, cmsIsMatrixShaper(handle) != 0 else { return nil }
        var colorants: [cmsCIEXYZ] = []
        for tag in [cmsSigRedColorantTag, cmsSigGreenColorantTag, cmsSigBlueColorantTag] {
            guard let raw = cmsReadTag(handle, tag) else { return nil }
            colorants.append(raw.assumingMemoryBound(to: cmsCIEXYZ.self).pointee)
        }
        var curves: [OpaquePointer] = []
        for tag in [cmsSigRedTRCTag, cmsSigGreenTRCTag, cmsSigBlueTRCTag] {
            guard let raw = cmsReadTag(handle, tag) else { return nil }
            curves.append(OpaquePointer(raw))
        }
        return (colorants, curves)
    }

    /// Whether both are RGB matrix-shaper profiles with the same primaries (within 0.002 in XYZ)
    /// and the same tone curves (within 1/255 at 17 points): then converting between them changes
    /// no 8-bit value, whatever their descriptions say (cameras write many "sRGB" profiles).
    func sameMatrixShaper(as other: ICCProfile) -> Bool {
        guard let a = matrixShaper(), let b = other.matrixShaper() else { return false }
        for (x, y) in zip(a.colorants, b.colorants) where abs(x.X - y.X) > 0.002 || abs(x.Y - y.Y) > 0.002 || abs(x.Z - y.Z) > 0.002 {
            return false
        }
        for (x, y) in zip(a.curves, b.curves) {
            for step in 0...16 {
                let v = Float(step) / 16
                if abs(cmsEvalToneCurveFloat(x, v) - cmsEvalToneCurveFloat(y, v)) > 1.0 / 255 { return false }
            }
        }
        return true
    }

    /// Whether any of this RGB matrix-shaper profile's primaries lies outside `other`'s gamut
    /// triangle (in xy, both adapted to D50 as ICC stores them) by more than 0.002: a wider-gamut
    /// source. `false` for profiles that are not matrix-shaper.
    func primariesExceed(_ other: ICCProfile) -> Bool {
        guard let a = matrixShaper(), let b = other.matrixShaper() else { return false }
        func xy(_ c: cmsCIEXYZ) -> (Double, Double) {
            let sum = c.X + c.Y + c.Z
            return sum > 0 ? (c.X / sum, c.Y / sum) : (0, 0)
        }
        let triangle = b.colorants.map(xy)
        // Signed distance of p from the edge u→v, positive on the triangle's inner side.
        func inside(_ p: (Double, Double)) -> Bool {
            let orientation: Double = {
                let (u, v, w) = (triangle[0], triangle[1], triangle[2])
                return (v.0 - u.0) * (w.1 - u.1) - (v.1 - u.1) * (w.0 - u.0) >= 0 ? 1 : -1
            }()
            for i in 0..<3 {
                let u = triangle[i], v = triangle[(i + 1) % 3]
                let length = ((v.0 - u.0) * (v.0 - u.0) + (v.1 - u.1) * (v.1 - u.1)).squareRoot()
                guard length > 0 else { return true }
                let distance = orientation * ((v.0 - u.0) * (p.1 - u.1) - (v.1 - u.1) * (p.0 - u.0)) / length
                if distance < -0.002 { return false }
            }
            return true
        }
        return a.colorants.map(xy).contains { !inside($0) }
    }

    // MARK: Built profiles

    /// The sRGB profile LittleCMS builds (IEC 61966-2.1 primaries and curve, D65).
    static func srgb() -> ICCProfile {
        ICCProfile(owning: cmsCreate_sRGBProfile())
    }

    /// Display P3 (Apple): DCI-P3 primaries, D65 white, the sRGB curve; described "Display P3".
    static func displayP3() -> ICCProfile? {
        rgb(white: (0.3127, 0.3290), red: (0.680, 0.320), green: (0.265, 0.690), blue: (0.150, 0.060),
            curve: .srgb, description: "Display P3")
    }

    /// The sRGB-style and other tone curves of H.273 that stills use, as ICC parametric curves.
    enum Curve: Hashable {
        /// IEC 61966-2.1 (H.273 transfer 13, and 2 "unspecified").
        case srgb
        /// BT.709/BT.601/BT.2020 (H.273 transfer 1, 6, 14, 15): the inverse of their OETF.
        case bt709
        /// A pure power law (H.273 4: 2.2, 5: 2.8, 8: 1.0 linear).
        case gamma(Double)

        /// LittleCMS's parametric curve type and parameters.
        var parametric: (type: Int32, parameters: [Double]) {
            switch self {
            case .srgb: (4, [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045])
            case .bt709: (4, [1 / 0.45, 1 / 1.099, 0.099 / 1.099, 1 / 4.5, 0.081])
            case .gamma(let g): (1, [g])
            }
        }
    }

    /// A matrix-shaper RGB profile from its white point and primaries (CIE xy) and one curve for
    /// all three channels; `nil` if LittleCMS refuses them.
    static func rgb(white: (Double, Double), red: (Double, Double), green: (Double, Double), blue: (Double, Double),
                    curve: Curve, description: String) -> ICCProfile? {
        var whitePoint = cmsCIExyY(x: white.0, y: white.1, Y: 1)
        var primaries = cmsCIExyYTRIPLE(Red: cmsCIExyY(x: red.0, y: red.1, Y: 1),
                                        Green: cmsCIExyY(x: green.0, y: green.1, Y: 1),
                                        Blue: cmsCIExyY(x: blue.0, y: blue.1, Y: 1))
        let (type, parameters) = curve.parametric
        guard let tone = parameters.withUnsafeBufferPointer({ cmsBuildParametricToneCurve(nil, type, $0.baseAddress) }) else { return nil }
        defer { cmsFreeToneCurve(tone) }
        let curves: [OpaquePointer?] = [tone, tone, tone]
        guard let handle = curves.withUnsafeBufferPointer({ cmsCreateRGBProfile(&whitePoint, &primaries, $0.baseAddress) }) else { return nil }
        let profile = ICCProfile(owning: handle)
        if let mlu = cmsMLUalloc(nil, 1) {
            defer { cmsMLUfree(mlu) }
            if cmsMLUsetASCII(mlu, "en", "US", description) != 0 {
                _ = cmsWriteTag(handle, cmsSigProfileDescriptionTag, UnsafeRawPointer(mlu))
            }
        }
        return profile
    }

    /// The profile H.273 code points describe, or `nil` for primaries or transfers stills do not
    /// convert: unknown ones, and PQ/HLG (HDR stills are not tone-mapped here).
    static func from(_ points: ColourCodePoints) -> ICCProfile? {
        guard let primaries = primaries(points.primaries), let curve = curve(points.transfer) else { return nil }
        return rgb(white: primaries.white, red: primaries.red, green: primaries.green, blue: primaries.blue, curve: curve,
                   description: "\(primaries.name), \(transferName(points.transfer))")
    }

    /// H.273 colour primaries: name, white point and red/green/blue in CIE xy.
    static func primaries(_ code: Int) -> (name: String, white: (Double, Double), red: (Double, Double), green: (Double, Double), blue: (Double, Double))? {
        let d65 = (0.3127, 0.3290)
        switch code {
        case 1, 2: return ("BT.709", d65, (0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
        case 4: return ("BT.470 M", (0.310, 0.316), (0.67, 0.33), (0.21, 0.71), (0.14, 0.08))
        case 5: return ("BT.470 BG", d65, (0.64, 0.33), (0.29, 0.60), (0.15, 0.06))
        case 6, 7: return ("SMPTE 170M", d65, (0.630, 0.340), (0.310, 0.595), (0.155, 0.070))
        case 9: return ("BT.2020", d65, (0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
        case 11: return ("DCI-P3", (0.314, 0.351), (0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
        case 12: return ("Display P3", d65, (0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
        case 22: return ("EBU 3213", d65, (0.630, 0.340), (0.295, 0.605), (0.155, 0.077))
        default: return nil
        }
    }

    /// The curve of an H.273 transfer characteristic, `nil` for those stills do not convert.
    static func curve(_ code: Int) -> Curve? {
        switch code {
        case 2, 13: .srgb
        case 1, 6, 14, 15: .bt709
        case 4: .gamma(2.2)
        case 5: .gamma(2.8)
        case 8: .gamma(1.0)
        default: nil
        }
    }

    /// A readable name of an H.273 transfer characteristic.
    static func transferName(_ code: Int) -> String {
        switch code {
        case 1: "BT.709"
        case 2: "unspecified"
        case 4: "gamma 2.2"
        case 5: "gamma 2.8"
        case 6: "BT.601"
        case 8: "linear"
        case 13: "sRGB"
        case 14, 15: "BT.2020"
        case 16: "PQ (SMPTE ST 2084)"
        case 18: "HLG"
        default: "transfer \(code)"
        }
    }

    /// A readable name of H.273 colour primaries.
    static func primariesName(_ code: Int) -> String {
        primaries(code)?.name ?? (code == 2 ? "unspecified" : "primaries \(code)")
    }
}
