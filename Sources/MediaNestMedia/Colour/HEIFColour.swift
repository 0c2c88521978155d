import CHeif
import MediaNestCore

extension HEIFDecoder {
    /// The colour of a HEIF/AVIF image as its `colr` boxes say: the ICC profile (`prof` or
    /// `rICC`, at most ``EmbeddedColour/maxProfileBytes``) when there is one, else the `nclx`
    /// code points, else nothing.
    static func sourceColour(of handle: OpaquePointer) -> SourceColour {
        let size = heif_image_handle_get_raw_color_profile_size(handle)
        if size > 0, size <= EmbeddedColour.maxProfileBytes {
            var bytes = [UInt8](repeating: 0, count: size)
            let status = bytes.withUnsafeMutableBytes { heif_image_handle_get_raw_color_profile(handle, $0.baseAddress) }
            if status.code == heif_error_Ok { return .icc(bytes) }
        }
        guard heif_image_handle_get_color_profile_type(handle) == heif_color_profile_type_nclx else { return .unspecified }
        let codePoints = nclxProfile({ heif_image_handle_get_nclx_color_profile(handle, $0) }) { nclx in
            ColourCodePoints(primaries: Int(nclx.color_primaries.rawValue), transfer: Int(nclx.transfer_characteristics.rawValue),
                             matrix: Int(nclx.matrix_coefficients.rawValue), fullRange: nclx.full_range_flag != 0)
        }
        return codePoints.map { .codePoints($0) } ?? .unspecified
    }

    /// Reads an `nclx` profile through `get` (one of libheif's `…_get_nclx_color_profile`) and
    /// frees it whatever libheif answered.
    ///
    /// libheif 1.15.1 hands back the profile it allocated together with an error when a code
    /// point is one it does not know ("Unknown NCLX matrix coefficients", "… transfer
    /// characteristics"): freeing it only on success leaked 52 bytes per such upload (found by
    /// the `still` fuzz target under LeakSanitizer).
    /// - Returns: What `read` made of the profile, or `nil` when libheif reported an error.
    static func nclxProfile<T>(_ get: (UnsafeMutablePointer<UnsafeMutablePointer<heif_color_profile_nclx>?>) -> heif_error,
                               _ read: (heif_color_profile_nclx) -> T) -> T? {
        var nclx: UnsafeMutablePointer<heif_color_profile_nclx>?
        let status = get(&nclx)
        defer { if let nclx { heif_nclx_color_profile_free(nclx) } }
        guard status.code == heif_error_Ok, let nclx else { return nil }
        return read(nclx.pointee)
    }

    /// The colour of the primary image of a HEIF/AVIF file, for the metadata job.
    static func primaryColour(file: SafeFile, limits: MediaLimits) throws(JobError) -> SourceColour {
        let context = try HEIFContext(file: file, limits: limits, stop: StopGuard(cancellation: nil, timeout: limits.timeout))
        let primary = try context.primaryHandle()
        defer { heif_image_handle_release(primary) }
        return sourceColour(of: primary)
    }
}
