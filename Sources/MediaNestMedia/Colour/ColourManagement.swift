import CLcms2
import Synchronization

/// The colour space the still outputs are written in (`stills.colorspace`).
public enum StillColourSpace: String, Sendable, Hashable, CaseIterable {
    /// sRGB everywhere (the default): what every screen and browser assumes of an untagged picture.
    case srgb
    /// Display P3 where the source is wider than sRGB (iPhone photos, Adobe RGB, ProPhoto, BT.2020),
    /// with the Display P3 profile embedded in the WebP, JPEG or PNG; sRGB for everything else.
    case p3
}

/// A LittleCMS transform (`cmsHTRANSFORM`), shared by every job that meets the same profile.
///
/// Sharing is safe: a transform is read-only once built (it is created with `cmsFLAGS_NOCACHE`,
/// so not even the one-pixel cache is written), and it keeps nothing of the profiles it was
/// built from.
final class ColourTransform: @unchecked Sendable {
    private let handle: cmsHTRANSFORM
    private let bytesPerInputPixel: Int

    fileprivate init(_ handle: cmsHTRANSFORM, bytesPerInputPixel: Int) {
        self.handle = handle
        self.bytesPerInputPixel = bytesPerInputPixel
    }

    deinit { cmsDeleteTransform(handle) }

    /// Converts `pixels` pixels from `input` (in the transform's input layout) to `output`.
    func apply(_ input: UnsafeRawPointer, to output: UnsafeMutableRawPointer, pixels: Int) {
        // cmsDoTransform counts in 32 bits; a reduced still is far below that, but go in slices anyway.
        var done = 0
        let inputBytes = bytesPerInputPixel, outputBytes = 4
        while done < pixels {
            let count = min(pixels - done, 1 << 24)
            cmsDoTransform(handle, input + done * inputBytes, output + done * outputBytes, UInt32(count))
            done += count
        }
    }
}

/// What to do with the colours of one decoded picture: transform them (``transform``) into the
/// output space (``output``), or only tag them with it when they are in it already.
struct ColourPlan: Sendable {
    /// The transform to RGBA 8-bit in ``output``; `nil` when the pixels are already there.
    let transform: ColourTransform?
    /// The colour space of the result.
    let output: StillColourSpace
    /// What the source was, for the job output ("Display P3", "BT.2020, BT.709").
    let sourceName: String
    /// The source's colour and the target the plan was made for (to find its twin for another
    /// layout, see ``ColourManagement/plan(for:layout:target:)``).
    var source: SourceColour = .unspecified
    var target: StillColourSpace = .srgb

    /// The same conversion for pixels in `layout` (cached like every plan).
    func with(layout: ColourManagement.Layout) -> ColourPlan? {
        ColourManagement.plan(for: source, layout: layout, target: target)
    }
}

/// Colour management of the stills with LittleCMS 2: the source's embedded profile (or its H.273
/// code points) to sRGB, or to Display P3 in `p3` mode when the source is wider.
///
/// - **Intent: relative colorimetric with black-point compensation.** The profiles photos carry
///   (Display P3, Adobe RGB, ProPhoto, camera sRGB variants, nclx) are matrix-shaper profiles,
///   which have no perceptual tables: LittleCMS would use the same matrices for the perceptual
///   intent anyway. Relative colorimetric keeps every colour sRGB can show exactly and clips the
///   rest per channel, as browsers and libvips do by default; black-point compensation maps the
///   source's black to sRGB's, which matters only for the LUT profiles of CMYK print sources.
/// - **No cost for sRGB.** Untagged pictures, a PNG `sRGB` chunk, nclx BT.709/sRGB and ICC
///   profiles whose primaries and curves equal sRGB's need nothing and get no plan.
/// - **One transform per profile.** Plans are cached by the profile's bytes (or code points),
///   the pixel layout and the target, so a library of iPhone photos builds the Display P3 → sRGB
///   transform once per process. At most ``cacheLimit`` are kept.
enum ColourManagement {
    /// The rendering intent of every transform (see above).
    static let intent = UInt32(INTENT_RELATIVE_COLORIMETRIC)
    /// The most plans kept; past it the cache starts again (a library rarely has more than a few
    /// distinct profiles).
    static let cacheLimit = 64

    /// How the pixels handed to the transform are laid out.
    enum Layout: Hashable, Sendable {
        /// RGBA, 16 bits per sample in native byte order (libswscale's reduction of any source).
        case rgba16
        /// RGBA, 8 bits per sample.
        case rgba8
        /// CMYK, 8 bits per sample.
        case cmyk8
        /// CMYK, 8 bits per sample, stored inverted (Adobe/Photoshop JPEGs).
        case cmyk8Inverted

        var isCMYK: Bool { self == .cmyk8 || self == .cmyk8Inverted }
    }

    private struct Key: Hashable {
        let source: SourceColour
        let layout: Layout
        let target: StillColourSpace
    }

    private static let cache = Mutex<[Key: ColourPlan?]>([:])

    /// The plan for pixels of `colour` in `layout`, written as `target`; `nil` when nothing needs
    /// doing (sRGB or untagged, a profile that cannot be read or does not match the pixels).
    static func plan(for colour: SourceColour, layout: Layout, target: StillColourSpace) -> ColourPlan? {
        switch colour {
        case .unspecified, .srgb: return nil
        case .codePoints(let points) where isSRGB(points): return nil
        default: break
        }
        let key = Key(source: colour, layout: layout, target: target)
        if let cached = cache.withLock({ $0[key] }) { return cached }
        // Built outside the lock: two jobs meeting a new profile at once both build it, once.
        var plan = makePlan(for: colour, layout: layout, target: target)
        plan?.source = colour
        plan?.target = target
        cache.withLock { plans in
            if plans.count >= cacheLimit { plans.removeAll() }
            plans[key] = plan
        }
        return plan
    }

    /// Code points that mean sRGB, or near enough that converting would change nothing visible:
    /// BT.709 (or unspecified) primaries with the sRGB, BT.709-family or unspecified curve.
    static func isSRGB(_ points: ColourCodePoints) -> Bool {
        [1, 2].contains(points.primaries) && [1, 2, 6, 13, 14, 15].contains(points.transfer)
    }

    private static func makePlan(for colour: SourceColour, layout: Layout, target: StillColourSpace) -> ColourPlan? {
        let source: ICCProfile
        switch colour {
        case .unspecified, .srgb: return nil
        case .icc(let bytes):
            guard let profile = ICCProfile(bytes) else { return nil }
            source = profile
        case .codePoints(let points):
            guard let profile = ICCProfile.from(points) else { return nil }
            source = profile
        }
        guard layout.isCMYK ? source.isCMYK : source.isRGB else { return nil }
        let srgb = ICCProfile.srgb()
        if !layout.isCMYK && source.sameMatrixShaper(as: srgb) { return nil }
        let name = source.description ?? (layout.isCMYK ? "CMYK profile" : "RGB profile")
        var destination = srgb
        var output = StillColourSpace.srgb
        if target == .p3, !layout.isCMYK, source.primariesExceed(srgb), let p3 = ICCProfile.displayP3() {
            output = .p3
            destination = p3
            // Display P3 already: keep the pixels, only say what they are.
            if source.sameMatrixShaper(as: p3) { return ColourPlan(transform: nil, output: .p3, sourceName: name) }
        }
        let inputFormat: UInt32
        var flags = UInt32(cmsFLAGS_BLACKPOINTCOMPENSATION | cmsFLAGS_NOCACHE)
        switch layout {
        case .rgba16: inputFormat = CLcms2_TYPE_RGBA_16; flags |= UInt32(cmsFLAGS_COPY_ALPHA)
        case .rgba8: inputFormat = CLcms2_TYPE_RGBA_8; flags |= UInt32(cmsFLAGS_COPY_ALPHA)
        case .cmyk8: inputFormat = CLcms2_TYPE_CMYK_8
        case .cmyk8Inverted: inputFormat = CLcms2_TYPE_CMYK_8_REV
        }
        guard let handle = cmsCreateTransform(source.handle, inputFormat, destination.handle, CLcms2_TYPE_RGBA_8, intent, flags) else {
            return nil
        }
        let transform = ColourTransform(handle, bytesPerInputPixel: layout == .rgba16 ? 8 : 4)
        return ColourPlan(transform: transform, output: output, sourceName: name)
    }

    /// The Display P3 profile embedded in `p3` outputs (built once with LittleCMS, version 4).
    static let displayP3Profile: [UInt8] = ICCProfile.displayP3()?.serialized() ?? []
}

extension RGBAImage {
    /// The picture in sRGB: itself when it is sRGB already, else converted from Display P3 (for
    /// the ThumbHash, which clients paint as sRGB, and anything else that must be sRGB).
    func inSRGB() -> RGBAImage {
        guard colourSpace == .p3,
              let plan = ColourManagement.plan(for: .icc(ColourManagement.displayP3Profile), layout: .rgba8, target: .srgb),
              let transform = plan.transform else { return self }
        var converted = self
        pixels.withUnsafeBytes { source in
            converted.pixels.withUnsafeMutableBytes { output in
                transform.apply(source.baseAddress!, to: output.baseAddress!, pixels: width * height)
            }
        }
        converted.colourSpace = .srgb
        return converted
    }
}
