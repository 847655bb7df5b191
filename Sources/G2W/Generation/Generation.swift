import Foundation
import G2WFormat
import G2WTokenizer

/// What to generate and when to stop.
public struct GenerationOptions: Sendable {
    /// New tokens to generate at most. nil: up to 128, fewer if the context is shorter
    /// (then the prompt plus the tokens never exceed n_ctx). A value that cannot fit is an error
    /// raised before any work (``GenerationError/promptTooLong(promptTokens:maxTokens:contextLength:)``).
    public var maxTokens: Int?
    /// How each token is chosen (temperature, top-k/p, min-p, repetition penalty, seed).
    public var sampling = SamplingOptions()
    /// Stop when the model produces `<|endoftext|>` (not printed). Default true.
    public var stopAtEndOfText = true
    /// Stop when the generated text contains one of these (the stop string is not printed).
    public var stopStrings: [String] = []
    /// Worker threads (default: all cores).
    public var threads: Int?
    /// Element type of the KV cache: `.f32` (default) or `.f16`.
    public var kvType: G2WDType = .f32
    /// Log-probabilities to report: nil (default) none; 0 the chosen token's; n also the n most
    /// likely tokens at each step (at most ``GenerationState/maxTopLogProbabilities``), in
    /// ``GeneratedPiece/logProbability`` and ``GeneratedPiece/topLogProbabilities``.
    public var logProbabilities: Int?

    /// The defaults: up to 128 tokens, default sampling (random seed), stop at `<|endoftext|>`,
    /// no stop strings, all cores, an f32 KV cache, no log-probabilities.
    public init() {}

    /// New tokens generated when ``maxTokens`` is nil (fewer if the context has less room).
    public static let defaultMaxTokens = 128

    /// The number of tokens that will be generated at most for a prompt of `promptCount` tokens.
    /// - Throws: ``GenerationError/invalidOption(_:)`` if ``maxTokens`` is negative,
    ///   ``GenerationError/promptTooLong(promptTokens:maxTokens:contextLength:)`` if the tokens
    ///   asked for do not fit after the prompt (or, with ``maxTokens`` nil, no token does).
    public func tokenBudget(promptCount: Int, contextLength: Int) throws -> Int {
        let room = contextLength - promptCount
        if let n = maxTokens {
            guard n >= 0 else { throw GenerationError.invalidOption("the number of tokens to generate must be >= 0, is \(n)") }
            guard n <= room else { throw GenerationError.promptTooLong(promptTokens: promptCount, maxTokens: n, contextLength: contextLength) }
            return n
        }
        guard room > 0 else { throw GenerationError.promptTooLong(promptTokens: promptCount, maxTokens: 1, contextLength: contextLength) }
        return min(Self.defaultMaxTokens, room)
    }
}

/// Why generation ended.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    /// The token budget was used up (``GenerationOptions/maxTokens`` or the context's room).
    case maxTokens
    /// The model chose `<|endoftext|>` (with ``GenerationOptions/stopAtEndOfText``).
    case endOfText
    /// The text reached this stop string (``GenerationOptions/stopStrings``).
    case stopString(String)
    /// Ended from outside: `isCancelled`, `cancel()`, a callback returning false, or the
    /// consuming task cancelled.
    case cancelled

    /// In words: "max tokens", "end of text", "stop string \"...\"", "cancelled".
    public var description: String {
        switch self {
        case .maxTokens: return "max tokens"
        case .endOfText: return "end of text"
        case let .stopString(s): return "stop string \(String(reflecting: s))"
        case .cancelled: return "cancelled"
        }
    }
}

/// The outcome of a generation, with llama.cpp-style timings.
public struct GenerationResult: Sendable {
    /// The prompt's token ids as given (empty for a generation started from `<|endoftext|>`).
    public var promptTokens: [Int]
    /// Generated token ids (without a final `<|endoftext|>`).
    public var tokens: [Int]
    /// Generated text (empty without a tokenizer).
    public var text: String
    /// Why the generation ended.
    public var stopReason: StopReason
    /// Seconds spent running the prompt through the model.
    public var promptSeconds: Double
    /// Seconds spent after the prompt: choosing tokens and running them through the model.
    public var generationSeconds: Double
    /// Tokens run through the model after the prompt (the last sampled token is not evaluated).
    public var evaluatedTokens: Int
    /// The seed the sampler used (``SamplingOptions/seed``): set it again to get the same text.
    public var seed: UInt64 = 0
    /// The generated tokens' log-probabilities, when ``GenerationOptions/logProbabilities`` is set.
    public var logProbabilities: [Double] = []
}

/// One step of a generation: the token and the text it completes (may be empty while a UTF-8
/// character or a possible stop string is still pending). Text released at the very end (held
/// back for a stop string that did not come) arrives in a piece whose `token` is -1.
public struct GeneratedPiece: Sendable {
    /// The chosen token's id; -1 for a piece that only releases held-back text.
    public var token: Int
    /// The text this step completes; may be empty (see above).
    public var text: String
    /// The token's log-probability under the model, when ``GenerationOptions/logProbabilities`` is set.
    public var logProbability: Double?
    /// The most likely tokens at this step, most likely first (``GenerationOptions/logProbabilities``).
    public var topLogProbabilities: [TokenLogProbability] = []

    /// A piece from its parts (no log-probabilities by default).
    public init(token: Int, text: String, logProbability: Double? = nil, topLogProbabilities: [TokenLogProbability] = []) {
        self.token = token
        self.text = text
        self.logProbability = logProbability
        self.topLogProbabilities = topLogProbabilities
    }
}

extension GPT2Model {
    /// Generates a continuation of `prompt` (token ids; empty starts from `<|endoftext|>`),
    /// calling `onPiece` as each token is chosen. Return `false` from `onPiece` to stop early.
    /// Text is streamed UTF-8-safe, and held back while it could be the start of a stop string.
    @discardableResult
    public func generate(prompt: [Int], options: GenerationOptions = GenerationOptions(),
                         onPiece: (GeneratedPiece) -> Bool = { _ in true }) throws -> GenerationResult {
        let generator = try GPT2Generator(model: self, prompt: prompt, options: options)
        while let piece = try generator.next() {
            if !onPiece(piece) {
                let rest = generator.cancel()
                if !rest.isEmpty { _ = onPiece(GeneratedPiece(token: -1, text: rest)) }
                break
            }
        }
        return generator.result
    }

    /// Generates a continuation of `prompt` text (encoded with the embedded tokenizer).
    @discardableResult
    public func generate(_ prompt: String, options: GenerationOptions = GenerationOptions(),
                         onPiece: (GeneratedPiece) -> Bool = { _ in true }) throws -> GenerationResult {
        try generate(prompt: encode(prompt), options: options, onPiece: onPiece)
    }

    /// Generates a continuation of `prompt` text as an asynchronous sequence of pieces.
    /// Cancelling the consuming task stops the generation (between prompt chunks, or before the
    /// next token).
    ///
    /// ```swift
    /// for try await piece in model.pieces(for: "ROMEO:", options: options) { print(piece.text, terminator: "") }
    /// ```
    public func pieces(for prompt: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<GeneratedPiece, Error> {
        stream(options: options) { try self.encode(prompt) }
    }

    /// Generates a continuation of `prompt` token ids as an asynchronous sequence of pieces.
    public func pieces(for prompt: [Int], options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<GeneratedPiece, Error> {
        stream(options: options) { prompt }
    }

    private func stream(options: GenerationOptions, prompt: @escaping @Sendable () throws -> [Int]) -> AsyncThrowingStream<GeneratedPiece, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached { [self] in
                do {
                    let generator = try GPT2Generator(model: self, prompt: try prompt(), options: options)
                    generator.isCancelled = { Task.isCancelled }
                    while let piece = try generator.next() { continuation.yield(piece) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    static func firstStop(in text: String, _ stops: [String]) -> (Range<String.Index>, String)? {
        var best: (Range<String.Index>, String)?
        for s in stops {
            if let r = text.range(of: s), best == nil || r.lowerBound < best!.0.lowerBound { best = (r, s) }
        }
        return best
    }

    /// Length (in Characters) of the longest suffix of `text` that is a proper prefix of a stop string.
    static func pendingStopPrefix(_ text: String, _ stops: [String]) -> Int {
        var best = 0
        for s in stops {
            var k = min(s.count - 1, text.count)
            while k > best {
                if s.hasPrefix(text.suffix(k)) { best = k; break }
                k -= 1
            }
        }
        return best
    }
}
