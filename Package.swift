// swift-tools-version:6.1
//
// MediaNest Worker: the media-processing daemon of MediaNest.
//
// Module map (one module per concern; see docs/ARCHITECTURE.md):
//   C shims        CLibPQ, CFFmpeg, CMagic, CLibCrypto, CHeif, CLibRaw, CTurboJPEG, CJXL, CMalloc, CLcms2, CZlib, CThreadName   (system libraries; pkg-config except CLibRaw, CJXL, CMalloc, CThreadName)
//   MediaNestCore        errors, progress, cancellation, JSON; no C, no database
//   MediaNestDB          libpq wrapper: connections, bound parameters, decoding, LISTEN/NOTIFY
//   MediaNestMigrations  versioned SQL migrations with checksums and an advisory lock
//   MediaNestQueue       the job engine: claim, lease, heartbeat, retry, rescue; no media code
//   MediaNestMedia       safe open, probe, MIME sniffing, checksums; no database code
//   MediaNestWorker      glue: job handlers, runtime, configuration
//   MediaNestSystemd     sd_notify by hand, journald/text/JSON log lines; no database, no media
//   MediaNestMetrics     Prometheus /metrics, /healthz, /readyz (swift-prometheus, NIO HTTP/1)
//   MediaNestFuzzing     the fuzz targets as plain functions; replayed by `make test`, fuzzed by `make fuzz`
//   medianest-worker     thin ArgumentParser executable
//   medianest-testworker the same runtime with synthetic handlers, for the tests; never installed
//   MediaNestTestSupport the tests' throwaway databases, fixtures, quiet logging (TestLogging)
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "medianest-worker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "medianest-worker", targets: ["medianest-worker"]),
        .library(name: "MediaNestMedia", targets: ["MediaNestMedia"]),
        .library(name: "MediaNestQueue", targets: ["MediaNestQueue"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // The configuration file (YAML through Yams), environment and flags in one reader.
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: [.defaults, "YAML"]),
        // /metrics, /healthz, /readyz.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // MARK: C libraries, found through pkg-config
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CFFmpeg",
            pkgConfig: "libavformat libavcodec libavfilter libswscale libswresample libavutil",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavfilter-dev", "libswscale-dev", "libswresample-dev", "libavutil-dev"])]
        ),
        .systemLibrary(
            name: "CMagic",
            pkgConfig: "libmagic",
            providers: [.apt(["libmagic-dev"])]
        ),
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // HEIC/HEIF and AVIF stills (FFmpeg 5.1 cannot read item-based HEIF).
        .systemLibrary(
            name: "CHeif",
            pkgConfig: "libheif",
            providers: [.apt(["libheif-dev"])]
        ),
        // Camera RAW: only the embedded JPEG preview is used (thread-safe libraw_r). No pkgConfig:
        // libraw_r.pc adds -fopenmp, which SwiftPM rejects with a warning; the header is included
        // as <libraw/libraw.h> from the default include path and the module map links the library.
        .systemLibrary(
            name: "CLibRaw",
            providers: [.apt(["libraw-dev"])]
        ),
        // glibc's malloc_trim and mallinfo2 (malloc.h), which the Glibc module does not import:
        // the runtime gives free heap memory back when its job pool goes idle. Part of libc.
        .systemLibrary(name: "CMalloc"),
        // prctl(PR_SET_NAME) (sys/prctl.h), which the Glibc module does not import: the
        // runtime's threads carry their names for top -H, perf and gdb. Part of libc.
        .systemLibrary(name: "CThreadName"),
        // JPEG stills: libjpeg-turbo's faster entropy decoder and DCT-domain scaling.
        .systemLibrary(
            name: "CTurboJPEG",
            pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"])]
        ),
        // JPEG XL stills: decoded to 8 bits, and their header read, with libjxl itself. No
        // pkgConfig: libjxl.pc adds -DHWY_SHARED_DEFINE, which SwiftPM rejects with a warning on
        // every build; <jxl/decode.h> is on the default include path and the module map links it.
        .systemLibrary(
            name: "CJXL",
            providers: [.apt(["libjxl-dev"])]
        ),
        // Colour management of the stills: embedded ICC profiles converted to sRGB (or Display P3).
        .systemLibrary(
            name: "CLcms2",
            pkgConfig: "lcms2",
            providers: [.apt(["liblcms2-dev"])]
        ),
        // A PNG's iCCP profile is zlib-compressed.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),

        // MARK: Libraries
        .target(
            name: "MediaNestCore",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestDB",
            dependencies: [
                "CLibPQ", "MediaNestCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestMigrations",
            dependencies: [
                "MediaNestDB", "MediaNestCore", "CLibCrypto",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestQueue",
            dependencies: [
                "MediaNestDB", "MediaNestCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestMedia",
            dependencies: [
                "CFFmpeg", "CMagic", "CLibCrypto", "CHeif", "CLibRaw", "CTurboJPEG", "CJXL", "CLcms2", "CZlib", "MediaNestCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestSystemd",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: upcoming
        ),
        // Prometheus exposition, /healthz and /readyz over a small NIO HTTP/1 server run as a
        // swift-service-lifecycle Service. Kept apart so that Queue and Media stay free of NIO.
        .target(
            name: "MediaNestMetrics",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "MediaNestWorker",
            dependencies: [
                "CMalloc", "CThreadName", "MediaNestCore", "MediaNestDB", "MediaNestMigrations", "MediaNestQueue", "MediaNestMedia", "MediaNestMetrics",
                "MediaNestSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "medianest-worker",
            dependencies: [
                "MediaNestWorker", "MediaNestCore", "MediaNestDB", "MediaNestMigrations", "MediaNestQueue", "MediaNestMedia", "MediaNestSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        // The same `run` machinery with synthetic handlers (sleep, crash, fail, progress) that the
        // engine's tests drive through input_data. Never shipped: the production binary must not
        // contain handlers that crash or sleep on request.
        .executableTarget(
            name: "medianest-testworker",
            dependencies: [
                "MediaNestWorker", "MediaNestCore", "MediaNestQueue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),

        // The fuzz targets: every parser of untrusted bytes as a function from bytes to an outcome
        // (docs/FUZZING.md). Small and free of NIO, so `make fuzz` builds only Core and Media with
        // the fuzzer's instrumentation.
        .target(
            name: "MediaNestFuzzing",
            dependencies: ["MediaNestMedia", "MediaNestCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: upcoming
        ),

        // MARK: Tests
        // Shared by the test targets only: throwaway databases, the fixture corpus, process helpers.
        .target(
            name: "MediaNestTestSupport",
            dependencies: ["MediaNestDB", "MediaNestMigrations", "MediaNestCore", "MediaNestMedia", .product(name: "Logging", package: "swift-log")],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestDBTests",
            dependencies: ["MediaNestDB", "MediaNestTestSupport"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestMigrationsTests",
            dependencies: ["MediaNestMigrations", "MediaNestDB", "MediaNestTestSupport"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestQueueTests",
            dependencies: ["MediaNestQueue", "MediaNestMigrations", "MediaNestDB", "MediaNestTestSupport"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestMediaTests",
            dependencies: ["MediaNestMedia", "MediaNestCore", "MediaNestTestSupport", "CFFmpeg", "CLcms2"],
            // Small committed HEIF/AVIF/DNG fixtures (scripts/fixtures/make-*.py), read through #filePath.
            exclude: ["Fixtures"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestWorkerTests",
            dependencies: ["MediaNestWorker", "MediaNestQueue", "MediaNestMigrations", "MediaNestDB", "MediaNestMedia", "MediaNestTestSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "MediaNestMetricsTests",
            dependencies: ["MediaNestMetrics", "MediaNestTestSupport", .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: upcoming
        ),
        // Replays every input kept under Tests/FuzzRegressions/<target>/ through its fuzz target.
        .testTarget(
            name: "MediaNestFuzzingTests",
            dependencies: ["MediaNestFuzzing", "MediaNestCore"],
            swiftSettings: upcoming
        ),
        // The operator's side: sd_notify, log formats, maintenance and backup commands, the units
        // installed by `make install` and checked with systemd-analyze.
        .testTarget(
            name: "MediaNestSystemdTests",
            dependencies: ["MediaNestSystemd", "MediaNestDB", "MediaNestTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: upcoming
        ),
        // The error model, the stop token, progress and JSON: plain values, no database, no media.
        .testTarget(
            name: "MediaNestCoreTests",
            dependencies: ["MediaNestCore"],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)

// MARK: Fuzzing
// `make fuzz` (scripts/fuzz.sh) sets MEDIANEST_FUZZ=1 and builds into its own scratch path with
// `--sanitize fuzzer -Xswiftc -sanitize=fuzzer,address`; only then do the libFuzzer executables
// exist (docs/FUZZING.md says why the flags are spelled so). Each is
// one file under Fuzz/ defining LLVMFuzzerTestOneInput (hence -parse-as-library: libFuzzer
// supplies main). A normal `swift build` never sees them.
if Context.environment["MEDIANEST_FUZZ"] == "1" {
    for name in ["exif", "probe", "still", "thumbhash", "json", "motionphoto", "icc", "tiff"] {
        package.targets.append(.executableTarget(
            name: "fuzz-\(name)",
            dependencies: ["MediaNestFuzzing"],
            path: "Fuzz/\(name)",
            swiftSettings: upcoming + [.unsafeFlags(["-parse-as-library"])]
        ))
        package.products.append(.executable(name: "fuzz-\(name)", targets: ["fuzz-\(name)"]))
    }
}
