import G2WSupport

/// Everything that can go wrong when building a tokenizer or decoding ids.
///
/// Locations are human-readable: `"merges[12]"` for an in-memory array entry, `"vocab.bpe line 14"`
/// for a file line, `"tokenizer.json line 3, column 9"` for a JSON position.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A token id given to `decode` (or similar) is not in `0..<vocabularySize`.
    case tokenIDOutOfRange(id: Int, vocabularySize: Int)
    /// A vocabulary entry is the empty string.
    case emptyToken(id: Int)
    /// A vocabulary entry contains a character outside GPT-2's 256-character byte-level alphabet.
    case invalidTokenCharacter(id: Int, token: String, scalar: UInt32)
    /// The same token string appears twice in the vocabulary.
    case duplicateToken(token: String, firstID: Int, secondID: Int)
    /// One of the 256 single-byte tokens is missing from the vocabulary.
    case missingByteToken(byte: UInt8, token: String)
    /// A merge entry is not of the form `"left right"` (exactly one space, two non-empty tokens).
    case malformedMerge(location: String, text: String, reason: String)
    /// A merge entry names a token that is not in the vocabulary.
    case unknownMergeToken(location: String, merge: String, token: String)
    /// The concatenation of a merge's two tokens is not in the vocabulary.
    case mergeResultNotInVocabulary(location: String, merge: String, result: String)
    /// Two merge entries produce the same token.
    case duplicateMerge(location: String, merge: String, result: String, firstLocation: String)
    /// A file is not valid JSON.
    case invalidJSON(source: String, line: Int, column: Int, reason: String)
    /// A JSON file is valid JSON but not a usable vocabulary / tokenizer description.
    case invalidVocabulary(source: String, reason: String)
    /// A file could not be read.
    case unreadableFile(path: String, reason: String)

    public var description: String {
        switch self {
        case let .tokenIDOutOfRange(id, size):
            return "token id \(id) is out of range (vocabulary size \(size))"
        case let .emptyToken(id):
            return "vocabulary entry \(id) is the empty string"
        case let .invalidTokenCharacter(id, token, scalar):
            let hex = String(scalar, radix: 16, uppercase: true)
            return "vocabulary entry \(id) \(quoted(token)) contains U+\(String(repeating: "0", count: max(0, 4 - hex.count)))\(hex), which is not in GPT-2's byte-level alphabet"
        case let .duplicateToken(token, first, second):
            return "token \(quoted(token)) appears twice in the vocabulary (ids \(first) and \(second))"
        case let .missingByteToken(byte, token):
            return "the vocabulary lacks the single-byte token \(quoted(token)) for byte 0x\(String(byte, radix: 16, uppercase: true))"
        case let .malformedMerge(location, text, reason):
            return "\(location): malformed merge \(quoted(text)): \(reason)"
        case let .unknownMergeToken(location, merge, token):
            return "\(location): merge \(quoted(merge)) refers to \(quoted(token)), which is not in the vocabulary"
        case let .mergeResultNotInVocabulary(location, merge, result):
            return "\(location): the result \(quoted(result)) of merge \(quoted(merge)) is not in the vocabulary"
        case let .duplicateMerge(location, merge, result, first):
            return "\(location): merge \(quoted(merge)) produces \(quoted(result)), already produced by \(first)"
        case let .invalidJSON(source, line, column, reason):
            return "\(source) line \(line), column \(column): invalid JSON: \(reason)"
        case let .invalidVocabulary(source, reason):
            return "\(source): \(reason)"
        case let .unreadableFile(path, reason):
            return "cannot read \(path): \(reason)"
        }
    }
}

/// A token or merge from a file in double quotes, for error messages: escaped (control and
/// format characters, quotes) and cut short after 100 characters (a token can be 256 KB).
func quoted(_ s: String) -> String { displayQuoted(s, limit: 100) }
