extension String {
    /// This text with every control character written as a visible escape, so that untrusted
    /// text (a `storage_path`, a file name, a tag, a libpq message) can neither forge a log line
    /// nor send escape sequences to an operator's terminal.
    ///
    /// - `\n`, `\r` and `\t` become `\\n`, `\\r` and `\\t`;
    /// - every other C0 control (U+0000–U+001F), DEL (U+007F) and every C1 control
    ///   (U+0080–U+009F; U+009B is a one-byte CSI on some terminals) becomes `\\u{XX}`, so ESC is
    ///   `\\u{1B}`;
    /// - the Unicode line and paragraph separators (U+2028, U+2029), which some log viewers
    ///   break lines on, and the bidirectional overrides and isolates (U+202A–U+202E,
    ///   U+2066–U+2069), which can make one line read like another, become `\\u{XXXX}` too.
    ///
    /// Everything else, including a backslash and any printable non-ASCII text, is kept as is so
    /// that messages stay readable. Text without such characters is returned unchanged, without
    /// copying.
    /// - Returns: The escaped text.
    public func escapingControlCharacters() -> String {
        guard unicodeScalars.contains(where: \.needsEscaping) else { return self }
        var result = ""
        result.reserveCapacity(utf8.count + 16)
        for scalar in unicodeScalars {
            guard scalar.needsEscaping else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                let digits = String(scalar.value, radix: 16, uppercase: true)
                result += "\\u{" + String(repeating: "0", count: max(0, 2 - digits.count)) + digits + "}"
            }
        }
        return result
    }
}

extension Unicode.Scalar {
    /// Whether ``Swift/String/escapingControlCharacters()`` writes this scalar as an escape.
    var needsEscaping: Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
