/// Constants of the `.g2w` format, version 1 (spec/g2w.md).
public enum G2WLayout {
    /// `89 47 32 57 0D 0A 1A 0A`: a non-ASCII first byte, "G2W", then CR LF, EOF, LF so text-mode
    /// transfers and truncation to 7 bits are detected (the PNG trick).
    public static let magic: [UInt8] = [0x89, 0x47, 0x32, 0x57, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let versionMajor: UInt16 = 1
    public static let versionMinor: UInt16 = 0
    /// Written as a little-endian u32: bytes `04 03 02 01`.
    public static let byteOrderMark: UInt32 = 0x0102_0304
    /// Every blob starts at a multiple of this many bytes (a cache line, and enough for AVX-512).
    public static let alignment: UInt64 = 64
    /// Size of the fixed header of version 1.0.
    public static let headerSize: UInt64 = 128
    /// Offset of the header CRC-32C field inside the header.
    static let headerCRCOffset = 96

    // Limits (spec/g2w.md, "Limits").
    /// The header region (header, metadata, tensor table) is read into memory at open; this bounds
    /// what a hostile file can make a reader allocate.
    public static let maxHeaderRegion: UInt64 = 256 << 20
    /// GPT-2 XL has 580 tensors; this leaves room for any GPT-2-like model while bounding work.
    public static let maxTensorCount: UInt64 = 65_536
    public static let maxMetadataCount: UInt64 = 65_536
    /// Names and keys are short identifiers; 255 bytes fits any real checkpoint key.
    public static let maxNameLength = 255
    public static let maxRank = 4
    /// Fixed part of a tensor table entry, before the name bytes.
    static let tensorEntryFixedSize = 56
}

/// The element type of a tensor.
public enum G2WDType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    // 2 is reserved for bf16, 3...255 for future (quantized) types.

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f32: return 4
        case .f16: return 2
        }
    }

    public var description: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        }
    }

    /// Parses "f32" / "f16".
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32": self = .f32
        case "f16", "float16": self = .f16
        default: return nil
        }
    }
}

/// What the tensor table says about one tensor.
public struct G2WTensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: G2WDType
    /// Dimensions, outermost first (row-major: the last dimension is contiguous).
    public var shape: [Int]
    /// Absolute byte offset of the blob in the file (a multiple of 64).
    public var offset: UInt64
    /// Length of the blob in bytes (element count x dtype size).
    public var byteCount: UInt64
    /// CRC-32C of the blob.
    public var checksum: UInt32

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A tensor to be written: its name, element type and shape.
public struct G2WTensorDescriptor: Sendable, Equatable {
    public var name: String
    public var dtype: G2WDType
    public var shape: [Int]

    public init(name: String, dtype: G2WDType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}
