import Foundation
public import MediaNestCore

/// A PostgreSQL type OID, as libpq reports it for result columns and takes for parameters.
public typealias PGTypeOID = UInt32

/// OIDs of the built-in types this module encodes and decodes.
public enum PGType {
    public static let unknown: PGTypeOID = 0
    public static let bool: PGTypeOID = 16
    public static let bytea: PGTypeOID = 17
    public static let name: PGTypeOID = 19
    public static let int8: PGTypeOID = 20
    public static let int2: PGTypeOID = 21
    public static let int4: PGTypeOID = 23
    public static let text: PGTypeOID = 25
    public static let oid: PGTypeOID = 26
    public static let json: PGTypeOID = 114
    public static let float4: PGTypeOID = 700
    public static let float8: PGTypeOID = 701
    public static let cidr: PGTypeOID = 650
    public static let inet: PGTypeOID = 869
    public static let bpchar: PGTypeOID = 1042
    public static let varchar: PGTypeOID = 1043
    public static let timestamp: PGTypeOID = 1114
    public static let timestamptz: PGTypeOID = 1184
    public static let numeric: PGTypeOID = 1700
    public static let uuid: PGTypeOID = 2950
    public static let jsonb: PGTypeOID = 3802
    public static let textArray: PGTypeOID = 1009
    public static let varcharArray: PGTypeOID = 1015
    public static let uuidArray: PGTypeOID = 2951
    /// The first OID PostgreSQL hands out to user-defined types (enums, domains).
    public static let firstUserDefined: PGTypeOID = 16384

    /// A readable name for an OID, for error messages.
    public static func name(of oid: PGTypeOID) -> String {
        switch oid {
        case bool: "boolean"
        case bytea: "bytea"
        case name: "name"
        case int8: "bigint"
        case int2: "smallint"
        case int4: "integer"
        case text: "text"
        case oid: "oid"
        case json: "json"
        case float4: "real"
        case float8: "double precision"
        case cidr: "cidr"
        case inet: "inet"
        case bpchar: "character"
        case varchar: "character varying"
        case timestamp: "timestamp"
        case timestamptz: "timestamptz"
        case numeric: "numeric"
        case uuid: "uuid"
        case jsonb: "jsonb"
        case textArray: "text[]"
        case varcharArray: "character varying[]"
        case uuidArray: "uuid[]"
        default: oid >= firstUserDefined ? "user-defined type \(oid)" : "type \(oid)"
        }
    }
}

/// A Swift value that can be sent as a bound query parameter.
///
/// Values always travel as parameters in libpq's text format; nothing is ever spliced into SQL.
public protocol PGEncodable: Sendable {
    /// The parameter's text form.
    var pgText: String { get }
    /// The type to declare for the parameter, or ``PGType/unknown`` to let the server infer it
    /// from context (which is what lets a Swift `String` fill a uuid or enum column).
    static var pgParameterType: PGTypeOID { get }
}

/// A Swift type that a result column can be decoded into.
public protocol PGDecodable: Sendable {
    /// Decodes the column's text form.
    /// - Parameters:
    ///   - text: The value as PostgreSQL's text output.
    ///   - type: The column's type OID, already checked against ``pgAcceptsType(_:)``.
    /// - Throws: ``DatabaseError`` of kind ``DatabaseError/Kind/decoding`` for malformed text.
    static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Self
    /// Whether a column of this type may be decoded as `Self`.
    static func pgAcceptsType(_ type: PGTypeOID) -> Bool
    /// The value for SQL NULL; throws unless `Self` is optional.
    static func pgDecodeNull(column: String) throws(DatabaseError) -> Self
    /// A name for error messages.
    static var pgTypeDescription: String { get }
}

extension PGDecodable {
    public static func pgDecodeNull(column: String) throws(DatabaseError) -> Self {
        throw DatabaseError(kind: .decoding, message: "column \"\(column)\" is NULL but \(pgTypeDescription) was expected; decode it as an optional")
    }
}

func decodingError(_ text: String, as type: String) -> DatabaseError {
    DatabaseError(kind: .decoding, message: "cannot decode \"\(text.prefix(80))\" as \(type)")
}

// MARK: - Strings, uuids and enums

extension String: PGEncodable, PGDecodable {
    public var pgText: String { self }
    public static var pgParameterType: PGTypeOID { PGType.unknown }
    public static func pgDecode(text: String, type: PGTypeOID) -> String { text }
    /// Text-like types, uuid and user-defined types (the schema's enums).
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool {
        [PGType.text, PGType.varchar, PGType.bpchar, PGType.name, PGType.uuid, PGType.inet, PGType.unknown].contains(type)
            || type >= PGType.firstUserDefined
    }
    public static var pgTypeDescription: String { "text" }
}

extension UUID: PGEncodable, PGDecodable {
    public var pgText: String { uuidString.lowercased() }
    public static var pgParameterType: PGTypeOID { PGType.uuid }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> UUID {
        guard let uuid = UUID(uuidString: text) else { throw decodingError(text, as: "uuid") }
        return uuid
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.uuid }
    public static var pgTypeDescription: String { "uuid" }
}

// MARK: - Integers

extension Int: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public static var pgParameterType: PGTypeOID { PGType.int8 }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Int {
        guard let value = Int(text) else { throw decodingError(text, as: "integer") }
        return value
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { [PGType.int2, PGType.int4, PGType.int8, PGType.oid].contains(type) }
    public static var pgTypeDescription: String { "integer" }
}

extension Int64: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public static var pgParameterType: PGTypeOID { PGType.int8 }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Int64 {
        guard let value = Int64(text) else { throw decodingError(text, as: "bigint") }
        return value
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { [PGType.int2, PGType.int4, PGType.int8, PGType.oid].contains(type) }
    public static var pgTypeDescription: String { "bigint" }
}

extension Int32: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public static var pgParameterType: PGTypeOID { PGType.int4 }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Int32 {
        guard let value = Int32(text) else { throw decodingError(text, as: "integer") }
        return value
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { [PGType.int2, PGType.int4].contains(type) }
    public static var pgTypeDescription: String { "integer" }
}

extension Int16: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public static var pgParameterType: PGTypeOID { PGType.int2 }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Int16 {
        guard let value = Int16(text) else { throw decodingError(text, as: "smallint") }
        return value
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.int2 }
    public static var pgTypeDescription: String { "smallint" }
}

// MARK: - Bool, Double

extension Bool: PGEncodable, PGDecodable {
    public var pgText: String { self ? "t" : "f" }
    public static var pgParameterType: PGTypeOID { PGType.bool }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Bool {
        switch text {
        case "t": return true
        case "f": return false
        default: throw decodingError(text, as: "boolean")
        }
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.bool }
    public static var pgTypeDescription: String { "boolean" }
}

extension Double: PGEncodable, PGDecodable {
    public var pgText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
    public static var pgParameterType: PGTypeOID { PGType.float8 }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Double {
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default:
            guard let value = Double(text) else { throw decodingError(text, as: "double precision") }
            return value
        }
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool {
        [PGType.float4, PGType.float8, PGType.numeric, PGType.int2, PGType.int4, PGType.int8].contains(type)
    }
    public static var pgTypeDescription: String { "double precision" }
}

// MARK: - Timestamps

extension Date: PGEncodable, PGDecodable {
    /// ISO 8601 in UTC with microseconds, which PostgreSQL reads for timestamptz.
    public var pgText: String { PGTimestamp.format(self) }
    public static var pgParameterType: PGTypeOID { PGType.timestamptz }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Date {
        guard let date = PGTimestamp.parse(text, assumeUTC: type == PGType.timestamp) else { throw decodingError(text, as: "timestamp") }
        return date
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.timestamptz || type == PGType.timestamp }
    public static var pgTypeDescription: String { "timestamptz" }
}

/// Reads and writes PostgreSQL's ISO timestamp text (`DateStyle = ISO`).
enum PGTimestamp {
    static func format(_ date: Date) -> String {
        let totalMicros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int64((totalMicros / 1_000_000).rounded(.down))
        var micros = Int64(totalMicros - Double(seconds) * 1_000_000)
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let microText = String(micros)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2)) "
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - microText.count) + microText + "+00"
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]]`; `infinity` is not supported.
    static func parse(_ text: String, assumeUTC: Bool) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            index += count
            return value
        }
        func skip(_ ascii: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == ascii else { return false }
            index += 1
            return true
        }
        guard let year = number(4), skip(45), let month = number(2), skip(45), let day = number(2),
              skip(32) || skip(84), let hour = number(2), skip(58), let minute = number(2), skip(58), let second = number(2)
        else { return nil }
        var fraction = 0.0
        if skip(46) {
            var scale = 0.1
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                fraction += Double(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        var offsetSeconds = 0
        if index < bytes.count {
            let sign: Int
            if skip(43) { sign = 1 } else if skip(45) { sign = -1 } else if skip(90) { sign = 0 } else { return nil }
            if sign != 0 {
                guard let hours = number(2) else { return nil }
                var minutes = 0, seconds = 0
                if skip(58) { minutes = number(2) ?? 0 }
                if skip(58) { seconds = number(2) ?? 0 }
                offsetSeconds = sign * (hours * 3600 + minutes * 60 + seconds)
            }
        } else if !assumeUTC {
            return nil
        }
        guard index == bytes.count else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = timegm(&parts)
        return Date(timeIntervalSince1970: Double(epoch - offsetSeconds) + fraction)
    }
}

// MARK: - JSON

extension JSONValue: PGEncodable, PGDecodable {
    public var pgText: String { jsonText }
    public static var pgParameterType: PGTypeOID { PGType.jsonb }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> JSONValue {
        do { return try JSONValue(parsing: text) } catch { throw decodingError(text, as: "json") }
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.jsonb || type == PGType.json }
    public static var pgTypeDescription: String { "jsonb" }
}

// MARK: - inet

/// An `inet` value: an IPv4 or IPv6 host address, optionally with a netmask.
public struct PGInet: PGEncodable, PGDecodable, Hashable, CustomStringConvertible {
    /// The address as PostgreSQL prints it, e.g. `192.168.0.1` or `2001:db8::/32`.
    public var address: String
    /// Validates the text with `inet_pton`.
    public init?(_ address: String) {
        let host = address.split(separator: "/", maxSplits: 1).first.map(String.init) ?? address
        var buffer = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET, host, &buffer) == 1 || inet_pton(AF_INET6, host, &buffer) == 1 else { return nil }
        self.address = address
    }
    public var description: String { address }
    public var pgText: String { address }
    public static var pgParameterType: PGTypeOID { PGType.inet }
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> PGInet {
        guard let value = PGInet(text) else { throw decodingError(text, as: "inet") }
        return value
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { type == PGType.inet || type == PGType.cidr }
    public static var pgTypeDescription: String { "inet" }
}

// MARK: - text[]

extension Array: PGEncodable, PGDecodable where Element == String {
    /// An array literal with every element quoted: `{"a","b \"c\""}`.
    ///
    /// Built over UTF-8 bytes (`"` and `\` are ASCII, so escaping them byte by byte is exact):
    /// the result writer encodes three of these per batch, and walking grapheme clusters cost a
    /// tenth of the queue bench's client CPU.
    public var pgText: String {
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(2 + reduce(0) { $0 + $1.utf8.count + 3 })
        for (index, element) in enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(UInt8(ascii: "\""))
            for byte in element.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
    public static var pgParameterType: PGTypeOID { PGType.textArray }
    /// Parses a one-dimensional array literal; NULL elements are refused.
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> [String] {
        var characters = Substring(text)
        guard characters.first == "{", characters.last == "}" else { throw decodingError(text, as: "text[]") }
        characters = characters.dropFirst().dropLast()
        var elements: [String] = []
        var current = ""
        var inQuotes = false, wasQuoted = false, escaped = false
        for character in characters {
            if escaped { current.append(character); escaped = false; continue }
            if inQuotes {
                if character == "\\" { escaped = true } else if character == "\"" { inQuotes = false } else { current.append(character) }
                continue
            }
            switch character {
            case "\"": inQuotes = true; wasQuoted = true
            case ",":
                if !wasQuoted && current == "NULL" { throw DatabaseError(kind: .decoding, message: "text[] contains NULL") }
                elements.append(current); current = ""; wasQuoted = false
            default: current.append(character)
            }
        }
        if !characters.isEmpty {
            if !wasQuoted && current == "NULL" { throw DatabaseError(kind: .decoding, message: "text[] contains NULL") }
            elements.append(current)
        }
        return elements
    }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { [PGType.textArray, PGType.varcharArray, PGType.uuidArray].contains(type) || type >= PGType.firstUserDefined }
    public static var pgTypeDescription: String { "text[]" }
}

// MARK: - NULL

extension Optional: PGDecodable where Wrapped: PGDecodable {
    public static func pgDecode(text: String, type: PGTypeOID) throws(DatabaseError) -> Wrapped? { try Wrapped.pgDecode(text: text, type: type) }
    public static func pgAcceptsType(_ type: PGTypeOID) -> Bool { Wrapped.pgAcceptsType(type) }
    public static func pgDecodeNull(column: String) -> Wrapped? { nil }
    public static var pgTypeDescription: String { Wrapped.pgTypeDescription + "?" }
}
