// How the SQLite store reads a row's hashed values (``AuditChain``) from a statement.

extension AuditChain {
    /// The hashed values of the row a statement stands on (selected as ``selection``, or as
    /// ``columns`` alone when `laterColumns` is false), as stored.
    static func values(of row: SQLiteStatement, laterColumns: Bool = true) -> [Value] {
        func value(_ column: Int32) -> Value {
            if row.isNull(column) { return .null }
            if row.isInteger(column) { return .integer(row.int(column)) }
            return .text(row.string(column))
        }
        var values = (0..<Int32(columns.count)).map(value)
        if laterColumns {
            for column in Int32(columns.count)..<Int32(columns.count + Self.laterColumns.count) where !row.isNull(column) {
                values.append(value(column))
            }
        }
        return values
    }
}
