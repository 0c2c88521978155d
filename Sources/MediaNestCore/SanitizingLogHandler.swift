public import Logging

/// A swift-log handler that escapes control characters before another handler sees them.
///
/// The worker logs values that come from uploads and from the database: storage paths, file
/// names, tags, libpq and FFmpeg messages. A newline in any of them would forge a whole log line;
/// an ESC would send escape sequences to the terminal of whoever reads the log. This wrapper
/// applies ``Swift/String/escapingControlCharacters()`` to the message, to every metadata value
/// (recursively through dictionaries and arrays, keys included), to the handler's own metadata and
/// to what its metadata provider returns, and to the error attached to an event, so the wrapped
/// handler only ever formats clean text.
///
/// Install it once per process:
/// ```swift
/// LoggingSystem.bootstrap { label in
///     SanitizingLogHandler(StreamLogHandler.standardError(label: label))
/// }
/// ```
public struct SanitizingLogHandler: LogHandler {
    /// The handler that formats and writes the escaped events.
    public private(set) var wrapped: any LogHandler

    /// Wraps a handler.
    /// - Parameter wrapped: The handler that writes the lines. Its current metadata and metadata
    ///   provider are escaped from now on too.
    public init(_ wrapped: any LogHandler) {
        self.wrapped = wrapped
        self.wrapped.metadata = SanitizingLogHandler.escape(wrapped.metadata)
        self.wrapped.metadataProvider = wrapped.metadataProvider.map(SanitizingLogHandler.escaping)
    }

    public var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = SanitizingLogHandler.escape(newValue) }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue.map(SanitizingLogHandler.escaping) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key.escapingControlCharacters()] = newValue.map(SanitizingLogHandler.escape) }
    }

    public func log(event: LogEvent) {
        var clean = event
        let text = event.message.description
        let escapedText = text.escapingControlCharacters()
        if escapedText != text { clean.message = Logger.Message(stringLiteral: escapedText) }
        clean.metadata = event.metadata.map(SanitizingLogHandler.escape)
        if let error = event.error {
            // The error's description is as untrusted as any value; hand it over as escaped
            // metadata under the keys swift-log's own handlers use.
            var metadata = clean.metadata ?? [:]
            metadata["error.message"] = .string(String(describing: error).escapingControlCharacters())
            metadata["error.type"] = .string(String(reflecting: type(of: error)).escapingControlCharacters())
            clean.metadata = metadata
            clean.error = nil
        }
        wrapped.log(event: clean)
    }

    /// Escapes every key and value of `metadata`.
    /// - Parameter metadata: Metadata to clean.
    /// - Returns: The same entries, escaped.
    public static func escape(_ metadata: Logger.Metadata) -> Logger.Metadata {
        var result: Logger.Metadata = [:]
        result.reserveCapacity(metadata.count)
        for (key, value) in metadata { result[key.escapingControlCharacters()] = escape(value) }
        return result
    }

    /// Escapes one metadata value, recursively.
    /// - Parameter value: The value to clean.
    /// - Returns: The value with control characters escaped; unchanged values keep their case
    ///   (and their swift-log attributes).
    public static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text):
            return .string(text.escapingControlCharacters())
        case .stringConvertible(let convertible):
            let text = convertible.description
            let escaped = text.escapingControlCharacters()
            if escaped == text { return value }
            var result = Logger.Metadata.Value.string(escaped)
            result.attributes = value.attributes
            return result
        case .dictionary(let metadata):
            return .dictionary(escape(metadata))
        case .array(let values):
            return .array(values.map(escape))
        }
    }

    private static func escaping(_ provider: Logger.MetadataProvider) -> Logger.MetadataProvider {
        Logger.MetadataProvider { escape(provider.get()) }
    }
}
