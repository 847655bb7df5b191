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
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
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
