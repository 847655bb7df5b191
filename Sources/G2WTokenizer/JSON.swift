/// A minimal, strict JSON reader (RFC 8259) over UTF-8 bytes, keeping object members in file order
/// (duplicates included) with their byte offsets, so errors can name a line and column.
enum JSONValue {
    case object([JSONMember])
    case array([JSONValue])
    case string(String)
    case integer(Int)
    case double(Double)
    case bool(Bool)
    case null

    var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .integer, .double: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    /// The first member named `key` of an object.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }
}

struct JSONMember {
    let key: String
    let value: JSONValue
    /// Byte offset of the key in the file.
    let offset: Int
}

struct JSONReader {
    struct Failure: Error {
        let offset: Int
        let reason: String
    }

    private let p: UnsafeBufferPointer<UInt8>
    private var i = 0
    private var depth = 0

    /// Parses a whole document; throws `TokenizerError.invalidJSON` naming `source`.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, source: String) throws -> JSONValue {
        var reader = JSONReader(p: bytes)
        do {
            // Skip a UTF-8 byte order mark.
            if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { reader.i = 3 }
            reader.skipWhitespace()
            let value = try reader.parseValue()
            reader.skipWhitespace()
            if reader.i != bytes.count { throw Failure(offset: reader.i, reason: "unexpected data after the JSON value") }
            return value
        } catch let failure as Failure {
            let (line, column) = lineAndColumn(bytes, failure.offset)
            throw TokenizerError.invalidJSON(source: source, line: line, column: column, reason: failure.reason)
        }
    }

    /// 1-based line and column (in bytes) of a byte offset.
    static func lineAndColumn(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: Int) -> (Int, Int) {
        var line = 1
        var lineStart = 0
        for k in 0..<min(offset, bytes.count) where bytes[k] == 0x0A {
            line += 1
            lineStart = k + 1
        }
        return (line, offset - lineStart + 1)
    }

    private init(p: UnsafeBufferPointer<UInt8>) { self.p = p }

    private mutating func skipWhitespace() {
        while i < p.count {
            let b = p[i]
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { i += 1 } else { break }
        }
    }

    private func describe(_ offset: Int) -> String {
        guard offset < p.count else { return "unexpected end of file" }
        let b = p[offset]
        if b >= 0x20 && b < 0x7F { return "unexpected character '\(Character(Unicode.Scalar(b)))'" }
        return "unexpected byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    private mutating func parseValue() throws -> JSONValue {
        guard i < p.count else { throw Failure(offset: i, reason: "unexpected end of file, expected a value") }
        switch p[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw Failure(offset: i, reason: describe(i) + ", expected a value")
        }
    }

    private mutating func expectWord(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        guard i + n <= p.count, (0..<n).allSatisfy({ p[i + $0] == w[$0] }) else {
            throw Failure(offset: i, reason: describe(i) + ", expected a value")
        }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > 512 { throw Failure(offset: i, reason: "nesting deeper than 512 levels") }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var members: [JSONMember] = []
        skipWhitespace()
        if i < p.count && p[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard i < p.count, p[i] == UInt8(ascii: "\"") else {
                throw Failure(offset: i, reason: describe(i) + ", expected a string key")
            }
            let keyOffset = i
            let key = try parseString()
            skipWhitespace()
            guard i < p.count, p[i] == UInt8(ascii: ":") else {
                throw Failure(offset: i, reason: describe(i) + ", expected ':'")
            }
            i += 1
            skipWhitespace()
            let value = try parseValue()
            members.append(JSONMember(key: key, value: value, offset: keyOffset))
            skipWhitespace()
            guard i < p.count else { throw Failure(offset: i, reason: "unexpected end of file, expected ',' or '}'") }
            if p[i] == UInt8(ascii: ",") { i += 1; continue }
            if p[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw Failure(offset: i, reason: describe(i) + ", expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if i < p.count && p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard i < p.count else { throw Failure(offset: i, reason: "unexpected end of file, expected ',' or ']'") }
            if p[i] == UInt8(ascii: ",") { i += 1; continue }
            if p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw Failure(offset: i, reason: describe(i) + ", expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = i
        var isInteger = true
        if p[i] == UInt8(ascii: "-") { i += 1 }
        func digits(_ reader: inout JSONReader) -> Int {
            let s = reader.i
            while reader.i < reader.p.count, reader.p[reader.i] >= 0x30, reader.p[reader.i] <= 0x39 { reader.i += 1 }
            return reader.i - s
        }
        guard i < p.count, p[i] >= 0x30, p[i] <= 0x39 else { throw Failure(offset: i, reason: describe(i) + " in a number") }
        if p[i] == 0x30 { i += 1 } else { _ = digits(&self) }
        if i < p.count && p[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            if digits(&self) == 0 { throw Failure(offset: i, reason: describe(i) + " in a number") }
        }
        if i < p.count && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            if i < p.count && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { i += 1 }
            if digits(&self) == 0 { throw Failure(offset: i, reason: describe(i) + " in a number") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: p[start..<i]), as: UTF8.self)
        if isInteger, let value = Int(text) { return .integer(value) }
        guard let value = Double(text) else { throw Failure(offset: start, reason: "number out of range") }
        return .double(value)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= p.count else { throw Failure(offset: i, reason: "truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = p[i]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw Failure(offset: i, reason: describe(i) + " in a \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func parseString() throws -> String {
        let open = i
        i += 1
        let start = i
        // Fast path: no escapes.
        while i < p.count {
            let b = p[i]
            if b == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: p[start..<i])
                i += 1
                guard let s = String(validating: slice, as: UTF8.self) else {
                    throw Failure(offset: start, reason: "string is not valid UTF-8")
                }
                return s
            }
            if b == UInt8(ascii: "\\") || b < 0x20 { break }
            i += 1
        }
        var bytes = Array(UnsafeBufferPointer(rebasing: p[start..<i]))
        while true {
            guard i < p.count else { throw Failure(offset: open, reason: "unterminated string") }
            let b = p[i]
            if b == UInt8(ascii: "\"") { i += 1; break }
            if b < 0x20 { throw Failure(offset: i, reason: "unescaped control character 0x\(String(b, radix: 16, uppercase: true)) in a string") }
            if b != UInt8(ascii: "\\") { bytes.append(b); i += 1; continue }
            i += 1
            guard i < p.count else { throw Failure(offset: open, reason: "unterminated string") }
            let e = p[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                let escapeOffset = i - 2
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00 {
                    guard i + 6 <= p.count, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") else {
                        throw Failure(offset: escapeOffset, reason: "lone surrogate \\u\(String(v, radix: 16, uppercase: true)) in a string")
                    }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw Failure(offset: escapeOffset, reason: "lone surrogate \\u\(String(v, radix: 16, uppercase: true)) in a string")
                    }
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                } else if v >= 0xDC00 && v < 0xE000 {
                    throw Failure(offset: escapeOffset, reason: "lone surrogate \\u\(String(v, radix: 16, uppercase: true)) in a string")
                }
                bytes.append(contentsOf: Array(String(Unicode.Scalar(v)!).utf8))
            default:
                throw Failure(offset: i - 2, reason: "invalid escape '\\\(Character(Unicode.Scalar(e)))' in a string")
            }
        }
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw Failure(offset: start, reason: "string is not valid UTF-8")
        }
        return s
    }
}
