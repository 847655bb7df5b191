import G2WSupport

/// A JSON value, as the converter reads small documents (safetensors headers, `config.json`,
/// sharded-checkpoint indexes): exact integers, byte offsets in every error, a nesting limit, no
/// duplicate keys. ``parse(_:)`` uses the package's one JSON parser (the tokenizer files use it too).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number: its exact integer value when the literal is an integer that fits Int64, and its
    /// Double value.
    case number(Double, integer: Int64?)
    case string(String)
    case array([JSONValue])
    /// Keys in document order.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x, i), .number(y, j)): return x == y && i == j
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case let .object(pairs) = self { return pairs.first(where: { $0.0 == key })?.1 }
        return nil
    }

    public var int: Int64? { if case let .number(_, i) = self { return i } else { return nil } }
    public var double: Double? { if case let .number(d, _) = self { return d } else { return nil } }
    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The nesting limit of `parse`: config.json and safetensors headers are flat.
    public static let maxDepth = 64

    /// Parses a complete document (surrounding white space allowed, nothing else), with the
    /// package's one JSON parser: strict RFC 8259, at most ``maxDepth`` arrays and objects nested,
    /// no byte order mark, and no key twice in one object.
    /// - Throws: ``JSONError`` with the byte offset of the problem.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            let doc: JSONDocument
            do { doc = try JSONDocument(buffer, maxDepth: maxDepth, allowByteOrderMark: false) } catch let e as JSONSyntaxError {
                throw JSONError(offset: e.offset, reason: e.reason)
            }
            return try value(doc.root, doc)
        }
    }

    private static func value(_ node: JSONNode, _ doc: JSONDocument) throws -> JSONValue {
        switch node {
        case .null: return .null
        case let .bool(b): return .bool(b)
        case let .number(n): return .number(doc.double(n), integer: n.integer.map(Int64.init))
        case let .string(s): return .string(doc.string(s))
        case let .array(items): return .array(try items.map { try value($0, doc) })
        case let .object(members):
            var pairs: [(String, JSONValue)] = []
            pairs.reserveCapacity(members.count)
            var seen = Set<String>()
            for m in members {
                let key = doc.string(m.key)
                guard seen.insert(key).inserted else {
                    throw JSONError(offset: m.key.start - 1, reason: "duplicate key \(displayQuoted(key, limit: 80))")
                }
                pairs.append((key, try value(m.value, doc)))
            }
            return .object(pairs)
        }
    }
}

/// A JSON syntax error at a byte offset of the document.
public struct JSONError: Error, CustomStringConvertible, Equatable {
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}
