/// Splits a SQL script into its top-level statements.
///
/// Used for migrations marked `-- medianest:no-transaction`, whose statements must be sent one at
/// a time (PostgreSQL wraps a multi-statement query string in an implicit transaction, which
/// `CREATE INDEX CONCURRENTLY` refuses). A `;` splits only at the top level: not inside
/// `'strings'`, `E'escaped strings'`, `"quoted identifiers"`, `$tag$dollar quotes$tag$`,
/// `-- line comments` or nested `/* block comments */`.
///
/// Not supported: SQL-standard function bodies (`BEGIN ATOMIC ... END`), whose inner `;` are at the
/// top level lexically. Put such functions in a migration that runs in a transaction (those are
/// sent whole and never split), or use a dollar-quoted body.
public enum SQLStatementSplitter {
    /// The statements of `script`, without their terminating `;`, trimmed of surrounding
    /// whitespace. Pieces containing only whitespace and comments are left out.
    /// - Parameter script: SQL text.
    /// - Returns: The statements in order.
    public static func statements(in script: String) -> [String] {
        let bytes = Array(script.utf8)
        var statements: [String] = []
        var start = 0
        var hasContent = false
        var index = 0

        func finish(upTo end: Int) {
            if hasContent {
                let text = String(decoding: bytes[start..<end], as: UTF8.self)
                statements.append(text.trimmingWhitespace())
            }
            hasContent = false
        }

        while index < bytes.count {
            let byte = bytes[index]
            let next: UInt8? = index + 1 < bytes.count ? bytes[index + 1] : nil
            switch byte {
            case UInt8(ascii: "-") where next == UInt8(ascii: "-"):
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
                continue
            case UInt8(ascii: "/") where next == UInt8(ascii: "*"):
                index = endOfBlockComment(bytes, from: index)
                continue
            case UInt8(ascii: "'"):
                let escapes = isEscapeStringPrefix(bytes, quoteAt: index)
                index = endOfQuoted(bytes, from: index, quote: UInt8(ascii: "'"), backslashEscapes: escapes)
                hasContent = true
                continue
            case UInt8(ascii: "\""):
                index = endOfQuoted(bytes, from: index, quote: UInt8(ascii: "\""), backslashEscapes: false)
                hasContent = true
                continue
            case UInt8(ascii: "$"):
                if let tagEnd = dollarQuoteTagEnd(bytes, at: index) {
                    let tag = Array(bytes[index...tagEnd])
                    index = endOfDollarQuoted(bytes, bodyStart: tagEnd + 1, tag: tag)
                    hasContent = true
                    continue
                }
                hasContent = true
            case UInt8(ascii: ";"):
                finish(upTo: index)
                start = index + 1
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0x0C:
                break
            default:
                hasContent = true
            }
            index += 1
        }
        finish(upTo: bytes.count)
        return statements
    }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$")
            || byte >= 0x80
    }

    /// `E'...'` (or `e'...'`) where the E is a token of its own, not the end of an identifier.
    private static func isEscapeStringPrefix(_ bytes: [UInt8], quoteAt index: Int) -> Bool {
        guard index >= 1, bytes[index - 1] == UInt8(ascii: "E") || bytes[index - 1] == UInt8(ascii: "e") else { return false }
        return index == 1 || !isIdentifierByte(bytes[index - 2])
    }

    /// The index just past the closing quote; a doubled quote is an escaped quote.
    private static func endOfQuoted(_ bytes: [UInt8], from open: Int, quote: UInt8, backslashEscapes: Bool) -> Int {
        var index = open + 1
        while index < bytes.count {
            let byte = bytes[index]
            if backslashEscapes && byte == UInt8(ascii: "\\") {
                index += 2
                continue
            }
            if byte == quote {
                if index + 1 < bytes.count, bytes[index + 1] == quote {
                    index += 2
                    continue
                }
                return index + 1
            }
            index += 1
        }
        return bytes.count
    }

    /// The index just past the comment's end; block comments nest in PostgreSQL.
    private static func endOfBlockComment(_ bytes: [UInt8], from open: Int) -> Int {
        var depth = 0
        var index = open
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "/"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "*") {
                depth += 1
                index += 2
            } else if bytes[index] == UInt8(ascii: "*"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "/") {
                depth -= 1
                index += 2
                if depth == 0 { return index }
            } else {
                index += 1
            }
        }
        return bytes.count
    }

    /// If a dollar-quote opening tag (`$$` or `$name$`) starts at `index`, the index of its
    /// closing `$`. `$1` (a parameter) and `a$b` (an identifier) are not dollar quotes.
    private static func dollarQuoteTagEnd(_ bytes: [UInt8], at index: Int) -> Int? {
        if index > 0, isIdentifierByte(bytes[index - 1]) { return nil }
        var cursor = index + 1
        guard cursor < bytes.count else { return nil }
        let first = bytes[cursor]
        if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") { return nil }
        while cursor < bytes.count, bytes[cursor] != UInt8(ascii: "$") {
            guard isIdentifierByte(bytes[cursor]) else { return nil }
            cursor += 1
        }
        return cursor < bytes.count ? cursor : nil
    }

    private static func endOfDollarQuoted(_ bytes: [UInt8], bodyStart: Int, tag: [UInt8]) -> Int {
        var index = bodyStart
        while index + tag.count <= bytes.count {
            if bytes[index] == UInt8(ascii: "$"), bytes[index..<(index + tag.count)].elementsEqual(tag) {
                return index + tag.count
            }
            index += 1
        }
        return bytes.count
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
