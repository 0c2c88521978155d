import MediaNestCore

/// Refuses an MP4/QuickTime file whose sample tables claim more samples than the file could
/// hold, before FFmpeg's demuxer builds its index from them.
///
/// FFmpeg 5.1's `mov` demuxer allocates and fills one 24-byte index entry per sample the tables
/// claim (`mov_build_index` from `stsz`, `mov_read_trun` per fragment), before reading any
/// sample: a 600-byte file claiming 2^24 samples of one byte each, all in one chunk, takes
/// 450 MB, and FFmpeg's own cap (`UINT_MAX / 24` entries) allows 4 GB. Every sample occupies at
/// least one byte of the file, so a file of N bytes holds at most N samples; this check walks the
/// box headers (`moov/trak/mdia/minf/stbl/stsz|stz2` and `moof/traf/trun`, a few reads each)
/// and refuses a file whose tables together claim more, with `corrupt_media`. The index of an
/// accepted file is at most 24 bytes per byte of the file.
enum SampleTableCheck {
    /// Containers on the path to a sample count.
    private static let containers: Set<String> = ["moov", "trak", "mdia", "minf", "stbl", "moof", "traf"]
    /// Most boxes looked at, so that a file of millions of tiny boxes cannot keep the walk busy.
    static let maxBoxes = 1_000_000

    /// Throws `corrupt_media` when the sample tables of `file` claim more samples than its size.
    static func check(_ file: SafeFile) throws(JobError) {
        var boxes = 0
        var samples: UInt64 = 0
        try walk(file, from: 0, to: file.size, depth: 0, boxes: &boxes, samples: &samples)
        if samples > UInt64(max(file.size, 0)) {
            throw JobError(.corruptMedia, "The file \(file.relativePath) is \(file.size) bytes, but its sample tables claim \(samples) samples, more than it can hold; nothing was read from them.")
        }
    }

    private static func walk(_ file: SafeFile, from start: Int64, to end: Int64, depth: Int, boxes: inout Int, samples: inout UInt64) throws(JobError) {
        var offset = start
        while offset + 8 <= end, boxes < maxBoxes {
            boxes += 1
            let header = try file.read(at: offset, count: 16)
            guard header.count >= 8 else { return }
            var size = Int64(be32(header, 0))
            let type = String(decoding: header[4..<8], as: UTF8.self)
            var headerSize: Int64 = 8
            if size == 1 {
                guard header.count >= 16 else { return }
                size = Int64(bitPattern: UInt64(be32(header, 8)) << 32 | UInt64(be32(header, 12)))
                headerSize = 16
            } else if size == 0 {
                size = end - offset
            }
            guard size >= headerSize, size <= end - offset else { return }
            let body = offset + headerSize
            if containers.contains(type), depth < 8 {
                try walk(file, from: body, to: offset + size, depth: depth + 1, boxes: &boxes, samples: &samples)
            } else if type == "stsz" || type == "stz2" || type == "trun" {
                let fields = try file.read(at: body, count: 12)
                if fields.count >= 8 {
                    switch type {
                    // version/flags, sample_size, sample_count: a table of sizes follows only when sample_size is 0
                    case "stsz" where fields.count >= 12: samples += UInt64(be32(fields, 8))
                    // version/flags, 24 reserved bits and a field size, sample_count
                    case "stz2" where fields.count >= 12: samples += UInt64(be32(fields, 8))
                    // version/flags, sample_count
                    case "trun": samples += UInt64(be32(fields, 4))
                    default: break
                    }
                }
            }
            offset += size
        }
    }

    private static func be32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }
}
