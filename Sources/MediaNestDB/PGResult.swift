import CLibPQ

/// The rows a query returned, decoded from libpq's text format and detached from libpq.
///
/// A result owns plain Swift values only, so it can be returned across threads after the
/// connection's `PGresult` was freed.
public struct PGResult: Sendable, RandomAccessCollection {
    /// Column names in order.
    public let columns: [String]
    /// Column type OIDs in order.
    public let columnTypes: [PGTypeOID]
    /// Row count for `SELECT`, or rows affected for `INSERT`/`UPDATE`/`DELETE`.
    public let affectedRows: Int
    let values: [[String?]]
    let columnIndex: [String: Int]

    init(columns: [String], columnTypes: [PGTypeOID], values: [[String?]], affectedRows: Int) {
        self.columns = columns
        self.columnTypes = columnTypes
        self.values = values
        self.affectedRows = affectedRows
        var index: [String: Int] = [:]
        for (position, name) in columns.enumerated() where index[name] == nil { index[name] = position }
        self.columnIndex = index
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { values.count }
    public subscript(position: Int) -> PGRow { PGRow(result: self, index: position) }

    /// The only row, or `nil` for an empty result.
    /// - Throws: ``DatabaseError`` when there is more than one row.
    public func singleRow() throws(DatabaseError) -> PGRow? {
        guard count <= 1 else { throw DatabaseError(kind: .decoding, message: "expected at most one row, got \(count)") }
        return first
    }
}

/// One row of a ``PGResult``.
public struct PGRow: Sendable {
    let result: PGResult
    let index: Int

    /// Decodes the named column.
    ///
    /// - Parameters:
    ///   - column: The column name as the query spelled it.
    ///   - type: The Swift type; use an optional type for nullable columns.
    /// - Throws: ``DatabaseError`` of kind ``DatabaseError/Kind/decoding`` when the column does not
    ///   exist, is NULL for a non-optional type, has a different PostgreSQL type, or cannot be parsed.
    public func decode<T: PGDecodable>(_ column: String, as type: T.Type = T.self) throws(DatabaseError) -> T {
        guard let position = result.columnIndex[column] else {
            throw DatabaseError(kind: .decoding, message: "no column \"\(column)\" in result (columns: \(result.columns.joined(separator: ", ")))")
        }
        return try decode(at: position, as: type)
    }

    /// Decodes the column at `position`.
    public func decode<T: PGDecodable>(at position: Int, as type: T.Type = T.self) throws(DatabaseError) -> T {
        let name = result.columns[position]
        let oid = result.columnTypes[position]
        guard T.pgAcceptsType(oid) else {
            throw DatabaseError(kind: .decoding, message: "column \"\(name)\" has type \(PGType.name(of: oid)), which cannot be decoded as \(T.pgTypeDescription)")
        }
        guard let text = result.values[index][position] else { return try T.pgDecodeNull(column: name) }
        return try T.pgDecode(text: text, type: oid)
    }

    /// The raw text of a column, `nil` for NULL.
    public func text(_ column: String) -> String? {
        guard let position = result.columnIndex[column] else { return nil }
        return result.values[index][position]
    }
}
