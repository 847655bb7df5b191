/// Turns a stream of token ids into printable text.
///
/// A GPT-2 token can end in the middle of a multi-byte UTF-8 character (emoji and most CJK
/// characters span several byte tokens). `append` returns only complete characters and holds the
/// partial bytes until the character completes, so text that is valid UTF-8 as a whole never shows
/// U+FFFD. `finish()` returns what is still held (invalid leftovers become U+FFFD only then).
///
/// ```swift
/// var stream = tokenizer.makeStreamingDecoder()
/// for id in generatedIDs { print(try stream.append(id), terminator: "") }
/// print(stream.finish())
/// ```
public struct StreamingDecoder: Sendable {
    private let tokenizer: GPT2Tokenizer
    private var pending: [UInt8] = []

    public init(tokenizer: GPT2Tokenizer) {
        self.tokenizer = tokenizer
    }

    /// Bytes held back because they may be the start of an incomplete character.
    public var pendingByteCount: Int { pending.count }

    /// Adds one token; returns the text that is now complete (possibly empty).
    /// - Throws: `TokenizerError.tokenIDOutOfRange`; the decoder is unchanged then.
    public mutating func append(_ id: Int) throws -> String {
        try tokenizer.model.appendBytes(of: id, to: &pending)
        return takeComplete()
    }

    /// Adds several tokens; returns the text that is now complete (possibly empty).
    /// - Throws: `TokenizerError.tokenIDOutOfRange`; tokens before the bad one are kept.
    public mutating func append(contentsOf ids: some Sequence<Int>) throws -> String {
        for id in ids { try tokenizer.model.appendBytes(of: id, to: &pending) }
        return takeComplete()
    }

    /// Returns everything still held and resets the decoder.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Emits all bytes except a trailing incomplete-but-valid-so-far UTF-8 sequence.
    private mutating func takeComplete() -> String {
        let keep = incompleteSuffixLength(pending)
        if keep == pending.count { return "" }
        let text = String(decoding: pending[..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }
}

/// Length of the trailing bytes that form a valid but unfinished UTF-8 sequence (0...3).
func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
    let n = bytes.count
    // Find the last lead byte among the final 3 bytes.
    var k = 1
    while k <= min(3, n) {
        let b = bytes[n - k]
        if b & 0xC0 != 0x80 {
            // b is a lead (or ASCII) byte with k - 1 continuation bytes after it.
            let need: Int
            switch b {
            case 0xC2...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF4: need = 4
            default: return 0  // ASCII or invalid lead: nothing to wait for
            }
            guard k < need else { return 0 }  // complete (or overlong garbage): emit
            // Check the second byte's range restrictions when present.
            if k >= 2 {
                let b1 = bytes[n - k + 1]
                switch b {
                case 0xE0: if b1 < 0xA0 { return 0 }
                case 0xED: if b1 > 0x9F { return 0 }
                case 0xF0: if b1 < 0x90 { return 0 }
                case 0xF4: if b1 > 0x8F { return 0 }
                default: break
                }
            }
            return k
        }
        k += 1
    }
    return 0
}
