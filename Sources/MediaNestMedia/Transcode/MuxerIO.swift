import CFFmpeg
#if canImport(Glibc)
import Glibc
#endif
import Logging
import MediaNestCore

// The MP4 muxer's I/O: a custom AVIOContext writing into a ``PendingOutput`` with `pwrite`, and
// the `io_open`/`io_close2` pair that gives its `+faststart` pass a read-back of the same output.

/// The write side of the muxer's AVIOContext: `pwrite` at the muxer's position.
final class MuxSink {
    let output: PendingOutput
    var position: Int64 = 0
    var failure: JobError?
    init(output: PendingOutput) { self.output = output }
}

/// One read-back AVIOContext over the output (the MP4 muxer's faststart pass).
final class MuxReadBack {
    let sink: MuxSink
    var output: PendingOutput { sink.output }
    var position: Int64 = 0
    init(sink: MuxSink) { self.sink = sink }
}

let muxWrite: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UInt8>?, Int32) -> Int32 = { opaque, buffer, size in
    guard let opaque, let buffer, size >= 0 else { return CFFmpeg_AVERROR(EINVAL) }
    let sink = Unmanaged<MuxSink>.fromOpaque(opaque).takeUnretainedValue()
    do throws(JobError) {
        try sink.output.write(UnsafeRawBufferPointer(start: buffer, count: Int(size)), at: sink.position)
        sink.position += Int64(size)
        return size
    } catch {
        sink.failure = error
        return CFFmpeg_AVERROR(EIO)
    }
}

let muxSeek: @convention(c) (UnsafeMutableRawPointer?, Int64, Int32) -> Int64 = { opaque, offset, whence in
    guard let opaque else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    let sink = Unmanaged<MuxSink>.fromOpaque(opaque).takeUnretainedValue()
    if whence & CFFmpeg_AVSEEK_SIZE != 0 { return sink.output.size }
    let target: Int64
    switch whence & ~CFFmpeg_AVSEEK_FORCE {
    case SEEK_SET: target = offset
    case SEEK_CUR: target = sink.position + offset
    case SEEK_END: target = sink.output.size + offset
    default: return Int64(CFFmpeg_AVERROR(EINVAL))
    }
    guard target >= 0 else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    sink.position = target
    return target
}

private let readBackRead: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UInt8>?, Int32) -> Int32 = { opaque, buffer, size in
    guard let opaque, let buffer, size > 0 else { return CFFmpeg_AVERROR(EINVAL) }
    let reader = Unmanaged<MuxReadBack>.fromOpaque(opaque).takeUnretainedValue()
    let n = reader.output.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: Int(size)), at: reader.position)
    if n < 0 {
        // The MP4 muxer's faststart pass treats a failed read as the end of the data and would
        // leave a broken file: remember it so the run fails instead.
        let code = errno
        reader.sink.failure = JobError(.ioError, "Reading back \(reader.output.relativePath) for faststart failed: \(errnoText(code)).")
        return CFFmpeg_AVERROR(code)
    }
    if n == 0 { return CFFmpeg_AVERROR_EOF }
    reader.position += Int64(n)
    return Int32(n)
}

private let readBackSeek: @convention(c) (UnsafeMutableRawPointer?, Int64, Int32) -> Int64 = { opaque, offset, whence in
    guard let opaque else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    let reader = Unmanaged<MuxReadBack>.fromOpaque(opaque).takeUnretainedValue()
    if whence & CFFmpeg_AVSEEK_SIZE != 0 { return reader.output.size }
    let target: Int64
    switch whence & ~CFFmpeg_AVSEEK_FORCE {
    case SEEK_SET: target = offset
    case SEEK_CUR: target = reader.position + offset
    case SEEK_END: target = reader.output.size + offset
    default: return Int64(CFFmpeg_AVERROR(EINVAL))
    }
    guard target >= 0 else { return Int64(CFFmpeg_AVERROR(EINVAL)) }
    reader.position = target
    return target
}

/// The muxer's nested opens: only a read-back of its own output (faststart); never a path.
let muxIOOpen: @convention(c) (UnsafeMutablePointer<AVFormatContext>?, UnsafeMutablePointer<UnsafeMutablePointer<AVIOContext>?>?,
                                       UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = { context, result, _, flags, _ in
    guard let context, let result, let opaque = context.pointee.opaque, flags & AVIO_FLAG_WRITE == 0 else {
        FFmpegLog.logger.warning("refused a nested write open requested by the muxer")
        return CFFmpeg_AVERROR(EPERM)
    }
    let sink = Unmanaged<MuxSink>.fromOpaque(opaque).takeUnretainedValue()
    let reader = MuxReadBack(sink: sink)
    let size: Int32 = 64 * 1024
    guard let buffer = av_malloc(Int(size)) else { return CFFmpeg_AVERROR_ENOMEM }
    let retained = Unmanaged.passRetained(reader).toOpaque()
    guard let io = avio_alloc_context(buffer.assumingMemoryBound(to: UInt8.self), size, 0, retained, readBackRead, nil, readBackSeek) else {
        av_free(buffer)
        Unmanaged<MuxReadBack>.fromOpaque(retained).release()
        return CFFmpeg_AVERROR_ENOMEM
    }
    result.pointee = io
    return 0
}

let muxIOClose: @convention(c) (UnsafeMutablePointer<AVFormatContext>?, UnsafeMutablePointer<AVIOContext>?) -> Int32 = { _, io in
    guard let io else { return 0 }
    if let opaque = io.pointee.opaque { Unmanaged<MuxReadBack>.fromOpaque(opaque).release() }
    av_free(io.pointee.buffer)
    io.pointee.buffer = nil
    var doomed: UnsafeMutablePointer<AVIOContext>? = io
    avio_context_free(&doomed)
    return 0
}

