import CG2W
import Foundation
import G2WSupport

/// OpenAI's GPT-2 byte-level BPE tokenizer, producing exactly the ids of tiktoken's "gpt2"
/// encoding for every input.
///
/// Build it from the vocabulary and merges (as stored in a .g2w file's metadata), from
/// `encoder.json` + `vocab.bpe` (= Hugging Face `vocab.json` + `merges.txt`), or from a Hugging Face
/// `tokenizer.json`. The value is immutable and cheap to copy; share it freely across threads.
///
/// ```swift
/// let tokenizer = try GPT2Tokenizer.load(encoderJSON: "vocab.json", vocabBPE: "merges.txt")
/// let ids = tokenizer.encode("Hello world")          // [15496, 995]
/// let text = try tokenizer.decodeText(ids)           // "Hello world"
/// ```
public struct GPT2Tokenizer: Sendable {
    let model: BPEModel

    // MARK: Building

    /// Builds a tokenizer from token strings in id order and merges in rank order.
    ///
    /// - Parameters:
    ///   - vocabulary: entry `i` is the byte-level token string of id `i`, exactly as in
    ///     encoder.json (e.g. `"Ġthe"`). Must hold the 256 single-byte tokens, no duplicates.
    ///   - merges: entry `i` is the merge of rank `i`, `"left right"` as a line of vocab.bpe
    ///     (without the `#version` header). Both tokens and their concatenation must be in the vocabulary.
    /// - Throws: `TokenizerError` naming the offending entry.
    public init(vocabulary: [String], merges: [String]) throws {
        var builder = Builder()
        for (id, token) in vocabulary.enumerated() {
            try withUTF8(token) { try builder.addToken(utf8: $0, id: id) }
        }
        for (i, merge) in merges.enumerated() {
            try withUTF8(merge) { try builder.addMergeLine(utf8: $0, location: "merges[\(i)]") }
        }
        model = try BPEModel(tokens: builder.tokens, merges: builder.merges, location: { "merges[\($0)]" })
    }

    /// Builds from UTF-8 token strings and `"left right"` merge lines stored as a `.g2w` file
    /// stores them (each list's elements concatenated, `ends[i]` the end of element `i`), without
    /// creating a `String` per entry. Bounds and UTF-8 are checked: a bad element is an error.
    public init(vocabularyUTF8: [UInt8], vocabularyEnds: [Int], mergesUTF8: [UInt8], mergesEnds: [Int]) throws {
        if let (i, reason) = Self.firstInvalidElement(vocabularyUTF8, vocabularyEnds) {
            throw TokenizerError.invalidVocabulary(source: "vocabulary", reason: "entry \(i) \(reason)")
        }
        if let (i, reason) = Self.firstInvalidElement(mergesUTF8, mergesEnds) {
            throw TokenizerError.malformedMerge(location: "merges[\(i)]", text: "", reason: reason)
        }
        var builder = Builder()
        try vocabularyUTF8.withUnsafeBufferPointer { v in
            var start = 0
            for (id, end) in vocabularyEnds.enumerated() {
                try builder.addToken(utf8: UnsafeBufferPointer(rebasing: v[start..<end]), id: id)
                start = end
            }
        }
        try mergesUTF8.withUnsafeBufferPointer { m in
            var start = 0
            for (i, end) in mergesEnds.enumerated() {
                try builder.addMergeLine(utf8: UnsafeBufferPointer(rebasing: m[start..<end]), location: "merges[\(i)]")
                start = end
            }
        }
        model = try BPEModel(tokens: builder.tokens, merges: builder.merges, location: { "merges[\($0)]" })
    }

    /// The first element of `bytes` cut at `ends` whose bounds are wrong or which is not valid
    /// UTF-8, with the reason; nil if all are good.
    static func firstInvalidElement(_ bytes: [UInt8], _ ends: [Int]) -> (Int, String)? {
        var start = 0
        for (i, end) in ends.enumerated() {
            guard end >= start && end <= bytes.count else {
                return (i, "ends at \(end), outside \(start)...\(bytes.count)")
            }
            start = end
        }
        let first = bytes.withUnsafeBufferPointer { b in ends.withUnsafeBufferPointer { e in
            g2w_utf8_first_invalid_element(b.baseAddress ?? UnsafePointer(bitPattern: 1)!, e.baseAddress, e.count)
        } }
        return first < ends.count ? (first, "is not valid UTF-8") : nil
    }

    /// Loads OpenAI's `encoder.json` + `vocab.bpe` (or the identical Hugging Face `vocab.json` + `merges.txt`).
    /// Paths are file-system paths, as everywhere in the API.
    public static func load(encoderJSON: String, vocabBPE: String) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(encoderJSON: readFile(encoderJSON), vocabBPE: readFile(vocabBPE),
                          encoderName: encoderJSON, mergesName: vocabBPE)
    }

    /// Loads a Hugging Face `tokenizer.json` (BPE model; merges as `"a b"` strings or `["a", "b"]` pairs).
    public static func load(tokenizerJSON: String) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(tokenizerJSON: readFile(tokenizerJSON), sourceName: tokenizerJSON)
    }

    /// Builds from the contents of `encoder.json` and `vocab.bpe`; the names are used in error messages.
    public init(encoderJSON: Data, vocabBPE: Data,
                encoderName: String = "encoder.json", mergesName: String = "vocab.bpe") throws {
        var builder = Builder()
        try encoderJSON.withUnsafeBytes { raw in
            let doc = try parseJSON(raw.bindMemory(to: UInt8.self), source: encoderName)
            guard case .object(let members) = doc.root else {
                throw TokenizerError.invalidVocabulary(source: encoderName, reason: "expected a JSON object of token -> id, found \(doc.root.typeName)")
            }
            try builder.addVocabularyObject(members, doc: doc, source: encoderName)
        }
        let lineNumbers = try vocabBPE.withUnsafeBytes { raw in
            try builder.addMergesFile(raw.bindMemory(to: UInt8.self), source: mergesName)
        }
        model = try BPEModel(tokens: builder.tokens, merges: builder.merges,
                             location: { "\(mergesName) line \(lineNumbers[$0])" })
        try model.checkMergesPresent(source: mergesName, declaredSpecials: [])
    }

    /// Builds from the contents of a Hugging Face `tokenizer.json`; the name is used in error messages.
    ///
    /// Uses `model.vocab` and `model.merges`; `added_tokens` missing from `model.vocab` are added at their ids.
    public init(tokenizerJSON: Data, sourceName: String = "tokenizer.json") throws {
        var builder = Builder()
        var declaredSpecials = Set<Int>()
        try tokenizerJSON.withUnsafeBytes { raw in
            let doc = try parseJSON(raw.bindMemory(to: UInt8.self), source: sourceName)
            func fail(_ reason: String) -> TokenizerError { .invalidVocabulary(source: sourceName, reason: reason) }
            guard case .object = doc.root else { throw fail("expected a JSON object, found \(doc.root.typeName)") }
            guard let model = doc.member(doc.root, "model"), case .object = model else { throw fail("missing \"model\" object") }
            if let type = doc.member(model, "type"), !doc.isString(type, "BPE") { throw fail("model.type is not \"BPE\"") }
            guard let vocab = doc.member(model, "vocab"), case .object(let members) = vocab else {
                throw fail("missing \"model.vocab\" object")
            }
            var added: [(content: JSONString, id: Int)] = []
            if let addedTokens = doc.member(doc.root, "added_tokens") {
                guard case .array(let items) = addedTokens else { throw fail("\"added_tokens\" is not an array") }
                for (k, item) in items.enumerated() {
                    guard case .string(let content)? = doc.member(item, "content"),
                          let id = doc.member(item, "id")?.integer else {
                        throw fail("added_tokens[\(k)] lacks a string \"content\" or an integer \"id\"")
                    }
                    added.append((content, id))
                    declaredSpecials.insert(id)
                }
            }
            try builder.addVocabularyObject(members, doc: doc, source: sourceName + " model.vocab")
            var scratch: [UInt8] = []
            for (content, id) in added.sorted(by: { $0.id < $1.id }) {
                scratch.removeAll(keepingCapacity: true)
                doc.appendUTF8(content, to: &scratch)
                let count = builder.tokens.count
                if id >= 0 && id < count {
                    var raw: [UInt8] = []
                    let bad = scratch.withUnsafeBufferPointer { b in
                        b.isEmpty ? 0 : ByteLevel.scalarToByte.withUnsafeBufferPointer {
                            ByteLevel.appendRawBytes(utf8: b.baseAddress!, count: b.count, to: &raw, table: $0.baseAddress!)
                        }
                    }
                    if bad != nil || !builder.tokens.entry(id).elementsEqual(raw) {
                        throw fail("added token \(quoted(doc.string(content))) has id \(id), which model.vocab gives to \(quoted(builder.tokens.string(id)))")
                    }
                } else if id == count {
                    try scratch.withUnsafeBufferPointer { try builder.addToken(utf8: $0, id: id) }
                } else {
                    throw fail("added token \(quoted(doc.string(content))) has id \(id), not adjacent to the vocabulary (size \(count))")
                }
            }
            guard let mergesValue = doc.member(model, "merges"), case .array(let items) = mergesValue else {
                throw fail("missing \"model.merges\" array")
            }
            for (k, item) in items.enumerated() {
                func location() -> String { "\(sourceName) model.merges[\(k)]" }
                scratch.removeAll(keepingCapacity: true)
                switch item {
                case .string(let line):
                    doc.appendUTF8(line, to: &scratch)
                case .array(let pair):
                    guard pair.count == 2, case .string(let left) = pair[0], case .string(let right) = pair[1] else {
                        throw fail("model.merges[\(k)] is not a string pair [\"left\", \"right\"]")
                    }
                    doc.appendUTF8(left, to: &scratch)
                    let leftCount = scratch.count
                    doc.appendUTF8(right, to: &scratch)
                    if scratch[..<leftCount].contains(0x20) || scratch[leftCount...].contains(0x20) {
                        throw TokenizerError.malformedMerge(location: location(), text: doc.string(left) + " " + doc.string(right),
                                                            reason: "a token contains a space")
                    }
                    scratch.insert(0x20, at: leftCount)
                default:
                    throw fail("model.merges[\(k)] is \(item.typeName), expected a string or a string pair")
                }
                try scratch.withUnsafeBufferPointer { try builder.addMergeLine(utf8: $0, location: location()) }
            }
        }
        model = try BPEModel(tokens: builder.tokens, merges: builder.merges,
                             location: { "\(sourceName) model.merges[\($0)]" })
        try model.checkMergesPresent(source: "\(sourceName) model.merges", declaredSpecials: declaredSpecials)
    }

    // MARK: Vocabulary

    /// Number of token ids (50,257 for GPT-2).
    public var vocabularySize: Int { model.tokenCount }

    /// The byte-level token strings in id order, as loaded (for embedding in a .g2w file).
    /// Built on each access.
    public var vocabularyInIDOrder: [String] { model.vocabulary }

    /// The merges in rank order as `"left right"` strings, as loaded (for embedding in a .g2w file).
    /// Built on each access.
    public var mergeStrings: [String] { model.mergeStrings }

    /// Work done building the pair table (hash steps and bytes compared): linear in the bytes of
    /// the tokens, for tests that check a hostile vocabulary cannot make the build quadratic.
    package var buildWork: Int { model.buildWork }

    /// Id of `"<|endoftext|>"`, if the vocabulary has it (50256 for GPT-2).
    public var endOfTextID: Int? { model.specialTokenIDs["<|endoftext|>"] }

    /// Tokens that BPE can never produce from text (neither a single byte nor a merge result),
    /// by their string, e.g. `["<|endoftext|>": 50256]`. These are what `allowSpecialTokens` matches.
    public var specialTokens: [String: Int] { model.specialTokenIDs }

    /// The raw bytes of a token.
    /// - Throws: `TokenizerError.tokenIDOutOfRange`.
    public func tokenBytes(_ id: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        try model.appendBytes(of: id, to: &out)
        return out
    }

    /// The byte-level string of a token as in encoder.json (e.g. `"Ġthe"`), or nil if out of range.
    public func tokenString(_ id: Int) -> String? {
        id >= 0 && id < model.tokenCount ? ByteLevel.string(forBytes: model.store.tokenBytes(id)) : nil
    }

    /// The id of a byte-level token string (e.g. `"Ġthe"`), or nil.
    public func id(forToken token: String) -> Int? {
        guard let bytes = ByteLevel.bytes(forString: token) else { return nil }
        let id = model.store.find(bytes)
        return id >= 0 ? id : nil
    }

    // MARK: Encoding

    /// Encodes text to token ids, exactly as tiktoken's gpt2 encoding.
    ///
    /// - Parameters:
    ///   - allowSpecialTokens: when false (default), text such as `"<|endoftext|>"` is encoded as
    ///     ordinary text (tiktoken's `encode_ordinary`). When true, occurrences of the special tokens
    ///     (see `specialTokens`) become their ids (tiktoken's `encode(text, allowed_special="all")`).
    public func encode(_ text: String, allowSpecialTokens: Bool = false) -> [Int] {
        var text = text
        if let ids = text.utf8.withContiguousStorageIfAvailable({ encode(utf8: $0, allowSpecialTokens: allowSpecialTokens) }) {
            return ids
        }
        text.makeContiguousUTF8()
        return text.utf8.withContiguousStorageIfAvailable { encode(utf8: $0, allowSpecialTokens: allowSpecialTokens) }!
    }

    private func encode(utf8 buffer: UnsafeBufferPointer<UInt8>, allowSpecialTokens: Bool) -> [Int] {
        var out: [Int] = []
        guard let base = buffer.baseAddress, buffer.count > 0 else { return out }
        let n = buffer.count
        out.reserveCapacity(n / 4 + 16)
        // A memo of multi-token pieces pays off only on longer texts.
        let cache = n >= 4096 ? PieceCache() : nil
        if !allowSpecialTokens || model.specials.isEmpty {
            model.encodeOrdinary(base, start: 0, end: n, into: &out, cache: cache)
            return out
        }
        var segmentStart = 0
        var i = 0
        search: while i < n {
            for special in model.specials where special.bytes.count <= n - i && special.bytes[0] == base[i] {
                let matches = special.bytes.withUnsafeBufferPointer { s in
                    memcmp(base + i, s.baseAddress!, s.count) == 0
                }
                if matches {
                    model.encodeOrdinary(base, start: segmentStart, end: i, into: &out, cache: cache)
                    out.append(special.id)
                    i += special.bytes.count
                    segmentStart = i
                    continue search
                }
            }
            i += 1
        }
        model.encodeOrdinary(base, start: segmentStart, end: n, into: &out, cache: cache)
        return out
    }

    /// The pre-tokens (regex pieces) of a text, the units BPE works on; for inspection and tests.
    public func preTokenize(_ text: String) -> [String] {
        var text = text
        text.makeContiguousUTF8()
        return text.utf8.withContiguousStorageIfAvailable { buffer -> [String] in
            guard let base = buffer.baseAddress else { return [] }
            var pre = PreTokenizer(base, start: 0, end: buffer.count)
            var pieces: [String] = []
            while let (s, e) = pre.next() {
                pieces.append(String(decoding: UnsafeBufferPointer(start: base + s, count: e - s), as: UTF8.self))
            }
            return pieces
        }!
    }

    // MARK: Decoding

    /// The concatenated raw bytes of the tokens (may end inside a UTF-8 character).
    /// - Throws: `TokenizerError.tokenIDOutOfRange` for an id outside `0..<vocabularySize`.
    public func decode(_ ids: some Sequence<Int>) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.underestimatedCount * 4)
        for id in ids { try model.appendBytes(of: id, to: &out) }
        return out
    }

    /// The tokens as text; invalid UTF-8 (e.g. a character cut by the end of `ids`) becomes U+FFFD.
    /// - Throws: `TokenizerError.tokenIDOutOfRange` for an id outside `0..<vocabularySize`.
    public func decodeText(_ ids: some Sequence<Int>) throws -> String {
        String(decoding: try decode(ids), as: UTF8.self)
    }

    /// A decoder for printing tokens as they are generated.
    public func makeStreamingDecoder() -> StreamingDecoder { StreamingDecoder(tokenizer: self) }
}

// MARK: - Building helpers

/// The bytes of a tokenizer file: a regular file (a FIFO or a device is refused at once, never
/// waited on) of at most 256 MB (GPT-2's files are 0.5-1.4 MB).
private func readFile(_ path: String) throws -> Data {
    do {
        return Data(try RegularFile.read(path, limit: 256 << 20, what: "tokenizer file"))
    } catch let e as FileError {
        throw TokenizerError.unreadableFile(path: e.path, reason: e.reason)
    }
}

/// Parses a JSON tokenizer file; a syntax error is `TokenizerError.invalidJSON` at its line and column.
private func parseJSON(_ bytes: UnsafeBufferPointer<UInt8>, source: String) throws -> JSONDocument {
    do {
        return try JSONDocument(bytes)
    } catch let e as JSONSyntaxError {
        let (line, column) = JSONDocument.lineAndColumn(bytes, e.offset)
        throw TokenizerError.invalidJSON(source: source, line: line, column: column, reason: e.reason)
    }
}

private func withUTF8<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    if let r = try string.utf8.withContiguousStorageIfAvailable(body) { return r }
    return try Array(string.utf8).withUnsafeBufferPointer(body)
}

/// Collects raw token and merge bytes from any source format, validating as it goes.
private struct Builder {
    var tokens = ByteRanges()
    /// Entries 2i and 2i+1: left and right token of merge i.
    var merges = ByteRanges()
    private let table = ByteLevel.scalarToByte

    init() {
        tokens.bytes.reserveCapacity(1 << 19)
        tokens.ends.reserveCapacity(50_257)
        merges.bytes.reserveCapacity(1 << 19)
        merges.ends.reserveCapacity(100_000)
    }

    /// Appends token `id` from the UTF-8 of its byte-level string.
    mutating func addToken(utf8 b: UnsafeBufferPointer<UInt8>, id: Int) throws {
        guard let p = b.baseAddress, b.count > 0 else { throw TokenizerError.emptyToken(id: id) }
        let bad = table.withUnsafeBufferPointer {
            ByteLevel.appendRawBytes(utf8: p, count: b.count, to: &tokens.bytes, table: $0.baseAddress!)
        }
        if let bad {
            throw TokenizerError.invalidTokenCharacter(id: id, token: String(decoding: b, as: UTF8.self), scalar: bad)
        }
        tokens.finishEntry()
    }

    /// Appends a merge from the UTF-8 of a `"left right"` line.
    mutating func addMergeLine(utf8 b: UnsafeBufferPointer<UInt8>, location: @autoclosure () -> String) throws {
        func malformed(_ reason: String) -> TokenizerError {
            .malformedMerge(location: location(), text: String(decoding: b, as: UTF8.self), reason: reason)
        }
        guard let p = b.baseAddress, let space = b.firstIndex(of: 0x20) else {
            throw malformed("no space between the two tokens")
        }
        if b[(space + 1)...].contains(0x20) { throw malformed("more than one space") }
        if space == 0 || space == b.count - 1 { throw malformed("empty token") }
        for (start, end) in [(0, space), (space + 1, b.count)] {
            let bad = table.withUnsafeBufferPointer {
                ByteLevel.appendRawBytes(utf8: p + start, count: end - start, to: &merges.bytes, table: $0.baseAddress!)
            }
            if bad != nil {
                throw TokenizerError.unknownMergeToken(location: location(), merge: String(decoding: b, as: UTF8.self),
                                                       token: String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self))
            }
            merges.finishEntry()
        }
    }

    /// Appends the tokens of a `{token: id}` object in id order (ids must be 0..<count, each once).
    mutating func addVocabularyObject(_ members: [JSONMember], doc: JSONDocument, source: String) throws {
        let count = members.count
        var owner = [Int](repeating: -1, count: count)
        for (k, member) in members.enumerated() {
            guard let id = member.value.integer else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "\(doc.position(member.key)): token \(quoted(doc.string(member.key))) has \(member.value.typeName) as id, expected an integer")
            }
            guard id >= 0 && id < count else {
                throw TokenizerError.invalidVocabulary(source: source, reason: "\(doc.position(member.key)): token \(quoted(doc.string(member.key))) has id \(id), outside 0..<\(count) (ids must be 0...count-1 without gaps)")
            }
            if owner[id] >= 0 {
                let first = members[owner[id]]
                let a = doc.string(first.key), b = doc.string(member.key)
                if a == b {
                    throw TokenizerError.invalidVocabulary(source: source, reason: "\(doc.position(member.key)): duplicate token \(quoted(b)) (first at \(doc.position(first.key)))")
                }
                throw TokenizerError.invalidVocabulary(source: source, reason: "\(doc.position(member.key)): tokens \(quoted(a)) (\(doc.position(first.key))) and \(quoted(b)) both have id \(id)")
            }
            owner[id] = k
        }
        // With `count` members and distinct ids in 0..<count there are no gaps. Duplicate keys with
        // different ids are reported by the model as duplicate tokens.
        var scratch: [UInt8] = []
        for id in 0..<count {
            let key = members[owner[id]].key
            if key.escaped {
                scratch.removeAll(keepingCapacity: true)
                doc.appendUTF8(key, to: &scratch)
                try scratch.withUnsafeBufferPointer { try addToken(utf8: $0, id: id) }
            } else {
                try addToken(utf8: UnsafeBufferPointer(rebasing: doc.bytes[key.start..<key.end]), id: id)
            }
        }
    }

    /// Appends the merges of a vocab.bpe / merges.txt file; returns the 1-based line number of each.
    mutating func addMergesFile(_ b: UnsafeBufferPointer<UInt8>, source: String) throws -> [Int] {
        if let bad = firstInvalidUTF8(b) {
            let (line, column) = JSONDocument.lineAndColumn(b, bad)
            throw TokenizerError.invalidVocabulary(source: source, reason: "line \(line), column \(column): invalid UTF-8")
        }
        var numbers: [Int] = []
        numbers.reserveCapacity(50_000)
        var lineNumber = 0
        var firstBlank = 0
        var start = 0
        let n = b.count
        while start < n {
            var end = start
            while end < n && b[end] != 0x0A { end += 1 }
            let next = end + 1
            if end > start && b[end - 1] == 0x0D { end -= 1 }
            lineNumber += 1
            let line = UnsafeBufferPointer(rebasing: b[start..<end])
            start = next
            if lineNumber == 1 && line.starts(with: "#version".utf8) { continue }
            if line.isEmpty {
                if firstBlank == 0 { firstBlank = lineNumber }
                continue
            }
            if firstBlank != 0 {
                throw TokenizerError.malformedMerge(location: "\(source) line \(firstBlank)", text: "", reason: "empty line")
            }
            try addMergeLine(utf8: line, location: "\(source) line \(lineNumber)")
            numbers.append(lineNumber)
        }
        return numbers
    }
}
