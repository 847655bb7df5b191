import CG2W

/// Constants of the `.g2w` format, version 1 (spec/g2w.md).
public enum G2WLayout {
    /// `89 47 32 57 0D 0A 1A 0A`: a non-ASCII first byte, "G2W", then CR LF, EOF, LF so text-mode
    /// transfers and truncation to 7 bits are detected (the PNG trick).
    public static let magic: [UInt8] = [0x89, 0x47, 0x32, 0x57, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let versionMajor: UInt16 = 1
    /// The newest minor version this library reads and writes. Files are written with the lowest
    /// minor version their element types need (1.0 unless a tensor is quantized, 1.1).
    public static let versionMinor: UInt16 = 1
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
    /// The most elements a tensor may have (2^60 - 1): byte lengths then stay below 2^63.
    public static let maxElementCount: UInt64 = (1 << 60) - 1
    /// Fixed part of a tensor table entry, before the name bytes.
    static let tensorEntryFixedSize = 56
}

/// The element type of a tensor (spec/g2w.md, "Element types"). Everything the library knows
/// about a type comes from one traits table (``traits``, backed by CG2W's `g2w_type`): block
/// shape, byte lengths and the kernels, so no other code switches over the cases.
public enum G2WDType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    // 2 is reserved for bf16.
    /// 8-bit blocks: 32 int8 quants and one binary16 scale per block (8.5 bits per weight).
    case q8_0 = 3
    /// 4-bit blocks: 32 nibbles (offset 8) and one binary16 scale per block (4.5 bits per weight).
    case q4_0 = 4

    /// The traits table entry of this type (block shape and kernels).
    public var traits: UnsafePointer<g2w_type_traits> { g2w_type(Int32(rawValue))! }

    /// Elements per block (1 for f32 and f16, 32 for the quantized types). The last dimension
    /// of a tensor must be a multiple of it.
    public var blockElements: Int { traits.pointee.block_elements }
    /// Bytes per block, scales included.
    public var blockBytes: Int { traits.pointee.block_bytes }
    /// Bytes per element of the unquantized types (f32: 4, f16: 2). For quantized types, use
    /// ``byteCount(elements:)``.
    public var size: Int {
        precondition(!isQuantized, "\(self) has no per-element size: use byteCount(elements:)")
        return blockBytes
    }
    /// Whether values are stored as blocks of quants with scales.
    public var isQuantized: Bool { blockElements > 1 }
    /// Bits per element, scales included (32, 16, 8.5, 4.5).
    public var bitsPerElement: Double { Double(blockBytes * 8) / Double(blockElements) }

    /// Byte length of `elements` values (a multiple of the block), nil on overflow.
    public func byteCount(elements: UInt64) -> UInt64? {
        let (blocks, rem) = elements.quotientAndRemainder(dividingBy: UInt64(blockElements))
        guard rem == 0 else { return nil }
        return blocks.multiplyingChecked(UInt64(blockBytes))
    }
    /// Byte offset of the scales region in a blob of `elements` values (quantized types).
    public func scalesOffset(elements: Int) -> Int { elements / blockElements * traits.pointee.quant_bytes }

    public var description: String { String(cString: traits.pointee.name) }

    /// Parses a type name ("f32", "float16", "q8_0", ...).
    public init?(name: String) {
        switch name.lowercased() {
        case "float32": self = .f32
        case "float16": self = .f16
        default:
            guard let t = Self.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
            self = t
        }
    }

    /// The file format's minor version that introduced this type (1.0 readers reject 1.1 types).
    public var minimumMinorVersion: UInt16 { isQuantized ? 1 : 0 }
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
