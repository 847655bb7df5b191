import CG2W
import Foundation
import G2WFormat
import G2WTokenizer

/// A weight matrix used in place from the mapped file: `rows x cols`, row-major, [out, in].
public struct WeightMatrix: @unchecked Sendable {
    /// The first byte (quants then scales for the block types). Inside the package only: the
    /// weights are read through the model, never written.
    package let base: UnsafeRawPointer
    /// Element type as stored (f32, f16 or a quantized block type).
    public let dtype: G2WDType
    /// Output features: the number of rows.
    public let rows: Int
    /// Input features: the elements of a row.
    public let cols: Int

    package init(base: UnsafeRawPointer, dtype: G2WDType, rows: Int, cols: Int) {
        self.base = base; self.dtype = dtype; self.rows = rows; self.cols = cols
    }

    /// Bytes of the matrix (scales included).
    public var byteCount: Int { Int(dtype.byteCount(elements: UInt64(rows * cols))!) }

    /// Row `r` converted to Float (embedding lookups; dequantized for quantized types).
    func copyRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        dtype.traits.pointee.dequantize(base, rows, cols, r, r + 1, dst)
    }

    /// Row `r` as Floats. For the reference path only.
    func row(_ r: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: cols) { buffer, n in copyRow(r, into: buffer.baseAddress!); n = cols }
    }
}

/// A GPT-2 model opened from a `.g2w` file. Weights are zero-copy views into the read-only
/// mapping: opening costs O(header) and copies no weight data.
///
/// ```swift
/// let model = try GPT2Model(path: "gpt2.g2w")
/// let ids = try model.encode("Hello, world")
/// let logits = try model.logits(for: ids)          // last position, vocab_size values
/// ```
public final class GPT2Model: @unchecked Sendable {
    /// The mapped `.g2w` file the weights are views into; kept open while the model lives.
    public let file: G2WFile
    /// The hyperparameters read from the file's `gpt2.*` metadata.
    public let configuration: GPT2Configuration
    /// The tokenizer embedded in the file: nil if the file has none; an error if it has a
    /// malformed one (spec 12.2). Built on first use (about 30 ms for GPT-2's 50,257 tokens), so
    /// opening a model stays O(header) and token-id workloads never pay for it.
    public var tokenizer: GPT2Tokenizer? {
        get throws { hasTokenizer ? try requireTokenizer() : nil }
    }
    /// Whether the file embeds a tokenizer.
    public let hasTokenizer: Bool
    private let tokenizerLock = NSLock()
    private var tokenizerCache: Result<GPT2Tokenizer, Error>?
    /// The weights: views into the read-only mapping.
    public let parameters: GPT2Parameters
    /// Whether the file has a separate LM head (`lm_head.weight`) rather than one tied to `wte`.
    public var hasSeparateHead: Bool { parameters.hasSeparateHead }

    /// Opens `path`, validates it as a `.g2w` file and as a GPT-2 model (every tensor present
    /// with the shape the hyperparameters imply). The embedded tokenizer is built on first use.
    public convenience init(path: String) throws {
        try self.init(file: G2WFile(path: path))
    }

    /// A model over an already opened file, validated as ``init(path:)`` does.
    /// - Throws: ``ModelError`` if the metadata or a tensor is missing or wrong, or the
    ///   tokenizer keys are present with the wrong types.
    public init(file: G2WFile) throws {
        self.file = file
        let c = try GPT2Configuration(metadata: file.metadata)
        configuration = c
        parameters = try GPT2Parameters(configuration: c, untiedHead: file.info(named: GPT2Tensors.lmHead) != nil) { name, shape in
            guard let t = file.tensor(named: name) else { throw ModelError.missingTensor(name) }
            guard t.shape == shape else { throw ModelError.wrongShape(name: name, expected: shape, found: t.shape) }
            return (t.baseAddress, t.dtype)
        }
        // Check the tokenizer keys' presence and types now; build it lazily.
        hasTokenizer = file.metadata["tokenizer.vocab"] != nil
        if hasTokenizer {
            for key in ["tokenizer.vocab", "tokenizer.merges"] {
                guard let v = file.metadata[key] else { throw ModelError.missingMetadata(key) }
                guard v.stringArrayValue != nil else { throw ModelError.invalidMetadata(key, "expected string[], found \(v.typeName)") }
            }
        }
    }

    static func embeddedTokenizer(_ m: G2WMetadata, vocabularySize: Int) throws -> GPT2Tokenizer {
        guard let vocab = m["tokenizer.vocab"] else { throw ModelError.missingMetadata("tokenizer.vocab") }
        guard let v = vocab.stringArrayValue else { throw ModelError.invalidMetadata("tokenizer.vocab", "expected string[], found \(vocab.typeName)") }
        guard let mergesValue = m["tokenizer.merges"] else { throw ModelError.missingMetadata("tokenizer.merges") }
        guard let merges = mergesValue.stringArrayValue else { throw ModelError.invalidMetadata("tokenizer.merges", "expected string[], found \(mergesValue.typeName)") }
        let t: GPT2Tokenizer
        do { t = try GPT2Tokenizer(vocabularyUTF8: v.utf8, vocabularyEnds: v.ends, mergesUTF8: merges.utf8, mergesEnds: merges.ends) } catch { throw ModelError.invalidMetadata("tokenizer.vocab", "\(error)") }
        guard t.vocabularySize <= vocabularySize else {
            throw ModelError.invalidMetadata("tokenizer.vocab", "has \(t.vocabularySize) tokens, more than vocab_size \(vocabularySize)")
        }
        return t
    }

    /// Total bytes of weights a decoding step reads (all matrices + the LM head; one row of each
    /// embedding), for bandwidth figures.
    public var weightBytesPerToken: Int {
        var n = 0
        for l in parameters.layers { for m in [l.attention, l.projection, l.feedForward, l.feedForwardOut] { n += m.byteCount } }
        n += parameters.head.byteCount
        return n
    }

    /// Element type of the layers' weight matrices (of the embeddings if there are no layers).
    public var weightDType: G2WDType { parameters.layers.first?.feedForward.dtype ?? parameters.tokenEmbedding.dtype }

    /// The element types in words: "f16", or "q4_0 (wte q8_0)" when the embeddings / head differ.
    public var weightTypesDescription: String {
        let head = parameters.head.dtype, layers = weightDType
        let name = hasSeparateHead ? "lm_head" : "wte"
        return head == layers ? "\(layers)" : "\(layers) (\(name) \(head))"
    }

    /// The embedded tokenizer (built on first use), or an error saying the file has none or why
    /// it is invalid.
    public func requireTokenizer() throws -> GPT2Tokenizer {
        guard hasTokenizer else {
            throw ModelError.noTokenizer("\(file.path) has no embedded tokenizer: give token ids, or re-convert with vocab.json + merges.txt beside the model")
        }
        tokenizerLock.lock()
        defer { tokenizerLock.unlock() }
        if tokenizerCache == nil {
            tokenizerCache = Result { try Self.embeddedTokenizer(file.metadata, vocabularySize: configuration.vocabularySize) }
        }
        return try tokenizerCache!.get()
    }

    /// Encodes text with the embedded tokenizer. Special tokens written in the text
    /// (`<|endoftext|>`) are plain text unless `allowSpecialTokens` (then they are their ids).
    public func encode(_ text: String, allowSpecialTokens: Bool = false) throws -> [Int] {
        try requireTokenizer().encode(text, allowSpecialTokens: allowSpecialTokens)
    }

    /// Decodes token ids to text with the embedded tokenizer (invalid UTF-8 becomes U+FFFD, as
    /// tiktoken's `decode` with `errors="replace"`).
    public func decode(_ ids: [Int]) throws -> String {
        try validate(tokens: ids, checkContext: false)
        return try requireTokenizer().decodeText(ids)
    }

    /// Checks ids are in the vocabulary and (unless `checkContext` is false) fit the context.
    public func validate(tokens: [Int], checkContext: Bool = true) throws {
        for t in tokens where t < 0 || t >= configuration.vocabularySize {
            throw ModelError.tokenOutOfRange(id: t, vocabularySize: configuration.vocabularySize)
        }
        guard !checkContext || tokens.count <= configuration.contextLength else {
            throw ModelError.contextOverflow(needed: tokens.count, contextLength: configuration.contextLength)
        }
    }

    /// Logits at the last position of `tokens` (one batched pass; no cache kept).
    public func logits(for tokens: [Int], threads: Int? = nil) throws -> [Float] {
        guard !tokens.isEmpty else { throw ModelError.emptyInput("no tokens to compute logits for") }
        let s = try GPT2Session(model: self, threads: threads)
        return try s.append(tokens)
    }

    /// Logits at every position of `tokens`: `tokens.count` rows of `vocab_size`.
    public func allLogits(for tokens: [Int], threads: Int? = nil) throws -> [[Float]] {
        guard !tokens.isEmpty else { throw ModelError.emptyInput("no tokens to compute logits for") }
        let s = try GPT2Session(model: self, threads: threads)
        let flat = try s.append(tokens, allPositions: true)
        let v = configuration.vocabularySize
        return (0..<tokens.count).map { Array(flat[($0 * v)..<(($0 + 1) * v)]) }
    }
}
