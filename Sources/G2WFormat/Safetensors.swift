import G2WSupport

/// An error in a safetensors file, with the file and what is wrong.
public struct SafetensorsError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public var description: String { "\(path): invalid safetensors file: \(reason)" }
}

/// A safetensors file (https://github.com/huggingface/safetensors), memory-mapped read-only and
/// validated as the reference implementation does before any tensor is touched:
/// the 8-byte little-endian header length is within the file and at most 100 MB; the header is a
/// JSON object; every entry has a known dtype, a shape and `data_offsets` that agree (checked
/// multiplication); the offsets, sorted, are contiguous from 0 with no overlap and no hole; and
/// the data buffer ends exactly at the end of the file.
public final class SafetensorsFile: @unchecked Sendable {
    /// Element types of the safetensors format.
    public enum DType: String, Sendable, CaseIterable {
        case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
        case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"
        case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

        public var size: Int {
            switch self {
            case .f64, .i64, .u64: return 8
            case .f32, .i32, .u32: return 4
            case .f16, .bf16, .i16, .u16: return 2
            case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte range relative to the start of the data buffer.
        public var dataRange: Range<Int>
        /// The number of elements: the product of `shape`, 0 when a dimension is 0. (The reader
        /// accepts a zero-element tensor such as [2^62, 3, 0], as the reference implementation does,
        /// whose other dimensions multiply past Int.max; a nonzero product always fits, since it
        /// equals the checked byte count over the dtype size.)
        public var elementCount: Int { shape.contains(0) ? 0 : shape.reduce(1, *) }
    }

    public static let maxHeaderLength: UInt64 = 100_000_000

    public let path: String
    /// Entries sorted by data offset.
    public let entries: [Entry]
    /// The `__metadata__` map, if present.
    public let metadata: [String: String]
    public let fileSize: Int
    private let mapping: ReadOnlyMapping
    private let dataStart: Int
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        func bad(_ reason: String) -> SafetensorsError { SafetensorsError(path: path, reason: reason) }
        // Names come from the file: escaped and cut short, never printed raw.
        func tensor(_ name: String) -> String { "tensor '\(escapedForDisplay(name, limit: 100))'" }
        func shapeText(_ dims: [Int]) -> String {
            "[" + dims.prefix(8).map(String.init).joined(separator: ", ") + (dims.count > 8 ? ", ... (\(dims.count) dimensions)]" : "]")
        }
        // Never blocks on a FIFO or a device; anything but a regular file is refused, saying what it is.
        let file = try withFormatErrors { try RegularFile(path) }
        let size = Int(file.size)
        guard size >= 8 else { throw bad("file is \(size) bytes, shorter than the 8-byte header length") }
        func read(_ count: Int, at offset: Int) throws -> [UInt8] {
            let bytes = try withFormatErrors { try file.read(count: count, at: offset) }
            guard bytes.count == count else { throw bad("the file ended at byte \(offset + bytes.count) while its header was read") }
            return bytes
        }
        let lenBytes = try read(8, at: 0)
        let n = lenBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= Self.maxHeaderLength else { throw bad("header length \(n) exceeds the 100 MB limit") }
        guard n <= UInt64(size - 8) else { throw bad("header length \(n) runs past the end of the file (\(size) bytes)") }
        guard n >= 2 else { throw bad("header length \(n) is too small for a JSON object") }
        let headerBytes = try read(Int(n), at: 8)
        let json: JSONValue
        do { json = try JSONValue.parse(headerBytes) } catch let e as JSONError {
            throw bad("header is not JSON: \(e.reason) at header byte \(e.offset)")
        }
        guard case let .object(pairs) = json else { throw bad("header is \(json.typeName), not a JSON object") }
        let dataStart = 8 + Int(n)
        let dataLength = size - dataStart
        var entries: [Entry] = []
        var meta: [String: String] = [:]
        for (name, value) in pairs {
            if name == "__metadata__" {
                guard case let .object(m) = value else { throw bad("__metadata__ is \(value.typeName), not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw bad("__metadata__[\(displayQuoted(k, limit: 100))] is \(v.typeName), expected a string") }
                    meta[k] = s
                }
                continue
            }
            guard case .object = value else { throw bad("\(tensor(name)): entry is \(value.typeName), expected an object") }
            guard let dtypeName = value["dtype"]?.string else { throw bad("\(tensor(name)): missing \"dtype\" string") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw bad("\(tensor(name)): unknown dtype \(displayQuoted(dtypeName, limit: 20)) (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard case let .array(dims)? = value["shape"] else { throw bad("\(tensor(name)): missing \"shape\" array") }
            var shape: [Int] = []
            var elements: UInt64 = 1
            for (k, d) in dims.enumerated() {
                guard let v = d.int, v >= 0 else { throw bad("\(tensor(name)): shape entry \(k) is \(d.int.map(String.init) ?? d.double.map { "\($0)" } ?? d.typeName), expected a non-negative integer") }
                shape.append(Int(v))
                let (p, o) = elements.multipliedReportingOverflow(by: UInt64(v))
                guard !o else {
                    throw bad("\(tensor(name)): shape \(shapeText(dims.map { Int($0.int ?? 0) })) has more elements than the limit of 2^64 - 1 (18446744073709551615)")
                }
                elements = p
            }
            guard case let .array(offs)? = value["data_offsets"], offs.count == 2, let b = offs[0].int, let e = offs[1].int, b >= 0, e >= b else {
                throw bad("\(tensor(name)): \"data_offsets\" must be [begin, end] with 0 <= begin <= end")
            }
            let (bytes, o) = elements.multipliedReportingOverflow(by: UInt64(dtype.size))
            guard !o, bytes == UInt64(e - b) else {
                throw bad("\(tensor(name)): data_offsets span \(e - b) bytes but shape \(shapeText(shape)) x \(dtypeName) needs \(o ? "more than 2^64 - 1" : String(bytes))")
            }
            guard e <= Int64(dataLength) else { throw bad("\(tensor(name)): data_offsets end \(e) is past the data buffer (\(dataLength) bytes)") }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, dataRange: Int(b)..<Int(e)))
        }
        entries.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound) < ($1.dataRange.lowerBound, $1.dataRange.upperBound) }
        var expected = 0
        for e in entries {
            if e.dataRange.lowerBound < expected { throw bad("\(tensor(e.name)): data_offsets \(e.dataRange.lowerBound) overlaps the previous tensor (ends at \(expected))") }
            if e.dataRange.lowerBound > expected { throw bad("\(tensor(e.name)): hole of \(e.dataRange.lowerBound - expected) bytes before it (data_offsets \(e.dataRange.lowerBound), expected \(expected))") }
            expected = e.dataRange.upperBound
        }
        guard expected == dataLength else {
            throw bad("\(dataLength - expected) bytes of trailing data after the last tensor (data buffer is \(dataLength) bytes, tensors cover \(expected))")
        }
        self.entries = entries
        metadata = meta
        fileSize = size
        self.dataStart = dataStart
        index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.name, $0) })
        mapping = try withFormatErrors { try file.map() }
    }

    public func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// Tells the kernel the pages of `entry` are no longer needed (they are re-read from the file
    /// if touched again), so reading a large file does not grow the resident set.
    public func release(_ entry: Entry) { release(entry, bytes: 0..<entry.dataRange.count) }

    /// Like ``release(_:)`` for the pages wholly inside `bytes` (relative to the entry's data).
    public func release(_ entry: Entry, bytes: Range<Int>) {
        guard !bytes.isEmpty else { return }
        let start = dataStart + entry.dataRange.lowerBound
        mapping.release((start + bytes.lowerBound)..<(start + bytes.upperBound))
    }

    /// The raw little-endian bytes of `entry` (a view into the mapping).
    public func bytes(of entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mapping.base + dataStart + entry.dataRange.lowerBound, count: entry.dataRange.count)
    }
}
