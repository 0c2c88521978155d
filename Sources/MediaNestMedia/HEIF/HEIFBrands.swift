/// Recognises a HEIF-family file (HEIC, HEIF, AVIF, and their sequences) by the brands of its
/// leading `ftyp` box, which is what decides that libheif reads it, for every job and `probe`.
///
/// libmagic and libheif's own `heif_check_filetype` both look at the major brand only, and not
/// the same way: a HEIC whose major brand is the generic `mif1` (compatible brand `heic`) is
/// `image/heif` to file 5.44 but only "maybe" to libheif, and other libmagic versions call such
/// files QuickTime. FFmpeg 5.1 cannot read item-based HEIF at all, so a wrong guess fails the file.
/// The brands are the ISO/IEC 23008-12 and AV1-in-HEIF ones; a major *or* compatible brand among
/// them is enough.
public enum HEIFBrands {
    /// The brands that mean "HEIF-family still or image sequence": HEVC images (`heic`, `heix`,
    /// `heim`, `heis`), HEVC sequences (`hevc`, `hevx`), the structural brands (`mif1`, `msf1`),
    /// and AV1 (`avif`, `avis`).
    public static let brands: Set<String> = ["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis"]

    /// Most compatible brands read from one `ftyp` (real files list fewer than ten).
    static let maxCompatibleBrands = 64

    /// The major and compatible brands of the `ftyp` box that starts `header`.
    /// - Parameter header: The file's first bytes.
    /// - Returns: The brands, or `nil` when the file does not start with an `ftyp` box. Compatible
    ///   brands beyond the bytes given (or beyond ``maxCompatibleBrands``) are not listed.
    public static func ftypBrands(_ header: [UInt8]) -> (major: String, compatible: [String])? {
        guard header.count >= 16, header[4..<8].elementsEqual("ftyp".utf8) else { return nil }
        let size = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard size >= 16 else { return nil }
        let end = min(size, header.count)
        let major = String(decoding: header[8..<12], as: UTF8.self)
        var compatible: [String] = []
        var at = 16
        while at + 4 <= end, compatible.count < maxCompatibleBrands {
            compatible.append(String(decoding: header[at..<(at + 4)], as: UTF8.self))
            at += 4
        }
        return (major, compatible)
    }

    /// Whether the file is HEIF-family by its brands, whatever libmagic says.
    /// - Parameter header: The file's first bytes (64 are enough for every real `ftyp`).
    public static func isHEIF(_ header: [UInt8]) -> Bool {
        guard let (major, compatible) = ftypBrands(header) else { return false }
        return brands.contains(major) || compatible.contains(where: brands.contains)
    }

    /// The MIME type the brands name, for a file ``isHEIF(_:)`` accepts: `image/avif` when an AV1
    /// brand is present, `image/heic` for an HEVC still brand, `image/heic-sequence` for an HEVC
    /// sequence brand, else `image/heif` (or `image/heif-sequence` for `msf1`).
    /// - Parameter header: The file's first bytes.
    /// - Returns: The type, or `nil` when the file is not HEIF-family by its brands.
    public static func mimeType(_ header: [UInt8]) -> String? {
        guard let (major, compatible) = ftypBrands(header) else { return nil }
        let all = Set([major] + compatible)
        guard !all.isDisjoint(with: brands) else { return nil }
        if all.contains("avif") || all.contains("avis") { return "image/avif" }
        if !all.isDisjoint(with: ["heic", "heix", "heim", "heis"]) { return "image/heic" }
        if all.contains("hevc") || all.contains("hevx") { return "image/heic-sequence" }
        return all.contains("mif1") ? "image/heif" : "image/heif-sequence"
    }
}
