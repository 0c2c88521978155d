import MediaNestFuzzing

/// libFuzzer's entry point for the `tiff` target (see docs/FUZZING.md).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.tiff.fuzz(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
