import Foundation
import G2WFormat
import G2WTokenizer

/// What to generate and when to stop.
public struct GenerationOptions: Sendable {
    /// New tokens to generate at most. nil: up to 128, fewer if the context is shorter
    /// (then the prompt plus the tokens never exceed n_ctx). A value that cannot fit is an error
    /// raised before any work (``GenerationError/promptTooLong(promptTokens:maxTokens:contextLength:)``).
    public var maxTokens: Int?
    public var sampling = SamplingOptions()
    /// Stop when the model produces `<|endoftext|>` (not printed). Default true.
    public var stopAtEndOfText = true
    /// Stop when the generated text contains one of these (the stop string is not printed).
    public var stopStrings: [String] = []
    /// Worker threads (default: all cores).
    public var threads: Int?
    /// Element type of the KV cache: `.f32` (default) or `.f16`.
    public var kvType: G2WDType = .f32

    public init() {}

    public static let defaultMaxTokens = 128

    /// The number of tokens that will be generated at most for a prompt of `promptCount` tokens.
    public func tokenBudget(promptCount: Int, contextLength: Int) throws -> Int {
        guard promptCount > 0 else { throw GenerationError.emptyPrompt }
        let room = contextLength - promptCount
        if let n = maxTokens {
            guard n >= 0 else { throw GenerationError.invalidOption("max tokens must be >= 0, is \(n)") }
            guard n <= room else { throw GenerationError.promptTooLong(promptTokens: promptCount, maxTokens: n, contextLength: contextLength) }
            return n
        }
        guard room > 0 else { throw GenerationError.promptTooLong(promptTokens: promptCount, maxTokens: 1, contextLength: contextLength) }
        return min(Self.defaultMaxTokens, room)
    }
}

/// Why generation ended.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    case maxTokens
    case endOfText
    case stopString(String)
    case cancelled

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
    public var promptTokens: [Int]
    /// Generated token ids (without a final `<|endoftext|>`).
    public var tokens: [Int]
    /// Generated text (empty without a tokenizer).
    public var text: String
    public var stopReason: StopReason
    public var promptSeconds: Double
    public var generationSeconds: Double
    /// Tokens run through the model after the prompt (the last sampled token is not evaluated).
    public var evaluatedTokens: Int
}

/// One step of a generation: the token and the text it completes (may be empty while a UTF-8
/// character or a possible stop string is still pending).
public struct GeneratedPiece: Sendable {
    public var token: Int
    public var text: String
}

extension GPT2Model {
    /// Generates a continuation of `prompt` (token ids), calling `onPiece` as each token is chosen.
    /// Return `false` from `onPiece` to stop early. Text is streamed UTF-8-safe, and held back while
    /// it could be the start of a stop string.
    @discardableResult
    public func generate(prompt: [Int], options: GenerationOptions = GenerationOptions(),
                         onPiece: (GeneratedPiece) -> Bool = { _ in true }) throws -> GenerationResult {
        try options.sampling.validate()
        try validate(tokens: prompt)
        let budget = try options.tokenBudget(promptCount: prompt.count, contextLength: configuration.contextLength)
        // A file that embeds a tokenizer must embed a valid one (spec 12.2): a malformed one is an
        // error here, whatever the input, rather than silently treated as absent.
        let tokenizer = hasTokenizer ? try requireTokenizer() : nil
        if !options.stopStrings.isEmpty && tokenizer == nil {
            throw GenerationError.invalidOption("stop strings need a tokenizer; this model file has none")
        }
        for s in options.stopStrings where s.isEmpty { throw GenerationError.invalidOption("a stop string may not be empty") }
        let session = try GPT2Session(model: self, threads: options.threads, kvType: options.kvType)
        var sampler = Sampler(options: options.sampling)
        var decoder = tokenizer?.makeStreamingDecoder()
        let eos = tokenizer?.endOfTextID ?? (configuration.vocabularySize == 50257 ? 50256 : nil)
        var history = prompt
        var generated: [Int] = []
        var text = ""
        var held = ""
        var reason = StopReason.maxTokens
        var evaluated = 0

        let t0 = Date()
        var logits = budget > 0 ? try session.append(prompt) : []
        let promptSeconds = Date().timeIntervalSince(t0)
        let t1 = Date()
        // A tokenizer may have fewer entries than vocab_size (spec 12.2): ids it cannot decode are
        // never sampled when text is produced (their logits are masked), so generation never
        // stops halfway on an id the output cannot show.
        let decodable = tokenizer.map { min($0.vocabularySize, configuration.vocabularySize) } ?? configuration.vocabularySize
        loop: for step in 0..<budget {
            if decodable < logits.count {
                logits.withUnsafeMutableBufferPointer { l in for i in decodable..<l.count { l[i] = -.infinity } }
            }
            let next = sampler.sample(logits: logits, history: history)
            if options.stopAtEndOfText, next == eos { reason = .endOfText; break }
            generated.append(next)
            history.append(next)
            var piece = ""
            if decoder != nil {
                held += try decoder!.append(next)
                if step == budget - 1 { held += decoder!.finish() }
                // A complete stop string: emit what precedes it and stop.
                if let (range, s) = Self.firstStop(in: held, options.stopStrings) {
                    piece = String(held[..<range.lowerBound])
                    text += piece
                    _ = onPiece(GeneratedPiece(token: next, text: piece))
                    reason = .stopString(s)
                    break loop
                }
                let keep = Self.pendingStopPrefix(held, options.stopStrings)
                piece = String(held.dropLast(keep))
                held = String(held.suffix(keep))
                text += piece
            }
            if !onPiece(GeneratedPiece(token: next, text: piece)) { reason = .cancelled; break }
            if step < budget - 1 {
                logits = try session.append([next])
                evaluated += 1
            }
        }
        if case .stopString = reason {} else if !held.isEmpty {
            text += held
            _ = onPiece(GeneratedPiece(token: generated.last ?? -1, text: held))
        }
        if reason != .maxTokens, var d = decoder {
            let rest = d.finish()
            if !rest.isEmpty, case .stopString = reason {} else if !rest.isEmpty { text += rest; _ = onPiece(GeneratedPiece(token: -1, text: rest)) }
        }
        return GenerationResult(promptTokens: prompt, tokens: generated, text: text, stopReason: reason,
                                promptSeconds: promptSeconds, generationSeconds: Date().timeIntervalSince(t1), evaluatedTokens: evaluated)
    }

    /// Generates a continuation of `prompt` text as an asynchronous sequence of pieces.
    ///
    /// ```swift
    /// for try await piece in model.pieces(for: "ROMEO:", options: options) { print(piece.text, terminator: "") }
    /// ```
    public func pieces(for prompt: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<GeneratedPiece, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached { [self] in
                do {
                    let ids = try self.encode(prompt)
                    try self.generate(prompt: ids, options: options) { piece in
                        continuation.yield(piece)
                        return !Task.isCancelled
                    }
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
