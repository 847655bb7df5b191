import CG2W

// Text helpers shared by the readers and the tools: the one way to show a string that came from a
// file, the one way to find bad UTF-8, and column padding.

/// A string from a file (a tensor name, a key, a token), safe to print: backslashes and control
/// characters escaped (`\n`, `\t`, `\r`, `\u{1b}`), and also C1 controls and Unicode format
/// characters (U+202E RIGHT-TO-LEFT OVERRIDE, zero-width characters...), so a name can neither move
/// the cursor, clear the screen nor reorder what is printed around it. With `limit`, at most that
/// many characters of the original are shown, then `...` and the length in bytes, so a 100 KB name
/// cannot flood a terminal.
package func displayEscaped(_ s: String, limit: Int? = nil, quote: Unicode.Scalar? = nil) -> String {
    var out = ""
    var shown = 0
    for scalar in s.unicodeScalars {
        if let limit, shown == limit {
            out += "... (\(s.utf8.count) bytes)"
            break
        }
        shown += 1
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar == quote {
                out += "\\"
                out.unicodeScalars.append(scalar)
            } else if scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0) || scalar.properties.generalCategory == .format {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}

/// `displayEscaped` in double quotes, with `"` escaped too: for values in messages.
package func displayQuoted(_ s: String, limit: Int? = nil) -> String {
    "\"" + displayEscaped(s, limit: limit, quote: "\"") + "\""
}

/// The offset of the first byte of `p` that is not part of well-formed UTF-8 (for a sequence cut
/// short, its lead byte), or nil when all of `p` is well-formed (`g2w_utf8_first_invalid`).
package func firstInvalidUTF8(_ p: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = p.baseAddress, p.count > 0 else { return nil }
    let i = g2w_utf8_first_invalid(base, p.count)
    return i < p.count ? i : nil
}

extension String {
    /// The string padded on the left with `pad` to `width` characters (unchanged if longer).
    package func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }

    /// The string padded on the right with `pad` to `width` characters (unchanged if longer).
    package func rightPadded(_ width: Int, with pad: Character = " ") -> String {
        count >= width ? self : self + String(repeating: pad, count: width - count)
    }
}
