import CG2W
import Foundation

/// How the next token is chosen from the logits.
///
/// Applied in this order (as llama.cpp and Hugging Face do): repetition penalty, then greedy
/// argmax if `temperature == 0`, else temperature, top-k, top-p (nucleus), min-p, and a draw.
public struct SamplingOptions: Sendable, Equatable {
    /// 0 means greedy (argmax). Default 0.8.
    public var temperature: Double = 0.8
    /// Keep only the k most likely tokens; 0 disables. Default 40.
    public var topK: Int = 40
    /// Keep the smallest set of tokens whose probability sum reaches p; 1 disables. Default 0.95.
    public var topP: Double = 0.95
    /// Drop tokens whose probability is below min_p x the top probability; 0 disables. Default 0.05.
    public var minP: Double = 0.05
    /// Divide positive (multiply negative) logits of tokens already in the context; 1 disables.
    public var repetitionPenalty: Double = 1.0
    /// How many recent tokens the repetition penalty looks at; 0 means the whole context.
    public var repetitionWindow: Int = 64
    /// Random seed; the same seed, model, prompt and options give the same output. Defaults to
    /// a random value drawn when the options are made (each generation differs, as on the
    /// command line); read it back (or from ``GenerationResult/seed``) to reproduce a result.
    public var seed: UInt64 = UInt64.random(in: 0...UInt64(UInt32.max))

    /// The defaults above, with a fresh random seed (in 0...2^32 - 1).
    public init() {}

    /// Greedy decoding (temperature 0).
    public static var greedy: SamplingOptions {
        var s = SamplingOptions()
        s.temperature = 0
        return s
    }

    /// Checks ranges; throws a message naming the option.
    /// - Throws: ``GenerationError/invalidOption(_:)`` unless temperature >= 0, top-k >= 0,
    ///   top-p in (0, 1], min-p in [0, 1], repetition penalty > 0 and repetition window >= 0
    ///   (and the Doubles finite).
    public func validate() throws {
        func bad(_ s: String) -> GenerationError { .invalidOption(s) }
        guard temperature.isFinite, temperature >= 0 else { throw bad("temperature must be >= 0, is \(temperature)") }
        guard topK >= 0 else { throw bad("top-k must be >= 0, is \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw bad("top-p must be in (0, 1], is \(topP)") }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw bad("min-p must be in [0, 1], is \(minP)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else { throw bad("repetition penalty must be > 0, is \(repetitionPenalty)") }
        guard repetitionWindow >= 0 else { throw bad("repetition window must be >= 0") }
    }
}

/// A small, fast, reproducible generator (xoshiro256**, seeded with SplitMix64).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose sequence is fixed by `seed` (any value, 0 included).
    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Chooses tokens from logits according to ``SamplingOptions``.
public struct Sampler: Sendable {
    /// The options it samples with (its random sequence starts from their `seed`).
    public let options: SamplingOptions
    var rng: SeededGenerator
    // Scratch reused across calls (no allocation per token after the first).
    var candidates: [(id: Int, logit: Float)] = []

    /// A sampler for `options`, its generator seeded with `options.seed`. The options are not
    /// checked here (see ``SamplingOptions/validate()``).
    public init(options: SamplingOptions) {
        self.options = options
        rng = SeededGenerator(seed: options.seed)
    }

    /// Picks the next token. `history` is the context so far (for the repetition penalty).
    public mutating func sample(logits input: [Float], history: [Int]) -> Int {
        var logits = input
        let o = options
        if o.repetitionPenalty != 1 {
            let window = o.repetitionWindow == 0 ? history[...] : history.suffix(o.repetitionWindow)
            let p = Float(o.repetitionPenalty)
            for t in Set(window) where t >= 0 && t < logits.count {
                logits[t] = logits[t] > 0 ? logits[t] / p : logits[t] * p
            }
        }
        if o.temperature == 0 { return Self.argmax(logits) }

        // Temperature, then keep candidates sorted by logit (top-k first: partial work only).
        let invT = Float(1 / o.temperature)
        candidates.removeAll(keepingCapacity: true)
        for (i, l) in logits.enumerated() where l.isFinite || l == .infinity { candidates.append((i, l * invT)) }
        if candidates.isEmpty { return Self.argmax(logits) }
        let before: ((id: Int, logit: Float), (id: Int, logit: Float)) -> Bool = { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if o.topK > 0 && o.topK < candidates.count {
            candidates = Self.largest(o.topK, of: candidates, by: before)
        } else {
            candidates.sort(by: before)
        }
        // Softmax over the candidates (Double for stable sums).
        let mx = Double(candidates[0].logit)
        var probs = candidates.map { exp(Double($0.logit) - mx) }
        var sum = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= sum }
        var keep = probs.count
        if o.topP < 1 {
            var acc = 0.0
            for (i, p) in probs.enumerated() {
                acc += p
                if acc >= o.topP { keep = i + 1; break }
            }
        }
        if o.minP > 0 {
            let threshold = o.minP * probs[0]
            var k = 1
            while k < keep && probs[k] >= threshold { k += 1 }
            keep = k
        }
        sum = probs[0..<keep].reduce(0, +)
        var r = rng.unit() * sum
        for i in 0..<keep {
            r -= probs[i]
            if r < 0 { return candidates[i].id }
        }
        return candidates[keep - 1].id
    }

    /// The `k` first elements under `before`, sorted, in O(n log k) (a bounded heap).
    static func largest<T>(_ k: Int, of items: [T], by before: (T, T) -> Bool) -> [T] {
        // Min-heap (under `before`) of the best k so far: the root is the worst kept.
        var heap: [T] = []
        heap.reserveCapacity(k)
        func siftDown(_ i0: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var w = i
                if l < heap.count && before(heap[w], heap[l]) { w = l }
                if r < heap.count && before(heap[w], heap[r]) { w = r }
                if w == i { return }
                heap.swapAt(i, w)
                i = w
            }
        }
        for x in items {
            if heap.count < k {
                heap.append(x)
                var i = heap.count - 1
                while i > 0 {
                    let p = (i - 1) / 2
                    if before(heap[p], heap[i]) { heap.swapAt(p, i); i = p } else { break }
                }
            } else if before(x, heap[0]) {
                heap[0] = x
                siftDown(0)
            }
        }
        return heap.sorted(by: before)
    }

    /// Index of the largest value (the first on ties, as torch.argmax).
    public static func argmax(_ v: [Float]) -> Int {
        v.withUnsafeBufferPointer { Int(g2w_argmax($0.baseAddress, $0.count)) }
    }
}

/// An error in generation options or input.
public enum GenerationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An option or argument is out of range or does not apply; the string is the message.
    case invalidOption(String)
    /// `promptTokens` (including any already in the session) plus `maxTokens` new ones do not
    /// fit the model's context of `contextLength`.
    case promptTooLong(promptTokens: Int, maxTokens: Int, contextLength: Int)
    /// Nothing to start from: an empty prompt and no `<|endoftext|>` token, or a session
    /// continued with no new tokens and no logits yet.
    case emptyPrompt

    /// The message.
    public var description: String {
        switch self {
        case let .invalidOption(s): return s
        case let .promptTooLong(p, n, c):
            if p >= c { return "the prompt has \(p) tokens; the model's context is \(c) tokens, so there is no room to generate" }
            return "the prompt (\(p) tokens) plus \(n) new tokens exceeds the model's context of \(c) tokens: at most \(c - p) can be generated after this prompt"
        case .emptyPrompt: return "the prompt is empty, and the model has no <|endoftext|> token to start from"
        }
    }
}
