import CMalloc
import Foundation

/// How many glibc malloc arenas the daemon allows: one per core, at least two.
///
/// glibc gives a thread that finds the heap busy an arena of its own, up to 8 per core (16 on a
/// 2-core host), and an arena never goes away. A worker's pool threads each decode frames of tens
/// of megabytes, so each ends up with an arena, and what stays in them after the jobs (scattered
/// live blocks pinning pages `malloc_trim` cannot return) is most of what an idle worker holds
/// above its start-up size. At most as many threads run at once as there are cores, so one
/// arena per core leaves the heap lock as uncontended as before while an idle worker keeps far
/// less: the 2-minute soak on 2 cores (debug build, 2026-12-04) measured an idle worker at
/// 141 MiB RSS (47 MiB anonymous) with glibc's default and 110 MiB (15 MiB anonymous) with two
/// arenas, from 72 MiB at start-up.
///
/// An operator's own choice wins: with `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` in
/// `GLIBC_TUNABLES` in the environment, the limit is left to glibc.
public enum MallocArenaLimit {
    /// The limit for a host with `cores` cores, or `nil` when the environment already sets one.
    /// - Parameters:
    ///   - cores: The cores this process may run on.
    ///   - environment: The process's environment.
    public static func limit(cores: Int, environment: [String: String]) -> Int? {
        if environment["MALLOC_ARENA_MAX"] != nil { return nil }
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.arena_max") { return nil }
        return max(2, cores)
    }

    /// Applies ``limit(cores:environment:)`` to this process (`mallopt(M_ARENA_MAX)`).
    ///
    /// Call it before the job pool starts: arenas made before it stay, later threads share them.
    /// - Returns: The limit set, or `nil` when the environment's was kept or glibc refused.
    @discardableResult
    public static func apply(cores: Int = WorkerConfiguration.cores,
                             environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        guard let limit = limit(cores: cores, environment: environment) else { return nil }
        return mallopt(M_ARENA_MAX, Int32(limit)) == 1 ? limit : nil
    }
}
