import CLcms2
import Foundation
import Logging
import MediaNestCore
@testable import MediaNestMedia
import MediaNestTestSupport
import Testing

/// The wide-gamut profiles photos carry, built here with LittleCMS from their published white
/// points, primaries (CIE xy) and tone curves, never taken from the code under test.
enum WideProfile: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case displayP3, adobeRGB, proPhoto

    var testDescription: String { name }

    /// The profile's description tag.
    var name: String {
        switch self {
        case .displayP3: "Display P3"
        case .adobeRGB: "Adobe RGB (1998)"
        case .proPhoto: "ProPhoto RGB"
        }
    }

    /// Built with cmsCreateRGBProfile: Display P3 (SMPTE EG 432-1 primaries, D65, sRGB curve),
    /// Adobe RGB (1998) (D65, gamma 563/256), ProPhoto/ROMM RGB (D50, gamma 1.8).
    func make() -> cmsHPROFILE {
        let white: (Double, Double), r: (Double, Double), g: (Double, Double), b: (Double, Double)
        let curveType: Int32
        let parameters: [Double]
        switch self {
        case .displayP3:
            (white, r, g, b) = ((0.3127, 0.3290), (0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
            (curveType, parameters) = (4, [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045])
        case .adobeRGB:
            (white, r, g, b) = ((0.3127, 0.3290), (0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
            (curveType, parameters) = (1, [563.0 / 256.0])
        case .proPhoto:
            (white, r, g, b) = ((0.3457, 0.3585), (0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001))
            (curveType, parameters) = (1, [1.8])
        }
        var whitePoint = cmsCIExyY(x: white.0, y: white.1, Y: 1)
        var primaries = cmsCIExyYTRIPLE(Red: cmsCIExyY(x: r.0, y: r.1, Y: 1), Green: cmsCIExyY(x: g.0, y: g.1, Y: 1),
                                        Blue: cmsCIExyY(x: b.0, y: b.1, Y: 1))
        let curve = parameters.withUnsafeBufferPointer { cmsBuildParametricToneCurve(nil, curveType, $0.baseAddress) }!
        defer { cmsFreeToneCurve(curve) }
        let curves: [OpaquePointer?] = [curve, curve, curve]
        let profile = curves.withUnsafeBufferPointer { cmsCreateRGBProfile(&whitePoint, &primaries, $0.baseAddress) }!
        let mlu = cmsMLUalloc(nil, 1)!
        defer { cmsMLUfree(mlu) }
        _ = cmsMLUsetASCII(mlu, "en", "US", name)
        _ = cmsWriteTag(profile, cmsSigProfileDescriptionTag, UnsafeRawPointer(mlu))
        return profile
    }

    /// The ICC bytes.
    var bytes: [UInt8] { Colour.serialize(make()) }

    /// A flat colour whose sRGB rendering differs visibly (by more than 6 in a channel): a warm
    /// red for Display P3 (wider than sRGB in the reds), a green for Adobe RGB (wider in the
    /// greens), the issue's muted blue for ProPhoto ((131, 141, 192) is about (117, 160, 210)).
    var pixel: [UInt16] {
        switch self {
        case .displayP3: [200, 70, 50]
        case .adobeRGB: [60, 170, 90]
        case .proPhoto: [131, 141, 192]
        }
    }
}

/// LittleCMS used directly, as the reference the worker's output is checked against.
enum Colour {
    static func serialize(_ profile: cmsHPROFILE) -> [UInt8] {
        defer { cmsCloseProfile(profile) }
        var size: UInt32 = 0
        _ = cmsSaveProfileToMem(profile, nil, &size)
        var bytes = [UInt8](repeating: 0, count: Int(size))
        _ = bytes.withUnsafeMutableBytes { cmsSaveProfileToMem(profile, $0.baseAddress, &size) }
        return bytes
    }

    /// LittleCMS's own transform of one pixel from `profile` to sRGB (or `destination`), with the
    /// intent docs/THUMBNAILS.md names: relative colorimetric with black-point compensation.
    static func transform(_ pixel: [UInt16], sixteenBits: Bool = false, from profile: [UInt8], to destination: cmsHPROFILE? = nil) -> [Int] {
        let source = profile.withUnsafeBytes { cmsOpenProfileFromMem($0.baseAddress, UInt32($0.count)) }!
        let target = destination ?? cmsCreate_sRGBProfile()!
        defer { cmsCloseProfile(source); cmsCloseProfile(target) }
        let transform = cmsCreateTransform(source, sixteenBits ? CLcms2_TYPE_RGB_16 : CLcms2_TYPE_RGB_8, target, CLcms2_TYPE_RGB_8,
                                           UInt32(INTENT_RELATIVE_COLORIMETRIC), UInt32(cmsFLAGS_BLACKPOINTCOMPENSATION))!
        defer { cmsDeleteTransform(transform) }
        var output = [UInt8](repeating: 0, count: 3)
        if sixteenBits {
            pixel.withUnsafeBytes { input in output.withUnsafeMutableBytes { cmsDoTransform(transform, input.baseAddress, $0.baseAddress, 1) } }
        } else {
            let bytes = pixel.map { UInt8($0) }
            bytes.withUnsafeBytes { input in output.withUnsafeMutableBytes { cmsDoTransform(transform, input.baseAddress, $0.baseAddress, 1) } }
        }
        return output.map(Int.init)
    }

    /// A Display P3 profile built here (for p3 mode's expected pixels).
    static func displayP3() -> cmsHPROFILE { WideProfile.displayP3.make() }
}

/// Writes the sources: PNGs by hand (so the bytes are exactly what the test says), JPEG and WebP
/// by libvips from that PNG (`vips copy` keeps the pixels and writes the profile its own way),
/// HEIC by heif-enc (libheif, x265) from that PNG.
struct ColourSources {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "medianest-colour-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    /// A flat-colour RGB PNG, 8 or 16 bits, optionally with an `iCCP` profile.
    static func png(width: Int = 64, height: Int = 48, pixel: [UInt16], sixteenBits: Bool = false, profile: [UInt8]?) -> [UInt8] {
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            be32(data.count) + Array(type.utf8) + data + be32(Int(HostileFiles.crc32(Array(type.utf8) + data)))
        }
        func zlibStored(_ data: [UInt8]) -> [UInt8] {
            var out: [UInt8] = [0x78, 0x01]
            var offset = 0
            repeat {
                let n = min(65535, data.count - offset)
                let final: UInt8 = offset + n == data.count ? 1 : 0
                out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)] + data[offset..<(offset + n)]
                offset += n
            } while offset < data.count
            var a: UInt32 = 1, b: UInt32 = 0
            for byte in data { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
            return out + be32(Int(b << 16 | a))
        }
        var row: [UInt8] = [0]
        for _ in 0..<width {
            for sample in pixel { row += sixteenBits ? [UInt8(sample >> 8), UInt8(sample & 0xFF)] : [UInt8(sample)] }
        }
        var raw: [UInt8] = []
        for _ in 0..<height { raw += row }
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        file += chunk("IHDR", be32(width) + be32(height) + [sixteenBits ? 16 : 8, 2, 0, 0, 0])
        if let profile { file += chunk("iCCP", Array("test profile".utf8) + [0, 0] + zlibStored(profile)) }
        file += chunk("IDAT", zlibStored(raw)) + chunk("IEND", [])
        return file
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
        return name
    }

    func run(_ tool: String, _ arguments: [String]) throws {
        let result = try ProcessRunner.run(tool, arguments)
        try #require(result.status == 0, "\(tool) failed: \(result.stderr)")
    }

    /// The PNG `name` written again as `container` by an independent writer.
    func convert(_ name: String, to container: String) throws -> String {
        let output = (name as NSString).deletingPathExtension + "." + container
        switch container {
        // Quality 100 without chroma subsampling and lossless WebP: the flat colour survives to ±1.
        case "jpg": try run("/usr/bin/vips", ["copy", path(name), path(output) + "[Q=100,subsample-mode=off]"])
        case "webp": try run("/usr/bin/vips", ["copy", path(name), path(output) + "[lossless]"])
        case "heic": try run("/usr/bin/heif-enc", ["-L", "-p", "chroma=444", "-o", path(output), path(name)])
        default: Issue.record("no writer for \(container)")
        }
        return output
    }
}

@Suite("Colour management: embedded profiles to sRGB (LittleCMS)")
struct ColourManagementTests {
    static let logger = Logger(label: "test.colour") { _ in SwiftLogNoOpLogHandler() }
    /// A muted blue whose sRGB rendering differs visibly in all three profiles (the issue's
    /// ProPhoto example: (131, 141, 192) is about (117, 160, 210) in sRGB).
    static let pixel: [UInt16] = [131, 141, 192]

    let sources: ColourSources
    init() throws { sources = try ColourSources() }

    func render(_ name: String, size: Int = 16, colourSpace: StillColourSpace = .srgb) throws -> RenderedStill {
        let file = try SafeFile.open(relativePath: name, in: sources.directory, limits: .default)
        // FFmpeg's own lines (libvips's WebP EXIF chunk draws a warning) go to the quiet logger.
        return try FFmpegLog.withJobLogger(Self.logger) { () throws(JobError) -> RenderedStill in
            try StillRendering.decode(file: file, declaredMimeType: nil, fileName: name, maxLongEdge: size, limits: .default,
                                      decoderThreads: 1, cancellation: nil, logger: Self.logger, colourSpace: colourSpace)
        }
    }

    func centre(_ image: RGBAImage) -> [Int] {
        let p = image.pixel(x: image.width / 2, y: image.height / 2)
        return [Int(p.r), Int(p.g), Int(p.b)]
    }

    func close(_ a: [Int], _ b: [Int], within tolerance: Int = 3) -> Bool {
        zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
    }

    @Test("a flat colour tagged with a wide profile comes out as LittleCMS converts it, in every container and at both sizes",
          arguments: WideProfile.allCases, ["png", "jpg", "webp", "heic"])
    func convertsToSRGB(profile: WideProfile, container: String) throws {
        let icc = profile.bytes
        let pixel = profile.pixel
        let png = try sources.write(ColourSources.png(pixel: pixel, profile: icc), "\(profile.rawValue).png")
        let name = container == "png" ? png : try sources.convert(png, to: container)
        // The independent writer kept the profile (else this test would say nothing).
        let stored: SourceColour
        if container == "heic" {
            stored = try HEIFDecoder.primaryColour(file: try SafeFile.open(relativePath: name, in: sources.directory, limits: .default), limits: .default)
        } else {
            stored = EmbeddedColour.read([UInt8](try Data(contentsOf: URL(fileURLWithPath: sources.path(name))))).colour
        }
        #expect(stored == .icc(icc), "\(container) written by the tool does not carry the \(profile.name) profile")

        let expected = Colour.transform(pixel, from: icc)
        // Without the conversion the output would be the stored pixel: far from the expected one.
        #expect(!close(expected, pixel.map(Int.init), within: 6), "\(profile.name): \(expected) is too near the source pixel to tell")
        for size in [16, 1440] {
            let still = try render(name, size: size)
            #expect(still.image.colourSpace == .srgb)
            let got = centre(still.image)
            #expect(close(got, expected), "\(profile.name) \(container) at \(size) px: got \(got), LittleCMS gives \(expected)")
        }
    }

    @Test("the issue's ProPhoto PNG: (131, 141, 192) is no longer left as it is")
    func proPhotoExample() throws {
        let name = try sources.write(ColourSources.png(pixel: Self.pixel, profile: WideProfile.proPhoto.bytes), "prophoto.png")
        let got = centre(try render(name).image)
        #expect(close(got, [117, 160, 210], within: 4), "got \(got)")
    }

    @Test("a 16-bit PNG with a wide profile is converted from its 16-bit samples")
    func sixteenBitPNG() throws {
        let pixel: [UInt16] = [0x8312, 0x8DF0, 0xC07A]
        let icc = WideProfile.proPhoto.bytes
        let name = try sources.write(ColourSources.png(pixel: pixel, sixteenBits: true, profile: icc), "deep.png")
        let expected = Colour.transform(pixel, sixteenBits: true, from: icc)
        #expect(!close(expected, pixel.map { Int($0 >> 8) }, within: 6))
        let got = centre(try render(name).image)
        #expect(close(got, expected), "got \(got), LittleCMS gives \(expected)")
        #expect(EmbeddedColour.read([UInt8](try Data(contentsOf: URL(fileURLWithPath: sources.path(name))))).bitDepth == 16)
    }

    @Test("a CMYK JPEG with a profile goes through it, as libvips (LittleCMS) converts it; without the profile, the old path")
    func cmykWithProfile() throws {
        let png = try sources.write(ColourSources.png(pixel: Self.pixel, profile: nil), "for-cmyk.png")
        // libvips converts to its built-in CMYK profile with LittleCMS and embeds it (about 1 MB).
        try sources.run("/usr/bin/vips", ["icc_transform", sources.path(png), sources.path("cmyk.jpg"), "cmyk", "--input-profile", "srgb"])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: sources.path("cmyk.jpg"))))
        let embedded = EmbeddedColour.read(bytes)
        #expect(embedded.model == "cmyk")
        guard case .icc(let profile) = embedded.colour, ICCProfile(profile)?.isCMYK == true else { Issue.record("no CMYK profile"); return }
        // The reference: libvips back to sRGB through the embedded profile.
        try sources.run("/usr/bin/vips", ["icc_transform", sources.path("cmyk.jpg"), sources.path("cmyk-back.png"), "srgb", "--embedded",
                                          "--intent", "relative", "--black-point-compensation"])
        let back = try ProcessRunner.run("/usr/bin/vips", ["getpoint", sources.path("cmyk-back.png"), "8", "6"])
        let reference = Array(back.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Double($0) }.map { Int($0.rounded()) }.prefix(3))
        let got = centre(try render("cmyk.jpg").image)
        #expect(close(got, reference), "got \(got), libvips gives \(reference)")
        // The same CMYK without its profile takes libavcodec's plain conversion, visibly different.
        var stripped: [UInt8] = [0xFF, 0xD8]
        var offset = 2
        while offset + 4 <= bytes.count, bytes[offset] == 0xFF, bytes[offset + 1] != 0xDA {
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            if bytes[offset + 1] != 0xE2 { stripped += bytes[offset..<(offset + 2 + length)] }
            offset += 2 + length
        }
        stripped += bytes[offset...]
        let plain = try sources.write(stripped, "cmyk-plain.jpg")
        #expect(EmbeddedColour.read(stripped).colour == .unspecified)
        let old = centre(try render(plain).image)
        #expect(!close(old, reference, within: 6), "without the profile: \(old), with it: \(reference)")
    }

    @Test("untagged and sRGB-tagged pictures are left exactly as they are")
    func srgbSkipsTheTransform() throws {
        let untagged = try sources.write(ColourSources.png(pixel: Self.pixel, profile: nil), "untagged.png")
        let srgb = try sources.write(ColourSources.png(pixel: Self.pixel, profile: Colour.serialize(cmsCreate_sRGBProfile())), "srgb.png")
        for name in [untagged, srgb] {
            let still = try render(name)
            #expect(centre(still.image) == Self.pixel.map(Int.init), "\(name)")
            #expect(still.details["color_converted_from"] == nil)
        }
        #expect(ColourManagement.plan(for: .icc(Colour.serialize(cmsCreate_sRGBProfile())), layout: .rgba16, target: .srgb) == nil)
        #expect(ColourManagement.plan(for: .codePoints(ColourCodePoints(primaries: 1, transfer: 13, matrix: 6, fullRange: true)),
                                      layout: .rgba16, target: .srgb) == nil)
    }

    @Test("one transform per profile: a second picture with the same profile reuses the first one's")
    func transformsAreCached() throws {
        let icc = WideProfile.displayP3.bytes
        let first = try #require(ColourManagement.plan(for: .icc(icc), layout: .rgba16, target: .srgb)?.transform)
        let second = try #require(ColourManagement.plan(for: .icc(icc), layout: .rgba16, target: .srgb)?.transform)
        #expect(first === second)
    }

    @Test("AVIF with an nclx colr (Display P3 primaries, sRGB curve) is converted from its code points")
    func nclxAVIF() throws {
        let pixel = WideProfile.displayP3.pixel
        let png = try sources.write(ColourSources.png(pixel: pixel, profile: nil), "plain.png")
        // heif-enc 1.15 writes no nclx colr box; avifenc does (lossless quantizer, 4:4:4).
        try sources.run("/usr/bin/avifenc", ["-s", "10", "--min", "0", "--max", "0", "-y", "444", "--cicp", "12/13/6",
                                             sources.path(png), sources.path("nclx.avif")])
        let stored = try HEIFDecoder.primaryColour(file: try SafeFile.open(relativePath: "nclx.avif", in: sources.directory, limits: .default), limits: .default)
        guard case .codePoints(let points) = stored else { Issue.record("no nclx: \(stored)"); return }
        #expect(points.primaries == 12 && points.transfer == 13)
        let expected = Colour.transform(pixel, from: WideProfile.displayP3.bytes)
        #expect(!close(expected, pixel.map(Int.init), within: 6))
        let got = centre(try render("nclx.avif").image)
        #expect(close(got, expected), "got \(got), LittleCMS gives \(expected)")
    }

    @Test("p3 mode keeps Display P3 for a wider source and embeds the profile in WebP, JPEG and PNG; sRGB sources stay sRGB")
    func p3Mode() throws {
        let icc = WideProfile.proPhoto.bytes
        let name = try sources.write(ColourSources.png(pixel: Self.pixel, profile: icc), "wide.png")
        let still = try render(name, colourSpace: .p3)
        #expect(still.image.colourSpace == .p3)
        let expectedP3 = Colour.transform(Self.pixel, from: icc, to: Colour.displayP3())
        let expectedSRGB = Colour.transform(Self.pixel, from: icc)
        #expect(!close(expectedP3, expectedSRGB, within: 3))
        #expect(close(centre(still.image), expectedP3), "got \(centre(still.image)), LittleCMS gives \(expectedP3)")

        for format in ImageFormat.allCases {
            let bytes = try ImageEncoder.encode(still.image, as: format, quality: 95)
            let output = try sources.write(bytes, "out-p3.\(format.fileExtension)")
            // libvips reads our embedded profile and converts to sRGB: it lands on the sRGB pixel.
            try sources.run("/usr/bin/vips", ["icc_transform", sources.path(output), sources.path("back-\(format.rawValue).png"), "srgb", "--embedded"])
            let back = try ProcessRunner.run("/usr/bin/vips", ["getpoint", sources.path("back-\(format.rawValue).png"), "8", "6"])
            try #require(back.status == 0, "\(back.stderr)")
            let rgb = Array(back.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Double($0) }.map { Int($0.rounded()) }.prefix(3))
            #expect(close(rgb, expectedSRGB, within: 4), "\(format): libvips reads \(rgb) through the embedded profile; sRGB is \(expectedSRGB)")
            if case .icc(let embedded) = EmbeddedColour.read(bytes).colour {
                #expect(ICCProfile(embedded)?.description == "Display P3")
            } else {
                Issue.record("\(format) output carries no ICC profile")
            }
        }
        // An untagged (sRGB) source stays sRGB in p3 mode: no profile, pixels untouched.
        let plain = try sources.write(ColourSources.png(pixel: Self.pixel, profile: nil), "plain-p3.png")
        let untouched = try render(plain, colourSpace: .p3)
        #expect(untouched.image.colourSpace == .srgb)
        #expect(EmbeddedColour.read(try ImageEncoder.encode(untouched.image, as: .webp)).colour == .unspecified)
    }

    @Test("ThumbHash is sRGB even when the thumbnail is Display P3")
    func thumbHashIsSRGB() throws {
        var p3 = RGBAImage(width: 8, height: 8, fill: (200, 60, 40, 255))
        p3.colourSpace = .p3
        let converted = p3.inSRGB()
        let expected = Colour.transform([200, 60, 40], from: WideProfile.displayP3.bytes)
        #expect(converted.colourSpace == .srgb)
        #expect(close(centre(converted), expected), "got \(centre(converted)), LittleCMS gives \(expected)")
        var mislabelled = p3
        mislabelled.colourSpace = .srgb
        #expect(ThumbHash.encode(p3) == ThumbHash.encode(converted))
        #expect(ThumbHash.encode(p3) != ThumbHash.encode(mislabelled))
    }

    @Test("metadata.color names the profile, the nclx code points and the bit depth")
    func metadataColor() throws {
        let png = try sources.write(ColourSources.png(pixel: Self.pixel, profile: WideProfile.displayP3.bytes), "meta.png")
        let jpeg = try sources.convert(png, to: "jpg")
        let deep = try sources.write(ColourSources.png(pixel: [0x8000, 0x8000, 0x8000], sixteenBits: true, profile: WideProfile.adobeRGB.bytes), "meta16.png")
        let plain = try sources.write(ColourSources.png(pixel: Self.pixel, profile: nil), "meta-plain.png")
        try sources.run("/usr/bin/avifenc", ["-s", "10", "-y", "444", "--cicp", "9/16/9", sources.path(plain), sources.path("meta.avif")])

        func color(_ name: String) throws -> JSONValue? {
            let result = try MetadataExtractor.extract(root: sources.directory, relativePath: name, declaredMimeType: "application/octet-stream",
                                                       computeChecksums: false, logger: Self.logger)
            return result.summary["color"]
        }
        let p3 = try #require(try color(jpeg))
        #expect(p3["source"] == "icc")
        #expect(p3["profile"] == "Display P3")
        #expect(p3["bit_depth"] == 8)
        #expect(p3["wide_gamut"] == true)
        let adobe = try #require(try color(deep))
        #expect(adobe["profile"] == "Adobe RGB (1998)")
        #expect(adobe["bit_depth"] == 16)
        let none = try #require(try color(plain))
        #expect(none["source"] == "none")
        let nclx = try #require(try color("meta.avif"))
        #expect(nclx["source"] == "nclx")
        #expect(nclx["primaries"] == "BT.2020")
        #expect(nclx["transfer"] == "PQ (SMPTE ST 2084)")
        #expect(nclx["wide_gamut"] == true)
    }

    @Test("hostile profile containers are bounded: bad chunks, lying lengths and zlib bombs give no profile, never a crash")
    func hostileContainers() throws {
        let icc = WideProfile.displayP3.bytes
        // JPEG: chunk 2 of 2 only; a repeated chunk 1; a count that changes between chunks.
        func app2(_ sequence: UInt8, _ count: UInt8, _ data: [UInt8]) -> [UInt8] {
            let length = 2 + 14 + data.count
            return [0xFF, 0xE2, UInt8(length >> 8), UInt8(length & 0xFF)] + Array("ICC_PROFILE".utf8) + [0, sequence, count] + data
        }
        let half = icc.count / 2
        let soi: [UInt8] = [0xFF, 0xD8], eoi: [UInt8] = [0xFF, 0xD9]
        #expect(EmbeddedColour.read(soi + app2(2, 2, Array(icc[half...])) + eoi).colour == .unspecified)
        #expect(EmbeddedColour.read(soi + app2(1, 2, Array(icc[..<half])) + app2(1, 2, Array(icc[..<half])) + eoi).colour == .unspecified)
        #expect(EmbeddedColour.read(soi + app2(1, 2, Array(icc[..<half])) + app2(2, 3, Array(icc[half...])) + eoi).colour == .unspecified)
        // In order or not, two chunks make the profile.
        #expect(EmbeddedColour.read(soi + app2(2, 2, Array(icc[half...])) + app2(1, 2, Array(icc[..<half])) + eoi).colour == .icc(icc))
        // A segment length running past the end.
        #expect(EmbeddedColour.read(soi + [0xFF, 0xE2, 0xFF, 0xFF] + Array("ICC_PROFILE".utf8) + [0, 1, 1]).colour == .unspecified)

        // PNG: an iCCP that inflates past the 4 MiB bound (a zlib bomb of 64 MiB of zeros in 64 KiB,
        // kept with the fuzz regressions; made once with Python's zlib, never in this process, whose
        // peak RSS the memory tests' children inherit).
        let bombFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FuzzRegressions/icc/png-iccp-zlib-bomb.accepted")
        let png = [UInt8](try Data(contentsOf: bombFile))
        #expect(png.count < 256 << 10)
        #expect(Zlib.inflate(Array(png[47...]), limit: EmbeddedColour.maxProfileBytes) == nil)
        #expect(EmbeddedColour.read(png).colour == .unspecified)
        // A damaged profile: a profile LittleCMS refuses is no profile, and the picture is read as sRGB.
        let damaged = Array(icc.prefix(200)) + [UInt8](repeating: 0xEE, count: 300)
        #expect(ColourManagement.plan(for: .icc(damaged), layout: .rgba16, target: .srgb) == nil)
        let name = try sources.write(ColourSources.png(pixel: Self.pixel, profile: damaged), "damaged.png")
        #expect(centre(try render(name).image) == Self.pixel.map(Int.init))

        // WebP: an ICCP chunk claiming more bytes than the file has.
        let webp = Array("RIFF".utf8) + [40, 0, 0, 0] + Array("WEBPVP8X".utf8) + [10, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            + Array("ICCP".utf8) + [0xFF, 0xFF, 0xFF, 0x7F] + Array(icc.prefix(16))
        #expect(EmbeddedColour.read(webp).colour == .unspecified)
        // TIFF: an ICC tag pointing past the end.
        let tiff: [UInt8] = [0x49, 0x49, 0x2A, 0x00, 8, 0, 0, 0, 1, 0, 0x73, 0x87, 7, 0, 0x00, 0x10, 0, 0, 0xF0, 0xFF, 0, 0, 0, 0, 0, 0]
        #expect(EmbeddedColour.read(tiff).colour == .unspecified)
    }
}
