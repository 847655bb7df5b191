import G2WSupport

/// A typed metadata value (spec/g2w.md, "Metadata").
public enum G2WMetadataValue: Sendable, Equatable, CustomStringConvertible {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case bytes([UInt8])
    case stringArray(G2WStringArray)
    /// A value of a type code this reader does not know, kept as raw bytes.
    case unknown(type: UInt16, bytes: [UInt8])

    /// The type code stored in the file.
    public var typeCode: UInt16 {
        switch self {
        case .uint: return 1
        case .int: return 2
        case .float: return 3
        case .bool: return 4
        case .string: return 5
        case .bytes: return 6
        case .stringArray: return 7
        case let .unknown(type, _): return type
        }
    }

    public var typeName: String {
        switch self {
        case .uint: return "u64"
        case .int: return "i64"
        case .float: return "f64"
        case .bool: return "bool"
        case .string: return "string"
        case .bytes: return "bytes"
        case .stringArray: return "string[]"
        case let .unknown(type, _): return "type \(type)"
        }
    }

    public var description: String {
        switch self {
        case let .uint(v): return String(v)
        case let .int(v): return String(v)
        case let .float(v): return String(v)
        case let .bool(v): return String(v)
        case let .string(s): return displayQuoted(s, limit: 200)
        case let .bytes(b): return "<\(b.count) bytes>"
        case let .stringArray(a): return "<\(a.count) strings>"
        case let .unknown(_, b): return "<\(b.count) bytes of unknown type>"
        }
    }

    public var uintValue: UInt64? { if case let .uint(v) = self { return v } else { return nil } }

    /// The value as a count or size: a `u64` of at most `limit`. Throws an error saying what is
    /// wrong in words, for a message that names the key: "expected u64, found string", or
    /// "is 18446744073709551615, over the limit of 9223372036854775807".
    public func count(limit: Int = .max) throws -> Int {
        guard case let .uint(v) = self else { throw G2WMetadataValueError("expected u64, found \(typeName)") }
        guard v <= UInt64(limit) else { throw G2WMetadataValueError("is \(v), over the limit of \(limit)") }
        return Int(v)
    }
    public var floatValue: Double? { if case let .float(v) = self { return v } else { return nil } }
    public var stringValue: String? { if case let .string(v) = self { return v } else { return nil } }
    public var stringArrayValue: G2WStringArray? { if case let .stringArray(v) = self { return v } else { return nil } }
}

/// Why a metadata value is not what a reader needs (see ``G2WMetadataValue/count(limit:)``).
public struct G2WMetadataValueError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Ordered, uniquely keyed metadata.
public struct G2WMetadata: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var entries: [(key: String, value: G2WMetadataValue)] = []
    private var index: [String: Int] = [:]

    public init() {}

    public init(_ pairs: KeyValuePairs<String, G2WMetadataValue>) {
        for (k, v) in pairs { self[k] = v }
    }

    public init(dictionaryLiteral elements: (String, G2WMetadataValue)...) {
        for (k, v) in elements { self[k] = v }
    }

    public var count: Int { entries.count }

    /// Gets or sets a value; setting an existing key replaces it in place.
    public subscript(key: String) -> G2WMetadataValue? {
        get { index[key].map { entries[$0].value } }
        set {
            if let i = index[key] {
                if let v = newValue { entries[i].value = v } else {
                    entries.remove(at: i)
                    index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.key, $0) })
                }
            } else if let v = newValue {
                index[key] = entries.count
                entries.append((key, v))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: G2WMetadataValue)]> {
        entries.makeIterator()
    }

    public static func == (a: G2WMetadata, b: G2WMetadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// Whether `key` is a valid metadata key: 1...255 bytes of `[A-Za-z0-9._-]`.
    public static func isValidKey(_ key: String) -> Bool {
        let u = Array(key.utf8)
        return !u.isEmpty && u.count <= G2WLayout.maxNameLength && u.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
        }
    }
}

/// The value of a `string[]` metadata entry: strings stored as one UTF-8 buffer.
///
/// Opening a file validates every element (UTF-8, lengths) but creates no `String`: a tokenizer's
/// 100,000 strings cost one copy of their bytes. Elements are decoded when accessed, and
/// ``utf8(at:)`` gives an element's bytes without decoding. Two arrays are equal when their
/// elements are byte for byte equal.
public struct G2WStringArray: RandomAccessCollection, Sendable, Equatable, ExpressibleByArrayLiteral {
    /// The elements' UTF-8 bytes, concatenated.
    public let utf8: [UInt8]
    /// `ends[i]` is where element `i` ends in ``utf8`` (element `i` starts where `i - 1` ends).
    public let ends: [Int]

    /// An array holding `strings`.
    public init<S: Sequence>(_ strings: S) where S.Element == String {
        var bytes: [UInt8] = [], ends: [Int] = []
        for s in strings {
            bytes.append(contentsOf: s.utf8)
            ends.append(bytes.count)
        }
        utf8 = bytes
        self.ends = ends
    }

    public init(arrayLiteral elements: String...) { self.init(elements) }

    /// Elements already checked to be valid UTF-8 (by the reader).
    init(validatedUTF8 bytes: [UInt8], ends: [Int]) {
        utf8 = bytes
        self.ends = ends
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { ends.count }

    /// The UTF-8 bytes of element `i`.
    public func utf8(at i: Int) -> ArraySlice<UInt8> { utf8[(i == 0 ? 0 : ends[i - 1])..<ends[i]] }

    /// Element `i`, decoded.
    public subscript(i: Int) -> String { String(decoding: utf8(at: i), as: UTF8.self) }

    /// The elements' bytes in order, without decoding.
    public var utf8Elements: LazyMapSequence<Range<Int>, ArraySlice<UInt8>> { (0..<count).lazy.map { utf8(at: $0) } }
}
