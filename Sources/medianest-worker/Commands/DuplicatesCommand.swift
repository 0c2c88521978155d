import ArgumentParser
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestWorker

/// `medianest-worker duplicates`: the library's exact and near-duplicate groups.
struct DuplicatesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "duplicates",
        abstract: "List groups of duplicate items: exact copies (same SHA-256) and similar pictures (perceptual hash).",
        discussion: """
            Exact groups list one owner's items with the same content, the original (the earliest) first; the others \
            carry metadata.duplicate_of. Similar groups list pictures whose perceptual hashes differ in at most --distance \
            of 64 bits (a resized, recompressed or slightly cropped copy). With --json, one line per group: \
            {"kind": "exact" | "similar", "items": [ids...]}. See docs/DUPLICATES.md.
            """)

    @Option(help: "Only this owner's library (a users.id).") var owner: String?
    @Option(help: "Most bits two similar pictures' hashes may differ in (0-\(DuplicateFinder.maxDistance)).")
    var distance: Int = DuplicateFinder.defaultDistance
    @Flag(help: "One JSON object per line.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (0...DuplicateFinder.maxDistance).contains(distance) else {
            throw ValidationError("--distance must be between 0 and \(DuplicateFinder.maxDistance)")
        }
        if let owner, UUID(uuidString: owner) == nil {
            throw ValidationError("--owner must be a users.id (a UUID), got \(owner.escapingControlCharacters())")
        }
    }

    func run() throws {
        try operatorAction {
            let groups = try DuplicateFinder.groups(ownerID: owner?.lowercased(), distance: distance, on: try connection.connect())
            // One buffer of bytes, written once: thousands of groups, each line built in place
            // (ids are uuids and kinds fixed words, nothing to escape; the JSON keys in the order
            // JSONValue writes them).
            var out: [UInt8] = []
            out.reserveCapacity(groups.reduce(0) { $0 + 40 + 39 * $1.items.count })
            for group in groups {
                if json {
                    out += "{\"items\":[".utf8
                    for (index, item) in group.items.enumerated() {
                        if index > 0 { out.append(UInt8(ascii: ",")) }
                        out.append(UInt8(ascii: "\""))
                        out += item.utf8
                        out.append(UInt8(ascii: "\""))
                    }
                    out += "],\"kind\":\"".utf8
                    out += group.kind.rawValue.utf8
                    out += "\"}\n".utf8
                } else {
                    out += group.kind.rawValue.utf8
                    for item in group.items { out.append(UInt8(ascii: " ")); out += item.utf8 }
                    out.append(UInt8(ascii: "\n"))
                }
            }
            if !json {
                let exact = groups.filter { $0.kind == .exact }.count
                out += "\(exact) exact group\(exact == 1 ? "" : "s"), \(groups.count - exact) similar group\(groups.count - exact == 1 ? "" : "s") (distance \(distance))\n".utf8
            }
            FileHandle.standardOutput.write(Data(out))
        }
    }
}
