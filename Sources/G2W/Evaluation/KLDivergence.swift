import CG2W
import Foundation

/// Why two models cannot be compared.
public enum KLDivergenceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The models' vocabularies differ in size: their distributions are not over the same tokens.
    case vocabularyMismatch(tested: Int, base: Int)
    /// The perplexity window is longer than the base model's context.
    case contextExceedsBase(context: Int, baseContextLength: Int)

    /// The message.
    public var description: String {
        switch self {
        case let .vocabularyMismatch(t, b):
            return "the base model's vocabulary has \(b) tokens and the tested model's \(t): KL divergence needs the same vocabulary"
        case let .contextExceedsBase(c, n):
            return "the perplexity context \(c) exceeds the base model's n_ctx \(n)"
        }
    }
}

/// How far a model's next-token distributions are from a base model's over the scored positions of
/// a perplexity evaluation (llama-perplexity's `--kl-divergence` statistics).
///
/// Standard errors follow llama.cpp: sd / sqrt(N - 1) for means; ln(PPL(Q)/PPL(base)) accounts for
/// the covariance of the two models' per-token NLLs.
public struct KLDivergenceResult: Sendable {
    /// How the windows were laid over the tokens (the same for both models).
    public var method: PerplexityMethod
    /// Tokens in the input.
    public var tokenCount: Int
    /// Positions scored (N), the same for both models.
    public var scoredCount: Int
    /// Windows the tokens were split into.
    public var windowCount: Int
    /// The tested model's perplexity: the same figures as `perplexity(tokens:method:)` gives for it
    /// (`seconds` and `tokensPerSecond` are those of the whole comparison).
    public var tested: PerplexityResult
    /// The base model's perplexity over the same positions.
    public var base: PerplexityResult

    /// mean NLL(tested) - mean NLL(base) = ln(PPL(tested) / PPL(base)).
    public var logPerplexityRatio: Double
    /// Standard error of ``logPerplexityRatio``, net of the covariance of the two models' NLLs.
    public var logPerplexityRatioStandardError: Double
    /// Correlation of the two mean NLLs (llama.cpp's "Cor(ln(PPL(Q)), ln(PPL(base)))").
    public var logPerplexityCorrelation: Double
    /// PPL(tested) / PPL(base).
    public var perplexityRatio: Double { tested.perplexity / base.perplexity }
    /// Standard error of ``perplexityRatio``: the ratio x the standard error of the log ratio.
    public var perplexityRatioStandardError: Double { perplexityRatio * logPerplexityRatioStandardError }
    /// 100 x (PPL(tested) / PPL(base) - 1).
    public var perplexityChangePercent: Double { 100 * (perplexityRatio - 1) }
    /// PPL(tested) - PPL(base).
    public var perplexityDifference: Double { tested.perplexity - base.perplexity }
    /// Standard error of ``perplexityDifference``, net of the covariance of the two models' NLLs.
    public var perplexityDifferenceStandardError: Double

    /// Mean over the scored positions of KL(P_base || P_tested) = sum_v p_base(v) (ln p_base(v) - ln p_tested(v)),
    /// in nats.
    public var meanKL: Double
    /// Standard error of ``meanKL``: sd / sqrt(N - 1).
    public var klStandardError: Double
    /// The KL divergence of every scored position, ascending.
    public var klValues: [Double]
    /// The smallest per-position KL divergence (0 if there is none).
    public var klMinimum: Double { klValues.first ?? 0 }
    /// The largest per-position KL divergence (0 if there is none).
    public var klMaximum: Double { klValues.last ?? 0 }
    /// The median per-position KL divergence (``klPercentile(_:)`` at 0.5).
    public var klMedian: Double { klPercentile(0.5) }
    /// The `fraction` quantile of the per-position KL divergences (linear interpolation, as llama.cpp).
    public func klPercentile(_ fraction: Double) -> Double { Self.percentile(klValues, fraction) }

    /// Positions where the two models' most likely tokens (the argmax of the logits, first on ties) agree.
    public var sameTopCount: Int
    /// ``sameTopCount`` / ``scoredCount``: the fraction of positions with the same top token.
    public var sameTopFraction: Double { Double(sameTopCount) / Double(scoredCount) }
    /// Standard error of ``sameTopFraction``: sqrt(p (1 - p) / (N - 1)).
    public var sameTopStandardError: Double {
        let p = sameTopFraction
        return scoredCount > 1 ? (p * (1 - p) / Double(scoredCount - 1)).squareRoot() : 0
    }

    /// Mean over the scored positions of Δp = p_tested(next token) - p_base(next token), the
    /// change in the probability of the token that actually follows (in [-1, 1]).
    public var meanDeltaP: Double
    /// Standard error of ``meanDeltaP``: sd / sqrt(N - 1).
    public var meanDeltaPStandardError: Double
    /// Root mean square of Δp (llama.cpp's "RMS Δp").
    public var rmsDeltaP: Double
    /// Standard error of ``rmsDeltaP`` (from the mean square's: se / (2 x RMS); 0 when RMS is 0).
    public var rmsDeltaPStandardError: Double
    /// The largest |Δp| over the scored positions.
    public var maxAbsDeltaP: Double

    /// Wall time of the comparison (both models), in seconds.
    public var seconds: Double
    /// Window tokens run through each model per second.
    public var tokensPerSecond: Double

    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard let first = sorted.first else { return 0 }
        if fraction <= 0 { return first }
        if fraction >= 1 { return sorted.last! }
        let x = fraction * Double(sorted.count - 1)
        let i = Int(x), f = x - Double(i)
        return (1 - f) * sorted[i] + f * sorted[min(i + 1, sorted.count - 1)]
    }
}

extension GPT2Model {
    /// Compares this model (the tested one, e.g. f16) with `base` (e.g. the f32 model) on `tokens`:
    /// both run over the windows of `method` and are scored at the positions `perplexity(tokens:method:)`
    /// scores, one window at a time (only one window's logits of each model are held).
    /// - Parameter progress: called after each window with (windows done, total).
    /// - Throws: ``KLDivergenceError`` if the vocabularies differ in size or the window exceeds
    ///   the base model's context; otherwise what ``perplexity(tokens:method:threads:progress:)``
    ///   throws for the same input.
    public func klDivergence(against base: GPT2Model, tokens: [Int], method: PerplexityMethod, threads: Int? = nil,
                             progress: ((Int, Int) -> Void)? = nil) throws -> KLDivergenceResult {
        let v = configuration.vocabularySize
        guard base.configuration.vocabularySize == v else {
            throw KLDivergenceError.vocabularyMismatch(tested: v, base: base.configuration.vocabularySize)
        }
        let windows = try perplexityWindows(tokens: tokens, method: method)
        guard method.context <= base.configuration.contextLength else {
            throw KLDivergenceError.contextExceedsBase(context: method.context, baseContextLength: base.configuration.contextLength)
        }
        let session = try GPT2Session(model: self, threads: threads)
        let baseSession = try GPT2Session(model: base, threads: threads)
        // Per worker: the base row's softmax.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: session.threads * v)
        defer { scratch.deallocate() }

        var tested = NLLAccumulator(), based = NLLAccumulator()
        var crossNLL = 0.0
        var klValues: [Double] = [], klSum = 0.0, klSumSquares = 0.0
        var sameTop = 0
        var dpSum = 0.0, dpSum2 = 0.0, dpSum4 = 0.0, dpMax = 0.0
        var processed = 0
        let start = Date()
        for (i, w) in windows.enumerated() {
            session.reset()
            baseSession.reset()
            let window = Array(tokens[w.range])
            let last = window.count - 1
            guard w.firstScored < last else { progress?(i + 1, windows.count); continue }
            let input = Array(window[0..<last])
            let baseLogits = try baseSession.append(input, logitRowsFrom: w.firstScored)
            let logits = try session.append(input, logitRowsFrom: w.firstScored)
            processed += last
            let rows = last - w.firstScored
            var stats = [RowComparison](repeating: RowComparison(), count: rows)
            logits.withUnsafeBufferPointer { l in
                baseLogits.withUnsafeBufferPointer { b in
                    stats.withUnsafeMutableBufferPointer { out in
                        let lp = l.baseAddress!, bp = b.baseAddress!, op = out.baseAddress!, sp = scratch
                        session.parallel(rows) { range, worker in
                            for row in range {
                                op[row] = RowComparison(tested: lp + row * v, base: bp + row * v, v, target: window[w.firstScored + row + 1],
                                                        scratch: sp + worker * v)
                            }
                        }
                    }
                }
            }
            // In position order, so the sums do not depend on the thread count.
            for s in stats {
                tested.add(s.nll)
                based.add(s.baseNLL)
                crossNLL += s.nll * s.baseNLL
                klValues.append(s.kl)
                klSum += s.kl
                klSumSquares += s.kl * s.kl
                if s.sameTop { sameTop += 1 }
                let d2 = s.deltaP * s.deltaP
                dpSum += s.deltaP
                dpSum2 += d2
                dpSum4 += d2 * d2
                dpMax = max(dpMax, abs(s.deltaP))
            }
            progress?(i + 1, windows.count)
        }
        let seconds = Date().timeIntervalSince(start)
        guard tested.count > 0 else { throw ModelError.emptyInput("no token could be scored") }
        let n = tested.count, N = Double(n)

        /// Mean and standard error sd / sqrt(N - 1) from a sum and a sum of squares.
        func meanAndError(_ sum: Double, _ sum2: Double) -> (Double, Double) {
            let m = sum / N
            return (m, n > 1 ? (max(0, sum2 / N - m * m) / Double(n - 1)).squareRoot() : 0)
        }
        let t = tested.result(method: method, tokenCount: tokens.count, windowCount: windows.count, seconds: seconds, processed: processed)
        let b = based.result(method: method, tokenCount: tokens.count, windowCount: windows.count, seconds: seconds, processed: processed)
        // Covariance of the two mean NLLs (llama.cpp's), then the log ratio's and the difference's errors.
        // (Same arithmetic as the variances, so a model against itself gives exactly 0.)
        let cov = n > 1 ? (crossNLL / N - tested.mean * based.mean) / Double(n - 1) : 0
        let varT = tested.varianceOfMean, varB = based.varianceOfMean
        let seT = varT.squareRoot(), seB = varB.squareRoot()
        let logRatioSE = max(0, varT + varB - 2 * cov).squareRoot()
        let (pT, pB) = (t.perplexity, b.perplexity)
        let diffSE = max(0, pT * pT * varT + pB * pB * varB - 2 * pT * pB * cov).squareRoot()
        let (klMean, klSE) = meanAndError(klSum, klSumSquares)
        let (dpMean, dpSE) = meanAndError(dpSum, dpSum2)
        let (mse, mseSE) = meanAndError(dpSum2, dpSum4)
        let rms = mse.squareRoot()
        klValues.sort()
        return KLDivergenceResult(method: method, tokenCount: tokens.count, scoredCount: n, windowCount: windows.count, tested: t, base: b,
                                  logPerplexityRatio: tested.mean - based.mean, logPerplexityRatioStandardError: logRatioSE,
                                  logPerplexityCorrelation: seT > 0 && seB > 0 ? cov / (seT * seB) : 0,
                                  perplexityDifferenceStandardError: diffSE,
                                  meanKL: klMean, klStandardError: klSE, klValues: klValues, sameTopCount: sameTop,
                                  meanDeltaP: dpMean, meanDeltaPStandardError: dpSE, rmsDeltaP: rms,
                                  rmsDeltaPStandardError: rms > 0 ? 0.5 / rms * mseSE : 0, maxAbsDeltaP: dpMax,
                                  seconds: seconds, tokensPerSecond: seconds > 0 ? Double(processed) / seconds : 0)
    }
}

/// One scored position of a KL-divergence comparison.
struct RowComparison {
    var nll = 0.0, baseNLL = 0.0, kl = 0.0, deltaP = 0.0
    var sameTop = false

    init() {}

    /// Compares two logit rows of `v` entries; `scratch` holds `v` floats.
    ///
    /// With b, t the base and tested logits, d = b - t, p = softmax(b), s = E_p[d] and y = d - s,
    /// the tested log-normalizer is lse(t) = lse(b) - s + ln Z with Z = E_p[e^-y], so
    ///     KL(p || q) = E_p[y] + ln Z = A + ln(1 + F - A),
    /// A = E_p[y] (zero up to rounding), F = E_p[phi(y)], phi(y) = e^-y - 1 + y >= 0 term by term.
    /// No difference of two log-sum-exps (each ~ln V = 10.8, whose rounding alone would be 3e-6 of
    /// an f16-vs-f32 KL of 6e-10) and no tested softmax: F is a sum of non-negative terms, exact to
    /// rounding for nearly equal models (a series for small |y|), and KL = 0 exactly when t = b.
    /// The same p weighs y and defines q here, so p needs only float accuracy: a relative error eps
    /// in it moves the KL by O(eps (KL + E_p[y^2])), i.e. O(eps KL) for nearly equal models, not
    /// O(eps). p comes from the vectorized float softmax. (Against a Double recomputation: 1e-9
    /// relative for f16 against f32 weights, 1e-8 for unrelated models; KLDivergenceTests.)
    init(tested t: UnsafePointer<Float>, base b: UnsafePointer<Float>, _ v: Int, target: Int, scratch p: UnsafeMutablePointer<Float>) {
        // The NLLs exactly as perplexity computes them.
        nll = GPT2Model.negativeLogLikelihood(t, v, target: target)
        let lseB = g2w_logsumexp(b, v)
        baseNLL = lseB - Double(b[target])
        // Argmaxes (the first on ties).
        var mt = t[0], it = 0, mb = b[0], ib = 0
        for j in 1..<v {
            if t[j] > mt { mt = t[j]; it = j }
            if b[j] > mb { mb = b[j]; ib = j }
        }
        sameTop = it == ib
        // p = softmax(b): the vectorized float softmax, exp(fl(b - max)) / sum, with the rounding of
        // its float argument undone to first order (x (1 + delta), delta = (b - max) - fl(b - max);
        // it would be 6e-8 |b - max| relative), renormalized in Double. s = E_p[d].
        p.update(from: b, count: v)
        g2w_softmax_row(p, v, v, 1)
        let mbd = Double(mb)
        @inline(__always) func weight(_ j: Int) -> Double {
            let bj = b[j]
            return Double(p[j]) * (1 + ((Double(bj) - mbd) - Double(bj - mb)))
        }
        var sum = 0.0, sd = 0.0
        for j in 0..<v {
            let w = weight(j)
            sum += w
            sd += w * (Double(b[j]) - Double(t[j]))
        }
        let inv = 1 / sum, shift = sd * inv
        var a = 0.0, f = 0.0
        for j in 0..<v {
            let pj = weight(j) * inv
            let y = (Double(b[j]) - Double(t[j])) - shift
            a += pj * y
            if p[j] >= 1e-30 {
                if abs(y) < 0.125 {
                    // phi(y) = y^2 sum_k (-y)^k / (k + 2)!, k = 0...7, in Estrin's form; the first term
                    // left out is below 4e-14 of phi.
                    let y2 = y * y, y4 = y2 * y2
                    let q = (0.5 - y * (1.0 / 6)) + y2 * (1.0 / 24 - y * (1.0 / 120))
                        + y4 * ((1.0 / 720 - y * (1.0 / 5040)) + y2 * (1.0 / 40320 - y * (1.0 / 362880)))
                    f += pj * (y2 * q)
                } else {
                    f += pj * (expm1(-y) + y)
                }
            } else if y < -1 {
                // p < 1e-30 (float p is not accurate there): only p e^-y = exp(t - lse(b) + s) can
                // matter, when the tested model gives the token far more weight than the base.
                f += exp(Double(t[j]) - lseB + shift)
            }
        }
        let lnZ = log1p(f - a)
        let kl = a + lnZ
        // KL >= 0; only rounding (|A| ~ 1e-20) may take it below, by far less than 1e-9.
        assert(!(kl < -1e-9), "KL divergence \(kl) < 0")
        self.kl = kl < 0 && kl > -1e-9 ? 0 : kl
        // p_t(target) = p_b(target) e^(s - d - ln Z): delta-p without a difference of probabilities.
        let dTarget = Double(b[target]) - Double(t[target])
        deltaP = exp(Double(b[target]) - lseB) * expm1(shift - dTarget - lnZ)
    }
}
