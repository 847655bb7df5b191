/// GPT-2's reversible map between the 256 byte values and 256 printable Unicode characters
/// (`bytes_to_unicode` in OpenAI's encoder.py). Printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 and up, in byte order (so the space 0x20 becomes "Ġ", U+0120).
public enum ByteLevel {
    /// The character (scalar value) standing for each byte, indexed by byte.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte for each scalar value below `scalarLimit`, or -1 when the scalar stands for no byte.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: Int(scalarLimit))
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// One past the largest scalar value used by the alphabet (U+0143).
    static let scalarLimit: UInt32 = 0x144

    /// The byte-level string for raw bytes, e.g. `[0x20, 0x74]` -> `"Ġt"`.
    public static func string(forBytes bytes: some Sequence<UInt8>) -> String {
        if let s = bytes.withContiguousStorageIfAvailable({ string(forRaw: $0) }) { return s }
        return Array(bytes).withUnsafeBufferPointer { string(forRaw: $0) }
    }

    static func string(forRaw bytes: UnsafeBufferPointer<UInt8>) -> String {
        if bytes.isEmpty { return "" }
        let table = byteToScalar
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            var k = 0
            for b in bytes {
                let s = table[Int(b)]
                if s < 0x80 {
                    out[k] = UInt8(s)
                    k += 1
                } else {
                    out[k] = UInt8(0xC0 | s >> 6)
                    out[k + 1] = UInt8(0x80 | s & 0x3F)
                    k += 2
                }
            }
            return k
        }
    }

    /// The raw bytes of a byte-level string, or nil if it contains a character outside the alphabet.
    public static func bytes(forString string: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        for scalar in string.unicodeScalars {
            guard scalar.value < scalarLimit else { return nil }
            let b = scalarToByte[Int(scalar.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}

extension ByteLevel {
    /// Appends the raw bytes of the byte-level string whose UTF-8 is `p[0..<count]`.
    /// Returns nil on success, or the first scalar value outside the alphabet (nothing appended
    /// for it). The input must be valid UTF-8.
    @inline(__always)
    static func appendRawBytes(utf8 p: UnsafePointer<UInt8>, count: Int, to out: inout [UInt8],
                               table: UnsafePointer<Int16>) -> UInt32? {
        var i = 0
        while i < count {
            let b0 = p[i]
            var scalar: UInt32
            var length: Int
            if b0 < 0x80 {
                scalar = UInt32(b0); length = 1
            } else if b0 < 0xE0 {
                scalar = (UInt32(b0 & 0x1F) << 6) | UInt32(p[i + 1] & 0x3F); length = 2
            } else if b0 < 0xF0 {
                scalar = (UInt32(b0 & 0x0F) << 12) | (UInt32(p[i + 1] & 0x3F) << 6) | UInt32(p[i + 2] & 0x3F); length = 3
            } else {
                scalar = (UInt32(b0 & 0x07) << 18) | (UInt32(p[i + 1] & 0x3F) << 12)
                    | (UInt32(p[i + 2] & 0x3F) << 6) | UInt32(p[i + 3] & 0x3F); length = 4
            }
            let b = scalar < scalarLimit ? table[Int(scalar)] : -1
            if b < 0 { return scalar }
            out.append(UInt8(truncatingIfNeeded: b))
            i += length
        }
        return nil
    }
}

/// Byte strings stored back to back: entry i is `bytes[ends[i-1]..<ends[i]]` (`ends[-1]` = 0).
struct ByteRanges {
    var bytes: [UInt8] = []
    var ends: [Int] = []

    var count: Int { ends.count }

    @inline(__always) func start(_ i: Int) -> Int { i == 0 ? 0 : ends[i - 1] }

    func entry(_ i: Int) -> ArraySlice<UInt8> { bytes[start(i)..<ends[i]] }

    /// The byte-level string of entry i (for messages and accessors).
    func string(_ i: Int) -> String { ByteLevel.string(forBytes: entry(i)) }

    mutating func finishEntry() { ends.append(bytes.count) }
}
