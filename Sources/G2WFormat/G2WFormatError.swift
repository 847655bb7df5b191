import G2WSupport

/// An error found while reading or writing a `.g2w` file.
///
/// Every case says what is wrong and where: the section of the file, the tensor or metadata key,
/// and the byte offset when there is one.
public enum G2WFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed (`operation` on `path`), with the `errno` text.
    case io(operation: String, path: String, reason: String)
    /// The file is shorter than its header or tables say (`needed` bytes, `actual` present).
    case truncated(section: String, needed: UInt64, actual: UInt64)
    /// The first eight bytes are not the `.g2w` magic.
    case badMagic([UInt8])
    /// The file was written with a major version this reader does not know.
    case unsupportedVersion(major: UInt16, minor: UInt16)
    /// The byte-order mark does not read as 0x01020304 in little-endian order.
    case wrongByteOrder(found: UInt32)
    /// The header region's CRC-32C does not match: the header, metadata or tensor table is corrupt.
    case headerChecksumMismatch(stored: UInt32, computed: UInt32)
    /// A field holds a value the format does not allow.
    case invalidField(section: String, field: String, offset: UInt64, reason: String)
    /// A limit of the format (spec/g2w.md, "Limits") is exceeded.
    case limitExceeded(section: String, what: String, value: UInt64, limit: UInt64)
    /// A tensor's blob disagrees with the table or the layout rules.
    case invalidTensor(name: String, index: Int, reason: String)
    /// Two metadata entries or two tensors share a name.
    case duplicateName(section: String, name: String)
    /// A tensor's blob does not match its stored CRC-32C.
    case tensorChecksumMismatch(name: String, offset: UInt64, stored: UInt32, computed: UInt32)
    /// Padding between blobs is not zero.
    case nonZeroPadding(offset: UInt64)
    /// A writer was used out of order (too many or too few bytes for a tensor, finish twice, ...).
    case writerMisuse(String)
    /// The output exists and overwriting was not requested.
    case outputExists(path: String)

    public var description: String {
        switch self {
        case let .io(op, path, reason): return "\(path): \(op) failed: \(reason)"
        case let .truncated(section, needed, actual):
            return "truncated file: the \(section) needs \(needed) bytes but the file has \(actual)"
        case let .badMagic(bytes):
            let hex = bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ")
            return "not a .g2w file: the first bytes are \(hex), expected 89 47 32 57 0d 0a 1a 0a"
        case let .unsupportedVersion(major, minor):
            return "unsupported .g2w version \(major).\(minor): this reader handles major version \(G2WLayout.versionMajor)"
        case let .wrongByteOrder(found):
            let hex = "0x" + String(found, radix: 16).leftPadded(8)
            if found == 0x0403_0201 { return "wrong byte order: the file is byte-swapped (byte-order mark reads \(hex), expected 0x01020304); .g2w is little-endian" }
            return "wrong byte order: the byte-order mark reads \(hex), expected 0x01020304 (little-endian)"
        case let .headerChecksumMismatch(stored, computed):
            return "header region corrupt: CRC-32C is 0x\(String(computed, radix: 16)), the header says 0x\(String(stored, radix: 16))"
        case let .invalidField(section, field, offset, reason):
            return "\(section): \(field) at byte \(offset): \(reason)"
        case let .limitExceeded(section, what, value, limit):
            return "\(section): \(what) is \(value), over the limit of \(limit)"
        case let .invalidTensor(name, index, reason):
            return index < 0 ? "tensor '\(escapedForDisplay(name))': \(reason)" : "tensor #\(index) '\(escapedForDisplay(name))': \(reason)"
        case let .duplicateName(section, name):
            return "\(section): duplicate name '\(escapedForDisplay(name))'"
        case let .tensorChecksumMismatch(name, offset, stored, computed):
            return "tensor '\(escapedForDisplay(name))' (blob at byte \(offset)) is corrupt: CRC-32C 0x\(String(computed, radix: 16)), table says 0x\(String(stored, radix: 16))"
        case let .nonZeroPadding(offset):
            return "padding: non-zero byte at offset \(offset) (padding must be zero)"
        case let .writerMisuse(message): return "writer: \(message)"
        case let .outputExists(path): return "\(path) already exists"
        }
    }
}

/// A name or string from a file, safe to print: control characters, backslashes and Unicode
/// format characters (such as U+202E RIGHT-TO-LEFT OVERRIDE) escaped. With `limit`, at most that
/// many characters are shown, then `...` and the length in bytes.
public func escapedForDisplay(_ s: String, limit: Int? = nil) -> String { displayEscaped(s, limit: limit) }
