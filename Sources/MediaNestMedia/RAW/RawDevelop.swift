import CLibRaw
import MediaNestCore

/// Develops a camera RAW file with libraw when its embedded preview is too small for the request:
/// a half-size demosaic (each 2×2 Bayer cell becomes one pixel, no interpolation), the camera's
/// white balance, 8-bit sRGB.
///
/// Limits, as for every other decode:
/// - **Pixels**, before anything is unpacked: the sensor's declared size (`raw_width` ×
///   `raw_height`, and the visible `width` × `height`) must be within ``MediaLimits/maxPixels``,
///   else `pixel_limit` and nothing is allocated for pixels.
/// - **Memory**: libraw's own allocation ceiling (`max_raw_memory_mb`) is set from the pixel
///   limit (8 bytes per pixel, at most 2 GiB), so a header that lies about its layout cannot make
///   libraw allocate past it.
/// - **Time**: libraw's progress callback polls the job's cancellation and deadline between
///   stages and cancels libraw, which surfaces as the stop's own code.
///
/// The result is **not oriented**: libraw's own flip is switched off (`user_flip = 0`) and the
/// caller applies the file's orientation, as for the embedded preview.
enum RawDevelop {
    /// Bytes libraw may allocate per pixel of the pixel limit (a 4-channel 16-bit raw image).
    static let memoryBytesPerPixel: Int64 = 8

    /// Develops the open RAW file, reduced to `maxLongEdge` (never upscaled).
    /// - Throws: ``JobError`` `pixel_limit`, `unsupported_format` (a layout libraw cannot
    ///   develop), `corrupt_media`, or the stop's code.
    static func develop(_ session: LibRawSession, camera: String?, limits: MediaLimits, maxLongEdge: Int) throws(JobError) -> RGBAImage {
        let raw = session.data
        let name = session.name
        let described = "The RAW file \(name)\(camera.map { " (\($0))" } ?? "")"
        let sizes = raw.pointee.sizes
        let (rawWidth, rawHeight) = (Int(sizes.raw_width), Int(sizes.raw_height))
        let (width, height) = (Int(sizes.width), Int(sizes.height))
        guard rawWidth > 0, rawHeight > 0, width > 0, height > 0 else {
            throw JobError(.corruptMedia, "\(described) declares no image size, so it cannot be developed.")
        }
        for (w, h) in [(rawWidth, rawHeight), (width, height)] where limits.exceedsPixelLimit(width: w, height: h) {
            throw JobError(.pixelLimit, "\(described) declares a \(w)×\(h) sensor (\(Int64(w) * Int64(h)) pixels), over the limit of \(limits.maxPixels) pixels; nothing was decoded.")
        }

        let params = withUnsafeMutablePointer(to: &raw.pointee.params) { $0 }
        params.pointee.half_size = 1
        params.pointee.use_camera_wb = 1
        params.pointee.use_auto_wb = 0
        params.pointee.output_color = 1     // sRGB primaries
        params.pointee.output_bps = 8
        params.pointee.user_flip = 0        // the caller orients, as for the embedded preview
        params.pointee.gamm.0 = 1 / 2.4     // the sRGB transfer curve (dcraw's default is BT.709)
        params.pointee.gamm.1 = 12.92
        let memoryLimit = min(2048, max(64, (limits.maxPixels * memoryBytesPerPixel) >> 20))
        params.pointee.max_raw_memory_mb = UInt32(memoryLimit)

        let stop = session.stop
        libraw_set_progress_handler(raw, { context, _, _, _ in
            guard let context else { return 0 }
            return Unmanaged<StopGuard>.fromOpaque(context).takeUnretainedValue().stopReason == nil ? 0 : 1
        }, Unmanaged.passUnretained(stop).toOpaque())
        defer { libraw_set_progress_handler(raw, nil, nil) }

        try check(libraw_unpack(raw), step: "unpacking", described: described, stop: stop)
        try stop.check()
        try check(libraw_dcraw_process(raw), step: "developing", described: described, stop: stop)
        try stop.check()
        var status: Int32 = 0
        guard let developed = libraw_dcraw_make_mem_image(raw, &status) else {
            try check(status == 0 ? -1 : status, step: "developing", described: described, stop: stop)
            throw JobError(.corruptMedia, "\(described) cannot be developed.")
        }
        defer { libraw_dcraw_clear_mem(developed) }
        // libraw's working images are no longer needed; free them before the RGBA copy.
        libraw_recycle(raw)

        let image = try rgba(developed, described: described)
        let size = RGBAImage.fittedSize(width: image.width, height: image.height, maxLongEdge: maxLongEdge)
        if size.width == image.width && size.height == image.height { return image }
        return try FrameConverter.resize(image, width: size.width, height: size.height)
    }

    /// libraw's 8-bit RGB (or grey) bitmap as RGBA.
    private static func rgba(_ developed: UnsafeMutablePointer<libraw_processed_image_t>, described: String) throws(JobError) -> RGBAImage {
        let header = developed.pointee
        let (width, height, colors) = (Int(header.width), Int(header.height), Int(header.colors))
        guard header.type == LIBRAW_IMAGE_BITMAP, header.bits == 8, colors == 3 || colors == 1, width > 0, height > 0,
              Int(header.data_size) >= width * height * colors else {
            throw JobError(.corruptMedia, "\(described) was developed into an unexpected layout (\(colors) colours, \(header.bits) bits).")
        }
        let data = UnsafeRawPointer(developed).advanced(by: MemoryLayout<libraw_processed_image_t>.offset(of: \.data)!)
            .assumingMemoryBound(to: UInt8.self)
        var pixels = [UInt8](repeating: 255, count: width * height * 4)
        pixels.withUnsafeMutableBufferPointer { out in
            for i in 0..<(width * height) {
                let source = i * colors
                out[i * 4] = data[source]
                out[i * 4 + 1] = data[source + (colors == 3 ? 1 : 0)]
                out[i * 4 + 2] = data[source + (colors == 3 ? 2 : 0)]
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels, hasAlpha: false)
    }

    /// Turns a libraw status into the job's error.
    private static func check(_ status: Int32, step: String, described: String, stop: StopGuard) throws(JobError) {
        guard status != CLibRaw_LIBRAW_SUCCESS else { return }
        if let reason = stop.stopReason { throw reason.error }
        let reason = LibRawSession.errorText(status)
        switch status {
        case CLibRaw_LIBRAW_TOO_BIG, CLibRaw_LIBRAW_UNSUFFICIENT_MEMORY, CLibRaw_LIBRAW_MEMPOOL_OVERFLOW:
            throw JobError(.pixelLimit, "\(described) needs more memory than the limit allows while \(step) (libraw: \(reason)); nothing was kept.")
        case CLibRaw_LIBRAW_FILE_UNSUPPORTED, CLibRaw_LIBRAW_NOT_IMPLEMENTED:
            throw JobError(.unsupportedFormat, "\(described) uses a raw layout libraw cannot develop (libraw: \(reason)).")
        default:
            throw JobError(.corruptMedia, "\(described) is damaged: libraw failed while \(step) (\(reason)).")
        }
    }
}
