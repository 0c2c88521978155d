public import MediaNestCore

/// `metadata.color`: the colour space a photo's file declares, for the metadata job.
///
/// ```json
/// {"source": "icc", "profile": "Display P3", "model": "rgb", "bit_depth": 8, "wide_gamut": true}
/// {"source": "nclx", "primaries": "BT.2020", "transfer": "PQ (SMPTE ST 2084)", "matrix": 9, "full_range": true, "bit_depth": 10}
/// {"source": "none", "model": "rgb", "bit_depth": 8}
/// ```
/// `source` is `icc` (an embedded profile), `nclx` (HEIF code points), `cicp` (PNG `cICP`),
/// `srgb` (a PNG `sRGB` chunk) or `none` (untagged: shown as sRGB). `wide_gamut` says whether the
/// primaries reach beyond sRGB's (what `stills.colorspace: p3` keeps). Only still images get it.
public enum ColourMetadata {
    /// The colour description of the image in `file`, or `nil` when it is not a still image the
    /// worker reads colour from (videos, audio) or its header cannot be read. Never throws: a
    /// damaged header only means no `color` key.
    public static func describe(file: SafeFile, limits: MediaLimits) -> JSONValue? {
        guard let header = try? file.read(at: 0, count: 64) else { return nil }
        if PacketImageDecoder.Codec.sniff(header) != nil {
            guard let embedded = try? EmbeddedColour.read(file) else { return nil }
            return describe(embedded, nclxName: "cicp")
        }
        if HEIFDecoder.recognizes(header), let info = try? HEIFDecoder.probe(file: file, limits: limits),
           let colour = try? HEIFDecoder.primaryColour(file: file, limits: limits) {
            var embedded = EmbeddedColour()
            embedded.colour = colour
            embedded.bitDepth = info.bitDepth
            embedded.model = "rgb"
            return describe(embedded, nclxName: "nclx")
        }
        if JPEGXLDecoder.recognizes(header), let bytes = try? file.read(at: 0, count: 1 << 16), let jxl = JPEGXLDecoder.header(bytes) {
            var object: [String: JSONValue] = ["source": "jxl", "bit_depth": .int(Int64(jxl.bitsPerSample)),
                                               "model": .string(jxl.colorChannels == 1 ? "gray" : "rgb")]
            if let icc = JPEGXLDecoder.originalProfile(bytes), let profile = ICCProfile(icc) {
                object["profile"] = profile.description.map(JSONValue.string) ?? .null
                object["wide_gamut"] = .bool(profile.primariesExceed(.srgb()))
            }
            return .object(object)
        }
        return nil
    }

    /// The colour description of the JPEG, PNG, WebP or TIFF image in `bytes`, after building the
    /// transform its stills would use (so that a profile is read as far as a job reads it); `nil`
    /// when the bytes are none of those formats. The `icc` fuzz target's entry point.
    public static func describe(imageBytes bytes: [UInt8]) -> JSONValue? {
        guard PacketImageDecoder.Codec.sniff(bytes) != nil else { return nil }
        let embedded = EmbeddedColour.read(bytes)
        let layout: ColourManagement.Layout = embedded.model == "cmyk" ? (embedded.adobeInverted ? .cmyk8Inverted : .cmyk8) : .rgba16
        for target in StillColourSpace.allCases {
            if let transform = ColourManagement.plan(for: embedded.colour, layout: layout, target: target)?.transform {
                // Every 16-bit (or 8-bit CMYK) corner of the cube through the transform.
                let corners: [UInt16] = (0..<16).flatMap { i -> [UInt16] in
                    (0..<4).map { bit in i & (1 << bit) != 0 ? 0xFFFF : 0 }
                }
                var output = [UInt8](repeating: 0, count: 16 * 4)
                if layout == .rgba16 {
                    corners.withUnsafeBytes { input in output.withUnsafeMutableBytes { transform.apply(input.baseAddress!, to: $0.baseAddress!, pixels: 16) } }
                } else {
                    let bytes = corners.map { UInt8($0 >> 8) }
                    bytes.withUnsafeBytes { input in output.withUnsafeMutableBytes { transform.apply(input.baseAddress!, to: $0.baseAddress!, pixels: 16) } }
                }
            }
        }
        return describe(embedded, nclxName: "cicp")
    }

    /// The JSON of what a header says.
    static func describe(_ embedded: EmbeddedColour, nclxName: String) -> JSONValue {
        var object: [String: JSONValue] = [:]
        switch embedded.colour {
        case .unspecified:
            object["source"] = "none"
        case .srgb:
            object["source"] = "srgb"
            object["profile"] = "sRGB"
            object["wide_gamut"] = false
        case .icc(let bytes):
            object["source"] = "icc"
            if let profile = ICCProfile(bytes) {
                object["profile"] = profile.description.map(JSONValue.string) ?? .null
                object["wide_gamut"] = .bool(profile.primariesExceed(.srgb()))
            } else {
                object["profile"] = .null
                object["profile_unreadable"] = true
            }
        case .codePoints(let points):
            object["source"] = .string(nclxName)
            object["primaries"] = .string(ICCProfile.primariesName(points.primaries))
            object["transfer"] = .string(ICCProfile.transferName(points.transfer))
            object["matrix"] = .int(Int64(points.matrix))
            object["full_range"] = .bool(points.fullRange)
            object["wide_gamut"] = .bool([9, 11, 12].contains(points.primaries))
        }
        if let depth = embedded.bitDepth { object["bit_depth"] = .int(Int64(depth)) }
        if let model = embedded.model { object["model"] = .string(model) }
        return .object(object)
    }
}
