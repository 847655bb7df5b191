import CG2W

// The one JSON parser of the package (RFC 8259, strict), used for config.json, safetensors
// headers and index files (G2WFormat's `JSONValue`) and for tokenizer files (G2WTokenizer).
// Strings stay unresolved byte ranges of the input until asked for, so a 50,000-entry vocabulary
// costs no `String` per key; object members keep document order and duplicates (each reader
// decides what a duplicate means); every error has the byte offset where it was found.

/// A parsed document over borrowed bytes: its values are only meaningful with it, and it is only
/// valid while the bytes are.
package struct JSONDocument {
    package let bytes: UnsafeBufferPointer<UInt8>
    package let root: JSONNode

    /// Parses `bytes` as one JSON value (white space around it allowed).
    /// - Parameters:
    ///   - maxDepth: the most arrays and objects nested in one another.
    ///   - allowByteOrderMark: whether a leading UTF-8 byte order mark is skipped (RFC 8259 lets a
    ///     parser ignore it) or is an error.
    /// - Throws: `JSONSyntaxError` with the offset of the first bad byte.
    package init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = 512, allowByteOrderMark: Bool = true) throws {
        self.bytes = bytes
        if let bad = firstInvalidUTF8(bytes) { throw JSONSyntaxError(offset: bad, reason: "invalid UTF-8") }
        var reader = JSONReader(p: bytes, maxDepth: maxDepth)
        if allowByteOrderMark && bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { reader.i = 3 }
        reader.skipWhitespace()
        let value = try reader.parseValue()
        reader.skipWhitespace()
        if reader.i != bytes.count { throw JSONSyntaxError(offset: reader.i, reason: "unexpected data after the JSON value") }
        root = value
    }

    /// 1-based line and column (in bytes) of a byte offset.
    package static func lineAndColumn(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: Int) -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        for k in 0..<min(offset, bytes.count) where bytes[k] == 0x0A {
            line += 1
            lineStart = k + 1
        }
        return (line, offset - lineStart + 1)
    }

    /// "line L, column C" of a string literal (its opening quote).
    package func position(_ s: JSONString) -> String {
        let (line, column) = JSONDocument.lineAndColumn(bytes, s.start - 1)
        return "line \(line), column \(column)"
    }

    /// Appends the UTF-8 of a string's value (escapes resolved; the parser validated them).
    package func appendUTF8(_ s: JSONString, to out: inout [UInt8]) {
        if !s.escaped {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[s.start..<s.end]))
            return
        }
        var i = s.start
        func hex4(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in at..<(at + 4) {
                let b = bytes[k]
                v = v << 4 | UInt32(b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x61 + 10)
            }
            return v
        }
        while i < s.end {
            let b = bytes[i]
            if b != 0x5C { out.append(b); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var v = hex4(i)
                i += 4
                if v >= 0xD800 && v < 0xDC00 {
                    v = 0x10000 + ((v - 0xD800) << 10) + (hex4(i + 2) - 0xDC00)
                    i += 6
                }
                if v < 0x80 {
                    out.append(UInt8(v))
                } else if v < 0x800 {
                    out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
                } else if v < 0x10000 {
                    out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
                } else {
                    out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | v >> 12 & 0x3F))
                    out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
                }
            default: out.append(e)  // " \ /
            }
        }
    }

    /// A string's value.
    package func string(_ s: JSONString) -> String {
        var utf8: [UInt8] = []
        appendUTF8(s, to: &utf8)
        return String(decoding: utf8, as: UTF8.self)
    }

    /// A number's value as a Double (the nearest; out of range: an infinity).
    package func double(_ n: JSONNumber) -> Double {
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[n.start..<n.end]), as: UTF8.self)
        return Double(text) ?? (bytes[n.start] == UInt8(ascii: "-") ? -.infinity : .infinity)
    }

    /// The first member of an object named `key`.
    package func member(_ value: JSONNode?, _ key: String) -> JSONNode? {
        guard case .object(let members)? = value else { return nil }
        let want = Array(key.utf8)
        var scratch: [UInt8] = []
        for m in members {
            scratch.removeAll(keepingCapacity: true)
            appendUTF8(m.key, to: &scratch)
            if scratch == want { return m.value }
        }
        return nil
    }

    /// Whether `value` is the string `expected`.
    package func isString(_ value: JSONNode?, _ expected: String) -> Bool {
        guard case .string(let s)? = value else { return false }
        return string(s) == expected
    }
}

/// A JSON value of a `JSONDocument`.
package indirect enum JSONNode {
    case object([JSONMember])
    case array([JSONNode])
    case string(JSONString)
    case number(JSONNumber)
    case bool(Bool)
    case null

    /// The value of an integer literal (no fraction, no exponent) that fits `Int`, else nil.
    package var integer: Int? { if case .number(let n) = self { return n.integer } else { return nil } }

    /// "an object", "a number", ...: for messages.
    package var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// The content of a string literal: input bytes `start..<end` (between the quotes).
package struct JSONString {
    package let start: Int
    package let end: Int
    /// Whether the content contains backslash escapes.
    package let escaped: Bool
}

/// A number literal: input bytes `start..<end`.
package struct JSONNumber {
    package let start: Int
    package let end: Int
    /// The exact value of an integer literal that fits `Int`; nil for a fraction, an exponent or
    /// a larger integer (see `JSONDocument.double`).
    package let integer: Int?
}

package struct JSONMember {
    package let key: JSONString
    package let value: JSONNode
}

/// A syntax error: what was wrong, at a byte offset of the input (at most its length).
package struct JSONSyntaxError: Error {
    package let offset: Int
    package let reason: String
}

private struct JSONReader {
    let p: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var i = 0
    private var depth = 0

    init(p: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.p = p
        self.maxDepth = maxDepth
    }

    mutating func skipWhitespace() {
        while i < p.count {
            let b = p[i]
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { i += 1 } else { break }
        }
    }

    private func fail(_ offset: Int, _ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: offset, reason: reason) }

    private func describe(_ offset: Int) -> String {
        guard offset < p.count else { return "unexpected end of input" }
        let b = p[offset]
        if b >= 0x20 && b < 0x7F { return "unexpected character '\(Character(Unicode.Scalar(b)))'" }
        return "unexpected byte 0x\(String(b, radix: 16, uppercase: true))"
    }

    mutating func parseValue() throws -> JSONNode {
        guard i < p.count else { throw fail(i, "unexpected end of input, expected a value") }
        switch p[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail(i, describe(i) + ", expected a value")
        }
    }

    private mutating func expectWord(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        guard i + n <= p.count, (0..<n).allSatisfy({ p[i + $0] == w[$0] }) else {
            throw fail(i, describe(i) + ", expected a value")
        }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > maxDepth { throw fail(i, "arrays and objects nested deeper than \(maxDepth) levels") }
    }

    private mutating func parseObject() throws -> JSONNode {
        try enter()
        defer { depth -= 1 }
        i += 1
        var members: [JSONMember] = []
        skipWhitespace()
        if i < p.count && p[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard i < p.count, p[i] == UInt8(ascii: "\"") else { throw fail(i, describe(i) + ", expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard i < p.count, p[i] == UInt8(ascii: ":") else { throw fail(i, describe(i) + ", expected ':'") }
            i += 1
            skipWhitespace()
            let value = try parseValue()
            members.append(JSONMember(key: key, value: value))
            skipWhitespace()
            guard i < p.count else { throw fail(i, "unexpected end of input, expected ',' or '}'") }
            if p[i] == UInt8(ascii: ",") { i += 1; continue }
            if p[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw fail(i, describe(i) + ", expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONNode {
        try enter()
        defer { depth -= 1 }
        i += 1
        var items: [JSONNode] = []
        skipWhitespace()
        if i < p.count && p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard i < p.count else { throw fail(i, "unexpected end of input, expected ',' or ']'") }
            if p[i] == UInt8(ascii: ",") { i += 1; continue }
            if p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw fail(i, describe(i) + ", expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONNumber {
        let start = i
        var isInteger = true
        var negative = false
        if p[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < p.count, p[i] >= 0x30, p[i] <= 0x39 else { throw fail(i, describe(i) + " in a number") }
        var magnitude: UInt64 = 0
        var overflow = false
        if p[i] == 0x30 {
            i += 1
        } else {
            while i < p.count, p[i] >= 0x30, p[i] <= 0x39 {
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(UInt64(p[i] - 0x30))
                magnitude = m2
                overflow = overflow || o1 || o2
                i += 1
            }
        }
        func digits(_ reader: inout JSONReader) -> Int {
            let s = reader.i
            while reader.i < reader.p.count, reader.p[reader.i] >= 0x30, reader.p[reader.i] <= 0x39 { reader.i += 1 }
            return reader.i - s
        }
        if i < p.count && p[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            if digits(&self) == 0 { throw fail(i, describe(i) + " in a number") }
        }
        if i < p.count && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            if i < p.count && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { i += 1 }
            if digits(&self) == 0 { throw fail(i, describe(i) + " in a number") }
        }
        var integer: Int?
        if isInteger && !overflow {
            if magnitude <= UInt64(Int.max) {
                integer = negative ? -Int(magnitude) : Int(magnitude)
            } else if negative && magnitude == UInt64(Int.max) + 1 {
                integer = .min
            }
        }
        return JSONNumber(start: start, end: i, integer: integer)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= p.count else { throw fail(i, "truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = p[i]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw fail(i, describe(i) + " in a \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// Validates a string literal and returns its content range.
    private mutating func parseString() throws -> JSONString {
        let open = i
        i += 1
        let start = i
        var escaped = false
        while true {
            guard i < p.count else { throw fail(open, "unterminated string") }
            let b = p[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return JSONString(start: start, end: i - 1, escaped: escaped)
            }
            if b < 0x20 {
                throw fail(i, "unescaped control character 0x\(String(b, radix: 16, uppercase: true)) in a string")
            }
            if b != UInt8(ascii: "\\") { i += 1; continue }
            escaped = true
            i += 1
            guard i < p.count else { throw fail(open, "unterminated string") }
            let e = p[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                 UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                break
            case UInt8(ascii: "u"):
                let escapeOffset = i - 2
                let v = try hex4()
                func lone() -> JSONSyntaxError {
                    JSONSyntaxError(offset: escapeOffset, reason: "lone surrogate \\u\(String(v, radix: 16, uppercase: true)) in a string")
                }
                if v >= 0xD800 && v < 0xDC00 {
                    guard i + 6 <= p.count, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") else { throw lone() }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw lone() }
                } else if v >= 0xDC00 && v < 0xE000 {
                    throw lone()
                }
            default:
                throw fail(i - 2, "invalid escape '\\\(Character(Unicode.Scalar(e)))' in a string")
            }
        }
    }
}
