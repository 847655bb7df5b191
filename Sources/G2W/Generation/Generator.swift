import CG2W
import Foundation
import G2WFormat
import G2WTokenizer

/// A token with its log-probability under the model.
public struct TokenLogProbability: Sendable, Equatable {
    /// The token's id.
    public var token: Int
    /// Natural log of the token's probability: the log-softmax of the model's logits, before the
    /// sampling transforms (repetition penalty, temperature, top-k/p, min-p), as OpenAI's
    /// `logprobs` and transformers' `compute_transition_scores(normalize_logits=True)` report it.
    public var logProbability: Double

    /// A token id with its log-probability.
    public init(token: Int, logProbability: Double) {
        self.token = token
        self.logProbability = logProbability
    }
}

/// The sampling, stop conditions, streamed text and log-probabilities of one generation, fed the
/// logits of each step: the part of generation that does not run the model. ``GPT2Generator``
/// drives one with a session; a server can drive many with one batched forward pass.
///
/// ```swift
/// var state = try GenerationState(model: model, prompt: ids, options: options)
/// var logits = try session.append(state.input)
/// while true {
///     if let piece = try state.accept(logits: logits) { print(piece.text, terminator: "") }
///     guard let next = state.nextInput else { break }
///     logits = try session.append([next])
/// }
/// ```
public struct GenerationState {
    /// The prompt as given.
    public let prompt: [Int]
    /// What the model is run on first: the prompt, or `<|endoftext|>` alone for an empty prompt
    /// (as transformers and llama.cpp start an unconditional generation).
    public let input: [Int]
    /// The options the generation runs with (checked by the initializer).
    public let options: GenerationOptions
    /// New tokens this generation may produce at most.
    public let budget: Int
    /// Tokens generated so far (without a final `<|endoftext|>`).
    public private(set) var tokens: [Int] = []
    /// Text produced so far (what the pieces carried).
    public private(set) var text = ""
    /// Log-probabilities of the generated tokens (when ``GenerationOptions/logProbabilities`` is set).
    public private(set) var logProbabilities: [Double] = []
    /// nil while the generation runs.
    public private(set) var stopReason: StopReason?

    var sampler: Sampler
    var decoder: StreamingDecoder?
    let eos: Int?
    var history: [Int]
    var held = ""
    /// Ids the output can show: the tokenizer's size when there is one (spec 12.2: ids without
    /// text are never sampled when text is produced, so generation never stops on an id the
    /// output cannot show).
    let decodable: Int
    var scratch: [Float] = []

    /// A generation about to choose its first token.
    /// - Parameters:
    ///   - prompt: token ids; empty starts from `<|endoftext|>` (an error for a model without one).
    ///   - context: tokens already in the session before `prompt` (they count against the
    ///     context and the repetition penalty sees them).
    /// - Throws: ``GenerationError`` for invalid options (sampling ranges, log-probabilities
    ///   outside 0...100, empty stop strings, stop strings without a tokenizer), an empty prompt
    ///   with no `<|endoftext|>`, or no room in the context; ``ModelError`` for token ids outside
    ///   the vocabulary or a malformed embedded tokenizer.
    public init(model: GPT2Model, prompt: [Int], options: GenerationOptions = GenerationOptions(), context: [Int] = []) throws {
        try options.sampling.validate()
        if let n = options.logProbabilities, n < 0 || n > Self.maxTopLogProbabilities {
            throw GenerationError.invalidOption("the number of top log-probabilities must be in 0...\(Self.maxTopLogProbabilities), is \(n)")
        }
        // A file that embeds a tokenizer must embed a valid one (spec 12.2): a malformed one is an
        // error here, whatever the input, rather than silently treated as absent.
        let tokenizer = try model.tokenizer
        let c = model.configuration
        eos = tokenizer?.endOfTextID ?? (c.vocabularySize == 50257 ? 50256 : nil)
        if prompt.isEmpty && context.isEmpty {
            guard let eos else { throw GenerationError.emptyPrompt }
            input = [eos]
        } else {
            input = prompt
        }
        try model.validate(tokens: context + input)
        self.prompt = prompt
        budget = try options.tokenBudget(promptCount: context.count + input.count, contextLength: c.contextLength)
        if !options.stopStrings.isEmpty && tokenizer == nil {
            throw GenerationError.invalidOption("stop strings need a tokenizer; this model file has none")
        }
        for s in options.stopStrings where s.isEmpty { throw GenerationError.invalidOption("a stop string may not be empty") }
        self.options = options
        sampler = Sampler(options: options.sampling)
        decoder = tokenizer?.makeStreamingDecoder()
        history = context + input
        decodable = tokenizer.map { min($0.vocabularySize, c.vocabularySize) } ?? c.vocabularySize
        if budget == 0 { stopReason = .maxTokens }
    }

    /// The most alternatives ``GenerationOptions/logProbabilities`` may ask for.
    public static let maxTopLogProbabilities = 100

    /// The token to run through the model next (the last one chosen), or nil once generation
    /// has ended.
    public var nextInput: Int? { stopReason == nil ? (tokens.last ?? input.last) : nil }

    /// Chooses the next token from `logits` (the last position's, `vocab_size` floats) and
    /// returns the piece it makes: its token, the text it completes, its log-probability. The
    /// text may be empty (a UTF-8 character or a possible stop string is pending) and includes,
    /// when the generation ends here, what was held back. Returns nil when the model chose
    /// `<|endoftext|>` (it ends the generation) and no text was pending, or once stopped.
    public mutating func accept(logits: [Float]) throws -> GeneratedPiece? {
        guard stopReason == nil else { return nil }
        var logits = logits
        if decodable < logits.count {
            logits.withUnsafeMutableBufferPointer { l in for i in decodable..<l.count { l[i] = -.infinity } }
        }
        let next = sampler.sample(logits: logits, history: history)
        var logProbability: Double?
        var top: [TokenLogProbability] = []
        if let n = options.logProbabilities {
            (logProbability, top) = Self.logProbabilities(logits, chosen: next, top: n)
        }
        if options.stopAtEndOfText, next == eos {
            stopReason = .endOfText
            let rest = flush()
            return rest.isEmpty ? nil : GeneratedPiece(token: -1, text: rest)
        }
        tokens.append(next)
        history.append(next)
        if let logProbability { logProbabilities.append(logProbability) }
        var piece = GeneratedPiece(token: next, text: "", logProbability: logProbability, topLogProbabilities: top)
        if decoder != nil {
            held += try decoder!.append(next)
            if tokens.count == budget { held += decoder!.finish() }
            // A complete stop string: emit what precedes it and stop.
            if let (range, s) = GPT2Model.firstStop(in: held, options.stopStrings) {
                piece.text = String(held[..<range.lowerBound])
                text += piece.text
                held = ""
                stopReason = .stopString(s)
                return piece
            }
            let keep = GPT2Model.pendingStopPrefix(held, options.stopStrings)
            piece.text = String(held.dropLast(keep))
            held = String(held.suffix(keep))
            text += piece.text
        }
        if tokens.count == budget {
            stopReason = .maxTokens
            piece.text += flush()
        }
        return piece
    }

    /// Ends the generation early (``StopReason/cancelled``) and returns the text that was held
    /// back (possibly empty).
    public mutating func cancel() -> String {
        guard stopReason == nil else { return "" }
        stopReason = .cancelled
        return flush()
    }

    /// The held-back text and the decoder's pending bytes (as U+FFFD), added to `text`.
    mutating func flush() -> String {
        var rest = held
        held = ""
        if var d = decoder {
            rest += d.finish()
            decoder = d
        }
        text += rest
        return rest
    }

    /// The log-softmax of `logits` at `chosen`, and the `top` most likely tokens with theirs,
    /// most likely first (ties: lower id first). Entries of -infinity (masked ids) have
    /// probability 0. For prompt log-probabilities (`echo`) and the generation's own.
    public static func logProbabilities(_ logits: [Float], chosen: Int, top: Int) -> (Double, [TokenLogProbability]) {
        let lse = logits.withUnsafeBufferPointer { g2w_logsumexp($0.baseAddress!, $0.count) }
        var best: [TokenLogProbability] = []
        if top > 0 {
            let ranked = Sampler.largest(top, of: Array(logits.enumerated()), by: { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) })
            best = ranked.map { TokenLogProbability(token: $0.offset, logProbability: Double($0.element) - lse) }
        }
        return (Double(logits[chosen]) - lse, best)
    }
}

/// Generation step by step over a session: the prompt is run (in chunks, cancellable between
/// them), then each ``next()`` chooses a token, returns its piece and runs it through the model.
/// The command line, ``GPT2Model/pieces(for:options:)`` and ``GPT2Model/generate(prompt:options:onPiece:)``
/// all drive one.
///
/// ```swift
/// let generator = try GPT2Generator(model: model, prompt: try model.encode("ROMEO:"))
/// while let piece = try generator.next() { print(piece.text, terminator: "") }
/// print(generator.state.stopReason!)
/// ```
///
/// Given a `session`, the generation continues the tokens already in it (the KV cache is reused:
/// a conversation costs only its new tokens); afterwards the session holds the prompt and the
/// generated tokens but the last.
public final class GPT2Generator {
    /// The model generating.
    public let model: GPT2Model
    /// The session the tokens run through: the one given, or a new one.
    public let session: GPT2Session
    /// The generation's progress: tokens and text so far, log-probabilities, ``GenerationState/stopReason``.
    public private(set) var state: GenerationState
    /// Checked between prompt chunks and before each step: returning true ends the generation
    /// with ``StopReason/cancelled``.
    public var isCancelled: () -> Bool = { false }
    /// Seconds spent running the prompt, and generating after it.
    public private(set) var promptSeconds = 0.0, generationSeconds = 0.0
    /// Tokens run through the model after the prompt.
    public private(set) var evaluatedTokens = 0
    var logits: [Float]?
    var pending: [Int]

    /// The default ``promptChunk``: 512 tokens, llama.cpp's default physical batch.
    public static let defaultPromptChunk = 512
    /// Prompts longer than this are run in chunks of this many tokens, so a cancellation takes
    /// effect between them.
    public var promptChunk = defaultPromptChunk {
        didSet { promptChunk = max(1, promptChunk) }
    }

    /// A generation of `prompt` (token ids; empty starts from `<|endoftext|>`, or, given a
    /// session holding tokens, from its last logits). Nothing runs through the model before the
    /// first ``next()``.
    /// - Parameter session: a session of `model` to continue; nil makes a new one with
    ///   `options.threads` and `options.kvType`.
    /// - Throws: what ``GenerationState/init(model:prompt:options:context:)`` throws;
    ///   ``GenerationError/invalidOption(_:)`` for a session of another model,
    ///   ``GenerationError/emptyPrompt`` for an empty prompt on a session without logits,
    ///   ``AllocationError`` if a new session cannot be allocated.
    public init(model: GPT2Model, prompt: [Int], options: GenerationOptions = GenerationOptions(), session: GPT2Session? = nil) throws {
        self.model = model
        let s = try session ?? GPT2Session(model: model, threads: options.threads, kvType: options.kvType)
        guard s.model === model else { throw GenerationError.invalidOption("the session belongs to another model") }
        self.session = s
        state = try GenerationState(model: model, prompt: prompt, options: options, context: s.tokens)
        if state.input.isEmpty {  // continuing a session with no new tokens: its last logits
            guard let l = s.lastLogits else { throw GenerationError.emptyPrompt }
            logits = l
        }
        pending = state.input
    }

    /// The next piece, or nil when the generation has ended (see `state.stopReason`).
    public func next() throws -> GeneratedPiece? {
        if state.stopReason != nil { return nil }
        if isCancelled() { return cancelled() }
        if logits == nil {
            let t0 = DispatchTime.now().uptimeNanoseconds
            defer { promptSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
            while pending.count > promptChunk {
                _ = try session.append(Array(pending.prefix(promptChunk)))
                pending.removeFirst(promptChunk)
                if isCancelled() { return cancelled() }
            }
            logits = try session.append(pending)
            pending = []
        }
        let t1 = DispatchTime.now().uptimeNanoseconds
        defer { generationSeconds += Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9 }
        let piece = try state.accept(logits: logits!)
        if let next = state.nextInput {
            logits = try session.append([next])
            evaluatedTokens += 1
        }
        return piece
    }

    func cancelled() -> GeneratedPiece? {
        let rest = state.cancel()
        return rest.isEmpty ? nil : GeneratedPiece(token: -1, text: rest)
    }

    /// Ends the generation now; returns the text that was held back (possibly empty).
    @discardableResult
    public func cancel() -> String { state.cancel() }

    /// The outcome so far (final once ``next()`` returned nil).
    public var result: GenerationResult {
        GenerationResult(promptTokens: state.prompt, tokens: state.tokens, text: state.text,
                         stopReason: state.stopReason ?? .cancelled, promptSeconds: promptSeconds,
                         generationSeconds: generationSeconds, evaluatedTokens: evaluatedTokens,
                         seed: state.options.sampling.seed, logProbabilities: state.logProbabilities)
    }
}
