/// A bounds-checked little-endian cursor over bytes read from a file.
///
/// Every read checks the remaining length first and throws `truncated`/`invalidField` naming the
/// section and the absolute file offset, so parsing code never reads out of bounds.
struct ByteReader {
    let bytes: [UInt8]
    /// Absolute file offset of `bytes[0]`.
    let base: UInt64
    let section: String
    private(set) var position: Int
    let end: Int

    init(_ bytes: [UInt8], range: Range<Int>, base: UInt64 = 0, section: String) {
        self.bytes = bytes
        self.base = base
        self.section = section
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    var remaining: Int { end - position }
    var fileOffset: UInt64 { base + UInt64(position) }

    mutating func need(_ n: Int, _ field: String) throws {
        guard n >= 0, n <= remaining else {
            throw G2WFormatError.invalidField(section: section, field: field, offset: fileOffset,
                                reason: "needs \(n) bytes but only \(remaining) remain in the section")
        }
    }

    mutating func u8(_ field: String) throws -> UInt8 {
        try need(1, field)
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16(_ field: String) throws -> UInt16 {
        try need(2, field)
        defer { position += 2 }
        return UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
    }

    mutating func u32(_ field: String) throws -> UInt32 { try littleEndian(field) }

    mutating func u64(_ field: String) throws -> UInt64 { try littleEndian(field) }

    private mutating func littleEndian<T: FixedWidthInteger & UnsignedInteger>(_ field: String) throws -> T {
        let n = MemoryLayout<T>.size
        try need(n, field)
        var v: T = 0
        for i in 0..<n { v |= T(bytes[position + i]) << (8 * i) }
        position += n
        return v
    }

    mutating func take(_ n: Int, _ field: String) throws -> ArraySlice<UInt8> {
        try need(n, field)
        defer { position += n }
        return bytes[position..<(position + n)]
    }
}

/// Appends little-endian values to a byte array.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { for i in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt16(i)))) } }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func append<S: Sequence>(_ s: S) where S.Element == UInt8 { bytes.append(contentsOf: s) }
    mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
}

/// Rounds `value` up to a multiple of `alignment` (a power of two), or nil on overflow.
@inline(__always)
func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64? {
    let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
    return overflow ? nil : sum & ~(alignment - 1)
}
