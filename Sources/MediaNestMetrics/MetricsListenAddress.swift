import Foundation

/// Where `/metrics`, `/healthz` and `/readyz` are served: `host:port`, `[v6-address]:port`, or
/// `off` (parsed to `nil`).
public struct MetricsListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address to bind, such as `127.0.0.1`, `::1` or `0.0.0.0`.
    public var host: String
    /// The TCP port; 0 asks the kernel for a free one (tests).
    public var port: Int

    /// The documented default: loopback only, the port Prometheus' exporter list reserves for
    /// this purpose.
    public static let defaultPort = 9464

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:(9464 + instance)` for a numeric instance of the systemd template
    /// (`medianest-worker@2` → 9466), `127.0.0.1:9464` otherwise, so that several instances on one
    /// host never fight over one port.
    public static func `default`(instance: String) -> MetricsListenAddress {
        if let number = Int(instance), number >= 0, number <= 65535 - defaultPort {
            return MetricsListenAddress(host: "127.0.0.1", port: defaultPort + number)
        }
        return MetricsListenAddress(host: "127.0.0.1", port: defaultPort)
    }

    /// Parses `host:port`, `[ipv6]:port` or `off`.
    /// - Returns: The address, or `nil` for `off` (metrics disabled).
    /// - Throws: ``MetricsAddressError`` saying what is wrong.
    public static func parse(_ text: String) throws(MetricsAddressError) -> MetricsListenAddress? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if ["off", "none", "disabled"].contains(trimmed.lowercased()) { return nil }
        let host: Substring
        let portText: Substring
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]"), trimmed[trimmed.index(after: close)...].hasPrefix(":") else {
                throw MetricsAddressError("expected [ipv6-address]:port or off (got \(text))")
            }
            host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            portText = trimmed[trimmed.index(close, offsetBy: 2)...]
        } else {
            guard let colon = trimmed.lastIndex(of: ":"), !trimmed[..<colon].contains(":") else {
                throw MetricsAddressError("expected host:port, such as 127.0.0.1:9464, or off (got \(text))")
            }
            host = trimmed[..<colon]
            portText = trimmed[trimmed.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            throw MetricsAddressError("expected host:port with a port from 0 to 65535, or off (got \(text))")
        }
        return MetricsListenAddress(host: String(host), port: port)
    }

    /// `127.0.0.1:9464` or `[::1]:9464`.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A metrics listen address that cannot be parsed.
public struct MetricsAddressError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, for a person.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
