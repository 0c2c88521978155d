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
        var nclx: UnsafeMutablePointer<heif_color_profile_nclx>?
        guard heif_image_handle_get_nclx_color_profile(handle, &nclx).code == heif_error_Ok, let nclx else { return .unspecified }
        defer { heif_nclx_color_profile_free(nclx) }
        return .codePoints(ColourCodePoints(primaries: Int(nclx.pointee.color_primaries.rawValue),
                                            transfer: Int(nclx.pointee.transfer_characteristics.rawValue),
                                            matrix: Int(nclx.pointee.matrix_coefficients.rawValue),
                                            fullRange: nclx.pointee.full_range_flag != 0))
    }

    /// The colour of the primary image of a HEIF/AVIF file, for the metadata job.
    static func primaryColour(file: SafeFile, limits: MediaLimits) throws(JobError) -> SourceColour {
        let context = try HEIFContext(file: file, limits: limits, stop: StopGuard(cancellation: nil, timeout: limits.timeout))
        let primary = try context.primaryHandle()
        defer { heif_image_handle_release(primary) }
        return sourceColour(of: primary)
    }
}
