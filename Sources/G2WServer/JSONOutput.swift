import Foundation
import G2WFormat

/// A JSON value to send (keys keep their order).
indirect enum JSONOut {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONOut])
    case object([(String, JSONOut)])

    var text: String {
        var s = ""
        write(to: &s)
        return s
    }

    var bytes: [UInt8] { Array(text.utf8) }

    func write(to s: inout String) {
        switch self {
        case .null: s += "null"
        case let .bool(b): s += b ? "true" : "false"
        case let .int(i): s += String(i)
        case let .double(d): s += Self.number(d)
        case let .string(v): Self.quote(v, into: &s)
        case let .array(items):
            s += "["
            for (i, v) in items.enumerated() {
                if i > 0 { s += "," }
                v.write(to: &s)
            }
            s += "]"
        case let .object(pairs):
            s += "{"
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { s += "," }
                Self.quote(k, into: &s)
                s += ":"
                v.write(to: &s)
            }
            s += "}"
        }
    }

    /// The shortest decimal that reads back as `d` (Swift's description; whole numbers as `2.0`,
    /// so typed clients read a float); non-finite values, which JSON cannot carry, as null.
    static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) + ".0" }
        return "\(d)"
    }

    /// `v` as a JSON string literal (the one JSON string writer: `JSONValue.quoted`).
    static func quote(_ v: String, into s: inout String) {
        s += JSONValue.quoted(v)
    }
}
