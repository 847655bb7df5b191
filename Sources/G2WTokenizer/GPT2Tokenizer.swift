import Foundation

/// OpenAI's GPT-2 byte-level BPE tokenizer, producing exactly the ids of tiktoken's "gpt2"
/// encoding for every input.
///
/// Build it from the vocabulary and merges (as stored in a .g2w file's metadata), from
/// `encoder.json` + `vocab.bpe` (= Hugging Face `vocab.json` + `merges.txt`), or from a Hugging Face
/// `tokenizer.json`. The value is immutable and cheap to copy; share it freely across threads.
///
/// ```swift
/// let tokenizer = try GPT2Tokenizer.load(encoderJSON: vocabURL, vocabBPE: mergesURL)
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
        try self.init(vocabulary: vocabulary, mergeLines: merges, location: { "merges[\($0)]" })
    }

    init(vocabulary: [String], mergeLines: [String], location: (Int) -> String) throws {
        var parsed: [(left: Substring, right: Substring, text: String)] = []
        parsed.reserveCapacity(mergeLines.count)
        for (i, line) in mergeLines.enumerated() {
            guard let space = line.firstIndex(of: " ") else {
                throw TokenizerError.malformedMerge(location: location(i), text: line, reason: "no space between the two tokens")
            }
            let left = line[..<space]
            let right = line[line.index(after: space)...]
            if right.contains(" ") {
                throw TokenizerError.malformedMerge(location: location(i), text: line, reason: "more than one space")
            }
            if left.isEmpty || right.isEmpty {
                throw TokenizerError.malformedMerge(location: location(i), text: line, reason: "empty token")
            }
            parsed.append((left, right, line))
        }
        model = try BPEModel(vocabulary: vocabulary, merges: parsed, mergeStrings: mergeLines, location: location)
    }

    init(vocabulary: [String], mergePairs: [(String, String)], location: (Int) -> String) throws {
        var parsed: [(left: Substring, right: Substring, text: String)] = []
        var lines: [String] = []
        parsed.reserveCapacity(mergePairs.count)
        lines.reserveCapacity(mergePairs.count)
        for (i, (left, right)) in mergePairs.enumerated() {
            let text = left + " " + right
            if left.isEmpty || right.isEmpty {
                throw TokenizerError.malformedMerge(location: location(i), text: text, reason: "empty token")
            }
            if left.contains(" ") || right.contains(" ") {
                throw TokenizerError.malformedMerge(location: location(i), text: text, reason: "a token contains a space")
            }
            parsed.append((Substring(left), Substring(right), text))
            lines.append(text)
        }
        model = try BPEModel(vocabulary: vocabulary, merges: parsed, mergeStrings: lines, location: location)
    }

    /// Loads OpenAI's `encoder.json` + `vocab.bpe` (or the identical Hugging Face `vocab.json` + `merges.txt`).
    public static func load(encoderJSON: URL, vocabBPE: URL) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(encoderJSON: readFile(encoderJSON), vocabBPE: readFile(vocabBPE),
                          encoderName: encoderJSON.lastPathComponent, mergesName: vocabBPE.lastPathComponent)
    }

    /// Loads a Hugging Face `tokenizer.json` (BPE model; merges as `"a b"` strings or `["a", "b"]` pairs).
    public static func load(tokenizerJSON: URL) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(tokenizerJSON: readFile(tokenizerJSON), sourceName: tokenizerJSON.lastPathComponent)
    }

    /// Builds from the contents of `encoder.json` and `vocab.bpe`; the names are used in error messages.
    public init(encoderJSON: Data, vocabBPE: Data,
                encoderName: String = "encoder.json", mergesName: String = "vocab.bpe") throws {
        let vocabulary = try encoderJSON.withUnsafeBytes { raw -> [String] in
            let bytes = raw.bindMemory(to: UInt8.self)
            let json = try JSONReader.parse(bytes, source: encoderName)
            guard case .object(let members) = json else {
                throw TokenizerError.invalidVocabulary(source: encoderName, reason: "expected a JSON object of token -> id, found \(json.typeName)")
            }
            return try orderedVocabulary(members, bytes: bytes, source: encoderName)
        }
        let (lines, lineNumbers) = try mergeLines(vocabBPE, source: mergesName)
        try self.init(vocabulary: vocabulary, mergeLines: lines, location: { "\(mergesName) line \(lineNumbers[$0])" })
    }

    /// Builds from the contents of a Hugging Face `tokenizer.json`; the name is used in error messages.
    ///
    /// Uses `model.vocab` and `model.merges`; `added_tokens` missing from `model.vocab` are added at their ids.
    public init(tokenizerJSON: Data, sourceName: String = "tokenizer.json") throws {
        enum Merges { case lines([String]), pairs([(String, String)]) }
        let (vocabulary, merges) = try tokenizerJSON.withUnsafeBytes { raw -> ([String], Merges) in
            let bytes = raw.bindMemory(to: UInt8.self)
            let json = try JSONReader.parse(bytes, source: sourceName)
            func fail(_ reason: String) -> TokenizerError { .invalidVocabulary(source: sourceName, reason: reason) }
            guard case .object = json else { throw fail("expected a JSON object, found \(json.typeName)") }
            guard let model = json["model"], case .object = model else { throw fail("missing \"model\" object") }
            if let type = model["type"] {
                guard case .string("BPE") = type else { throw fail("model.type is not \"BPE\"") }
            }
            guard let vocab = model["vocab"], case .object(let members) = vocab else {
                throw fail("missing \"model.vocab\" object")
            }
            var added: [(String, Int)] = []
            if let addedTokens = json["added_tokens"] {
                guard case .array(let items) = addedTokens else { throw fail("\"added_tokens\" is not an array") }
                for (k, item) in items.enumerated() {
                    guard case .string(let content)? = item["content"], case .integer(let id)? = item["id"] else {
                        throw fail("added_tokens[\(k)] lacks a string \"content\" or an integer \"id\"")
                    }
                    added.append((content, id))
                }
            }
            var vocabulary = try orderedVocabulary(members, bytes: bytes, source: sourceName + " model.vocab")
            for (content, id) in added.sorted(by: { $0.1 < $1.1 }) {
                if id >= 0 && id < vocabulary.count {
                    if vocabulary[id] != content {
                        throw fail("added token \(quoted(content)) has id \(id), which model.vocab gives to \(quoted(vocabulary[id]))")
                    }
                } else if id == vocabulary.count {
                    vocabulary.append(content)
                } else {
                    throw fail("added token \(quoted(content)) has id \(id), not adjacent to the vocabulary (size \(vocabulary.count))")
                }
            }
            guard let mergesValue = model["merges"], case .array(let items) = mergesValue else {
                throw fail("missing \"model.merges\" array")
            }
            if items.isEmpty { return (vocabulary, .lines([])) }
            if case .string = items[0] {
                var lines: [String] = []
                lines.reserveCapacity(items.count)
                for (k, item) in items.enumerated() {
                    guard case .string(let s) = item else { throw fail("model.merges[\(k)] is \(item.typeName), expected a string like the others") }
                    lines.append(s)
                }
                return (vocabulary, .lines(lines))
            }
            var pairs: [(String, String)] = []
            pairs.reserveCapacity(items.count)
            for (k, item) in items.enumerated() {
                guard case .array(let pair) = item, pair.count == 2, case .string(let a) = pair[0], case .string(let b) = pair[1] else {
                    throw fail("model.merges[\(k)] is not a string pair [\"left\", \"right\"]")
                }
                pairs.append((a, b))
            }
            return (vocabulary, .pairs(pairs))
        }
        switch merges {
        case .lines(let lines):
            try self.init(vocabulary: vocabulary, mergeLines: lines, location: { "\(sourceName) model.merges[\($0)]" })
        case .pairs(let pairs):
            try self.init(vocabulary: vocabulary, mergePairs: pairs, location: { "\(sourceName) model.merges[\($0)]" })
        }
    }

    // MARK: Vocabulary

    /// Number of token ids (50,257 for GPT-2).
    public var vocabularySize: Int { model.tokenCount }

    /// The byte-level token strings in id order, as loaded (for embedding in a .g2w file).
    public var vocabularyInIDOrder: [String] { model.vocabulary }

    /// The merges in rank order as `"left right"` strings, as loaded (for embedding in a .g2w file).
    public var mergeStrings: [String] { model.mergeStrings }

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
        id >= 0 && id < model.tokenCount ? model.vocabulary[id] : nil
    }

    /// The id of a byte-level token string (e.g. `"Ġthe"`), or nil.
    public func id(forToken token: String) -> Int? {
        guard let bytes = ByteLevel.bytes(forString: token), let id = model.tokenMap.find(bytes) else { return nil }
        return Int(id)
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

// MARK: - File helpers

private func readFile(_ url: URL) throws -> Data {
    do {
        return try Data(contentsOf: url)
    } catch {
        throw TokenizerError.unreadableFile(path: url.path, reason: (error as NSError).localizedDescription)
    }
}

/// Turns the members of a `{token: id}` object into the token strings in id order.
private func orderedVocabulary(_ members: [JSONMember], bytes: UnsafeBufferPointer<UInt8>, source: String) throws -> [String] {
    func at(_ member: JSONMember) -> String {
        let (line, column) = JSONReader.lineAndColumn(bytes, member.offset)
        return "line \(line), column \(column)"
    }
    let count = members.count
    var vocabulary = [String?](repeating: nil, count: count)
    var owner = [Int](repeating: -1, count: count)
    for (k, member) in members.enumerated() {
        guard case .integer(let id) = member.value else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(at(member)): token \(quoted(member.key)) has \(member.value.typeName) as id, expected an integer")
        }
        guard id >= 0 && id < count else {
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(at(member)): token \(quoted(member.key)) has id \(id), outside 0..<\(count) (ids must be 0...count-1 without gaps)")
        }
        if owner[id] >= 0 {
            let first = members[owner[id]]
            if first.key == member.key {
                throw TokenizerError.invalidVocabulary(source: source, reason: "\(at(member)): duplicate token \(quoted(member.key)) (first at \(at(first)))")
            }
            throw TokenizerError.invalidVocabulary(source: source, reason: "\(at(member)): tokens \(quoted(first.key)) (\(at(first))) and \(quoted(member.key)) both have id \(id)")
        }
        owner[id] = k
        vocabulary[id] = member.key
    }
    // With `count` members, distinct ids in 0..<count, there are no gaps; duplicate keys with
    // different ids are reported by the model as duplicate tokens.
    return vocabulary.map { $0! }
}

/// The merge lines of a vocab.bpe / merges.txt file, with their 1-based line numbers.
private func mergeLines(_ data: Data, source: String) throws -> ([String], [Int]) {
    guard let text = String(data: data, encoding: .utf8) else {
        throw TokenizerError.invalidVocabulary(source: source, reason: "not valid UTF-8")
    }
    var lines: [String] = []
    var numbers: [Int] = []
    lines.reserveCapacity(50_001)
    numbers.reserveCapacity(50_001)
    var lineNumber = 0
    var pendingBlank: [Int] = []
    for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNumber += 1
        var line = raw
        if line.hasSuffix("\r") { line = line.dropLast() }
        if lineNumber == 1 && line.hasPrefix("#version") { continue }
        if line.isEmpty { pendingBlank.append(lineNumber); continue }
        if let blank = pendingBlank.first {
            throw TokenizerError.malformedMerge(location: "\(source) line \(blank)", text: "", reason: "empty line")
        }
        lines.append(String(line))
        numbers.append(lineNumber)
    }
    return (lines, numbers)
}
