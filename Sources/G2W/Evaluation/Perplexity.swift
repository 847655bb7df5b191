import CG2W
import Foundation

/// How perplexity windows are laid over a token stream.
public enum PerplexityMethod: Sendable, Equatable, CustomStringConvertible {
    /// llama.cpp's `llama-perplexity`: consecutive, non-overlapping windows of `context` tokens
    /// (a trailing partial window is dropped); in each, only the second half is scored: the logits
    /// at positions `context/2 ..< context-1` predict the next token.
    case chunks(context: Int)
    /// Hugging Face's sliding window (the "Perplexity of fixed-length models" guide): windows of up
    /// to `context` tokens starting every `stride` tokens; each window scores only the tokens not
    /// scored by the previous one, so every token but the first is scored once, with up to
    /// `context - 1` tokens of left context.
    case sliding(context: Int, stride: Int)

    /// In words: "chunks, ctx 512" or "sliding, ctx 1024, stride 512".
    public var description: String {
        switch self {
        case let .chunks(c): return "chunks, ctx \(c)"
        case let .sliding(c, s): return "sliding, ctx \(c), stride \(s)"
        }
    }

    /// The windows: token range, and the first position of the window whose logits are scored
    /// (logits at positions first..<end-1 of the window predict the following token).
    func windows(tokenCount n: Int) -> [(range: Range<Int>, firstScored: Int)] {
        switch self {
        case let .chunks(c):
            return (0..<(n / c)).map { k in (k * c..<(k + 1) * c, c / 2) }
        case let .sliding(c, s):
            var out: [(Range<Int>, Int)] = []
            var prevEnd = 0
            var begin = 0
            while begin < n {
                let end = min(begin + c, n)
                let targets = end - prevEnd           // the last `targets` tokens of the window
                let firstTarget = max(end - begin - targets, 1)  // window index of the first scored token
                out.append((begin..<end, firstTarget - 1))
                prevEnd = end
                if end == n { break }
                begin += s
            }
            return out
        }
    }
}

/// A perplexity figure with llama.cpp's standard error.
public struct PerplexityResult: Sendable {
    /// How the windows were laid over the tokens.
    public var method: PerplexityMethod
    /// Tokens in the input.
    public var tokenCount: Int
    /// Tokens scored (predicted from their left context): the N of the mean and its error.
    public var scoredCount: Int
    /// Windows the tokens were split into.
    public var windowCount: Int
    /// exp(mean negative log-likelihood).
    public var perplexity: Double
    /// perplexity x sd(NLL) / sqrt(N - 1), as llama-perplexity reports it.
    public var standardError: Double
    /// Mean negative log-likelihood of the scored tokens, in nats: ln(``perplexity``).
    public var meanNLL: Double
    /// Wall time of the evaluation, in seconds.
    public var seconds: Double
    /// Tokens run through the model per second.
    public var tokensPerSecond: Double
}

/// Running sums of per-position negative log-likelihoods, added in scoring order, and the
/// statistics llama-perplexity reports from them (shared by perplexity and KL divergence, so both
/// give bit-identical figures for the same model and positions).
struct NLLAccumulator {
    var sum = 0.0, sumSquares = 0.0, count = 0

    mutating func add(_ nll: Double) {
        sum += nll
        sumSquares += nll * nll
        count += 1
    }

    var mean: Double { sum / Double(count) }
    /// Variance of the mean NLL: var / (N - 1) (0 for one position).
    var varianceOfMean: Double {
        let m = mean
        return count > 1 ? max(0, (sumSquares / Double(count) - m * m) / Double(count - 1)) : 0
    }
    /// Standard error of the mean NLL: sd / sqrt(N - 1).
    var standardErrorOfMean: Double { varianceOfMean.squareRoot() }

    func result(method: PerplexityMethod, tokenCount: Int, windowCount: Int, seconds: Double, processed: Int) -> PerplexityResult {
        let m = mean
        let ppl = exp(m)
        return PerplexityResult(method: method, tokenCount: tokenCount, scoredCount: count, windowCount: windowCount, perplexity: ppl,
                                standardError: ppl * standardErrorOfMean, meanNLL: m, seconds: seconds,
                                tokensPerSecond: seconds > 0 ? Double(processed) / seconds : 0)
    }
}

extension PerplexityMethod {
    /// Tokens per window.
    public var context: Int {
        switch self {
        case let .chunks(c): return c
        case let .sliding(c, _): return c
        }
    }
}

extension GPT2Model {
    /// Checks the method and the tokens against this model and returns the windows to evaluate.
    func perplexityWindows(tokens: [Int], method: PerplexityMethod) throws -> [(range: Range<Int>, firstScored: Int)] {
        let nctx = configuration.contextLength
        let context = method.context
        if case let .sliding(c, s) = method {
            guard s >= 1, s <= c else { throw GenerationError.invalidOption("stride must be in 1...\(c) (the context), is \(s)") }
        }
        guard context >= 2 else { throw GenerationError.invalidOption("the perplexity context must be at least 2 tokens, is \(context)") }
        guard context <= nctx else { throw GenerationError.invalidOption("the perplexity context \(context) exceeds the model's n_ctx \(nctx)") }
        for t in tokens where t < 0 || t >= configuration.vocabularySize { throw ModelError.tokenOutOfRange(id: t, vocabularySize: configuration.vocabularySize) }
        guard !tokens.isEmpty else { throw ModelError.emptyInput("the text is empty (no tokens)") }
        if case .chunks = method, tokens.count < context {
            throw ModelError.emptyInput("the text has \(tokens.count) tokens, fewer than one window of \(context) (use a smaller window)")
        }
        guard tokens.count >= 2 else { throw ModelError.emptyInput("the text has \(tokens.count) token; perplexity needs at least 2") }
        return method.windows(tokenCount: tokens.count)
    }

    /// Perplexity of the model on `tokens`, one batched forward pass per window.
    /// - Parameter progress: called after each window with (windows done, total).
    /// - Throws: ``GenerationError/invalidOption(_:)`` for a window shorter than 2 tokens or
    ///   longer than n_ctx, or a stride outside 1...context; ``ModelError`` for token ids outside
    ///   the vocabulary or too few tokens (fewer than 2, or than one window for `.chunks`).
    public func perplexity(tokens: [Int], method: PerplexityMethod, threads: Int? = nil,
                           progress: ((Int, Int) -> Void)? = nil) throws -> PerplexityResult {
        let windows = try perplexityWindows(tokens: tokens, method: method)
        let session = try GPT2Session(model: self, threads: threads)
        let v = configuration.vocabularySize
        var acc = NLLAccumulator()
        var processed = 0
        let start = Date()
        for (i, w) in windows.enumerated() {
            session.reset()
            let window = Array(tokens[w.range])
            let last = window.count - 1
            guard w.firstScored < last else { progress?(i + 1, windows.count); continue }
            // Logits at positions firstScored..<last predict tokens firstScored+1...last.
            let logits = try session.append(Array(window[0..<last]), logitRowsFrom: w.firstScored)
            processed += last
            let rows = last - w.firstScored
            var nlls = [Double](repeating: 0, count: rows)
            logits.withUnsafeBufferPointer { l in
                nlls.withUnsafeMutableBufferPointer { out in
                    let lp = l.baseAddress!, op = out.baseAddress!
                    session.parallel(rows) { range, _ in
                        for row in range {
                            op[row] = Self.negativeLogLikelihood(lp + row * v, v, target: window[w.firstScored + row + 1])
                        }
                    }
                }
            }
            for nll in nlls { acc.add(nll) }
            progress?(i + 1, windows.count)
        }
        let seconds = Date().timeIntervalSince(start)
        guard acc.count > 0 else { throw ModelError.emptyInput("no token could be scored") }
        return acc.result(method: method, tokenCount: tokens.count, windowCount: windows.count, seconds: seconds, processed: processed)
    }

    /// -log softmax(logits)[target], the log-sum-exp accumulated in Double.
    @inline(__always)
    static func negativeLogLikelihood(_ logits: UnsafePointer<Float>, _ v: Int, target: Int) -> Double {
        g2w_logsumexp(logits, v) - Double(logits[target])
    }
}
