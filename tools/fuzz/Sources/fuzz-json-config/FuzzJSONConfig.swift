// fuzz-json-config: the strict JSON parser (JSONValue.parse) and the config.json reader
// (HuggingFaceConverter.readConfig, which takes a path: the input goes through a scratch file).
//
// Properties: parse throws only JSONError, with an offset inside the input; a parsed value is
// walked completely; readConfig throws only ConversionError, and a configuration it returns is
// valid. Parsing is also checked to be deterministic and re-parsing a value's canonical
// re-serialisation gives the same value.
import FuzzSupport
import G2W
import G2WFormat

let scratch = ScratchFile(name: "config.json")

@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    do {
        let value = try JSONValue.parse(bytes)
        fuzzNote("JSON: \(value.typeName)")
        walk(value, depth: 0)
        let again = try JSONValue.parse(bytes[...])
        fuzzCheck(again == value, "parsing is not deterministic")
        let text = serialize(value)
        do {
            let reparsed = try JSONValue.parse(Array(text.utf8))
            fuzzCheck(equivalent(reparsed, value), "re-serialised JSON parses differently: \(text)")
        } catch {
            fuzzCheck(false, "re-serialised JSON does not parse: \(error): \(text)")
        }
    } catch let e as JSONError {
        fuzzCheck(e.offset >= 0 && e.offset <= bytes.count, "error offset \(e.offset) outside the input (\(bytes.count) bytes)")
        fuzzNote(e.description)
    } catch {
        fuzzCheck(false, "JSONValue.parse threw a non-JSONError: \(error)")
    }

    scratch.write(bytes)
    do {
        let c = try HuggingFaceConverter.readConfig(scratch.path)
        do { try c.validate() } catch { fuzzCheck(false, "readConfig returned an invalid configuration: \(error)") }
        fuzzNote("readConfig: \(c.description), head size \(c.headSize)")
    } catch let e as ConversionError {
        fuzzNote("readConfig: \(e.description)")
    } catch {
        fuzzCheck(false, "readConfig threw a non-ConversionError: \(error)")
    }
    return 0
}

func walk(_ v: JSONValue, depth: Int) {
    fuzzCheck(depth <= 64, "nesting deeper than the limit was accepted")
    _ = v.typeName
    switch v {
    case .null: fuzzCheck(v.isNull, "isNull")
    case .bool: break
    case let .number(d, i):
        fuzzCheck(v.double == d && v.int == i, "number accessors")
        if let i { fuzzCheck(Double(i) == d, "integer \(i) and double \(d) disagree") }
    case let .string(s): fuzzCheck(v.string == s, "string accessor")
    case let .array(items): for item in items { walk(item, depth: depth + 1) }
    case let .object(pairs):
        var seen = Set<String>()
        for (k, item) in pairs {
            fuzzCheck(seen.insert(k).inserted, "duplicate key \(k) accepted")
            fuzzCheck(v[k] == item, "subscript")
            walk(item, depth: depth + 1)
        }
    }
}

/// Canonical JSON text of a value (numbers with enough digits to round-trip).
func serialize(_ v: JSONValue) -> String {
    switch v {
    case .null: return "null"
    case let .bool(b): return b ? "true" : "false"
    case let .number(d, i):
        if let i { return String(i) }
        if !d.isFinite { return d > 0 ? "1e999" : "-1e999" }
        var s = "\(d)"
        if !s.contains(".") && !s.contains("e") { s += ".0" }
        return s
    case let .string(s): return quote(s)
    case let .array(items): return "[" + items.map(serialize).joined(separator: ",") + "]"
    case let .object(pairs): return "{" + pairs.map { quote($0.0) + ":" + serialize($0.1) }.joined(separator: ",") + "}"
    }
}

func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Equality where a non-integer number compares by value (1.0 and 1e0 are the same number) and
/// NaN cannot occur (JSON has no NaN).
func equivalent(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.number(x, i), .number(y, j)): return x == y && i == j
    case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy(equivalent)
    case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && equivalent($0.1, $1.1) }
    default: return a == b
    }
}
