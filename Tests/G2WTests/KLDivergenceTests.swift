import Foundation
import G2W
import G2WFormat
import XCTest

/// KL divergence of a model against a base (llama-perplexity's --kl-divergence): against itself,
/// f16 against f32 checked against a plain Double recomputation from `allLogits(for:)`, the tested
/// model's perplexity against `perplexity(...)`, and the errors.
final class KLDivergenceTests: XCTestCase {
    static let methods: [PerplexityMethod] = [.chunks(context: 64), .sliding(context: 32, stride: 12)]

    /// 200 tokens: three windows of 64, fifteen of 32 every 12. Debug builds (the kernels
    /// unoptimised) take 128: two windows of 64, nine of 32.
    static let longCount = Fixtures.isDebugBuild ? 128 : 200

    /// The first `count` ids of the Shakespeare tail used by the perplexity tests.
    func tokens(_ count: Int) throws -> [Int] {
        let d = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/shakespeare-tail16k.u16")))
        return d.withUnsafeBytes { raw in (0..<count).map { Int(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) } }
    }

    func tiny(_ dtype: G2WDType) throws -> GPT2Model {
        try GPT2Model(path: try Fixtures.convert(Fixtures.path("tiny-f32/model.safetensors"), dtype: dtype))
    }

    /// The windows of `method` as documented (token range, first scored logit row), written out
    /// independently of the library.
    func windows(_ method: PerplexityMethod, _ n: Int) -> [(Range<Int>, Int)] {
        switch method {
        case let .chunks(c):
            return (0..<(n / c)).map { ($0 * c..<($0 + 1) * c, c / 2) }
        case let .sliding(c, s):
            // Hugging Face: windows begin every s tokens; each scores the tokens after the previous end.
            var out: [(Range<Int>, Int)] = []
            var prevEnd = 0, begin = 0
            while begin < n {
                let end = min(begin + c, n)
                let firstTarget = max(end - begin - (end - prevEnd), 1)
                out.append((begin..<end, firstTarget - 1))
                prevEnd = end
                if end == n { break }
                begin += s
            }
            return out
        }
    }

    struct Reference {
        var kl: [Double] = [], nll: [Double] = [], baseNLL: [Double] = [], deltaP: [Double] = []
        var sameTop = 0
    }

    /// Everything recomputed in plain Double from the logits of each window: `allLogits(for:)`, or
    /// (`sameRows`) a session asked for the scored rows only, as perplexity does. (The two differ by
    /// up to ~3e-7 with the AVX-512 kernels: a product's rows are tiled by the batch's row count.)
    ///
    /// Per position, with m = max b, e_b = exp(b - m), e_t = exp(t - m), p = e_b / sum e_b:
    /// KL = sum_v p (d - c), d = b - t, c = lse(b) - lse(t) = -log1p(sum (e_t - e_b) / sum e_b).
    /// For close models c comes from the difference of the two sums, not as the difference of two
    /// log-sum-exps: each is ~ln V = 10.8, whose rounding (2e-15) would be 3e-6 of the tiny model's
    /// f16 KL (6e-10); for distant ones (sums far apart) as ln sum e_b - ln sum e_t.
    func reference(tested: GPT2Model, base: GPT2Model, tokens: [Int], method: PerplexityMethod, sameRows: Bool) throws -> Reference {
        func logits(_ m: GPT2Model, _ input: [Int], _ first: Int) throws -> [[Float]] {
            guard sameRows else { return Array(try m.allLogits(for: input, threads: 2)[first...]) }
            let flat = try GPT2Session(model: m, threads: 2).append(input, logitRowsFrom: first)
            let v = m.configuration.vocabularySize
            return (0..<(input.count - first)).map { Array(flat[($0 * v)..<(($0 + 1) * v)]) }
        }
        func argmax(_ row: [Float]) -> Int { row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }! }  // the first on ties
        var r = Reference()
        for (range, first) in windows(method, tokens.count) {
            let window = Array(tokens[range])
            let last = window.count - 1
            guard first < last else { continue }
            let t = try logits(tested, Array(window[0..<last]), first)
            let b = try logits(base, Array(window[0..<last]), first)
            for (k, i) in (first..<last).enumerated() {
                let tk = t[k].map(Double.init), bk = b[k].map(Double.init)
                let m = bk.max()!
                let eb = bk.map { exp($0 - m) }, et = tk.map { exp($0 - m) }
                var sumB = 0.0, sumT = 0.0, sumDiff = 0.0
                for j in bk.indices {
                    sumB += eb[j]
                    sumT += et[j]
                    sumDiff += et[j] - eb[j]
                }
                let c = abs(sumDiff) < sumB / 2 ? -log1p(sumDiff / sumB) : log(sumB) - log(sumT)
                var kl = 0.0
                for j in bk.indices { kl += eb[j] / sumB * ((bk[j] - tk[j]) - c) }
                let target = window[i + 1]
                let pB = eb[target] / sumB, pT = et[target] / sumT
                r.kl.append(kl)
                r.nll.append(-log(pT))
                r.baseNLL.append(-log(pB))
                r.deltaP.append(pT - pB)
                if argmax(t[k]) == argmax(b[k]) { r.sameTop += 1 }
            }
        }
        return r
    }

    func assertRelative(_ a: Double, _ b: Double, _ tolerance: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(a - b), tolerance * abs(b), "\(what): \(a) vs \(b)", file: file, line: line)
    }

    func testModelAgainstItselfIsZero() throws {
        let m = try tiny(.f32)
        let again = try GPT2Model(path: m.file.path)  // the same file opened twice, and the same instance
        let ids = try tokens(Self.longCount)
        for method in Self.methods {
            for base in [m, again] {
                let r = try m.klDivergence(against: base, tokens: ids, method: method, threads: 2)
                XCTAssertEqual(r.meanKL, 0, "\(method)")
                XCTAssertLessThan(r.klMaximum, 1e-12, "\(method)")
                XCTAssertEqual(r.klStandardError, 0)
                XCTAssertEqual(r.sameTopFraction, 1)
                XCTAssertEqual(r.sameTopStandardError, 0)
                XCTAssertEqual(r.perplexityChangePercent, 0)
                XCTAssertEqual(r.logPerplexityRatio, 0)
                XCTAssertEqual(r.logPerplexityRatioStandardError, 0)
                XCTAssertEqual(r.tested.perplexity, r.base.perplexity)
                XCTAssertEqual(r.rmsDeltaP, 0, accuracy: 1e-15)
                XCTAssertEqual(r.maxAbsDeltaP, 0, accuracy: 1e-15)
            }
        }
    }

    /// f16 weights against the f32 model: KL small but positive, equal to the Double recomputation
    /// from the same logit rows (1e-6 relative; they agree to ~1e-9), and from `allLogits(for:)`
    /// (mean KL 1e-5: its logits differ from the windowed pass's by rounding, see `reference`).
    func testF16AgainstF32MatchesDoubleRecomputation() throws {
        let base = try tiny(.f32), tested = try tiny(.f16)
        let ids = try tokens(96)
        for method in Self.methods {
            let r = try tested.klDivergence(against: base, tokens: ids, method: method, threads: 2)
            XCTAssertGreaterThan(r.meanKL, 0, "\(method)")
            XCTAssertLessThan(r.meanKL, 1e-4, "\(method)")
            XCTAssertGreaterThanOrEqual(r.klMinimum, 0)
            for sameRows in [true, false] {
                let what = "\(method), \(sameRows ? "same rows" : "allLogits")"
                let tolerance = sameRows ? 1e-6 : 1e-3
                let ref = try reference(tested: tested, base: base, tokens: ids, method: method, sameRows: sameRows)
                let n = ref.kl.count
                XCTAssertEqual(r.scoredCount, n, what)
                XCTAssertEqual(r.klValues.count, n)
                XCTAssertTrue(ref.kl.allSatisfy { $0 > -1e-15 }, "\(what): the reference's KL is >= 0 too")
                let mean = ref.kl.reduce(0, +) / Double(n)
                assertRelative(r.meanKL, mean, sameRows ? 1e-6 : 1e-5, "\(what) mean KL")
                let sorted = ref.kl.sorted()
                assertRelative(r.klMaximum, sorted.last!, tolerance, "\(what) max KL")
                let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
                assertRelative(r.klMedian, median, tolerance, "\(what) median KL")
                let sd = (ref.kl.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)).squareRoot()
                assertRelative(r.klStandardError, sd / Double(n - 1).squareRoot(), tolerance, "\(what) KL standard error")
                XCTAssertEqual(r.sameTopCount, ref.sameTop, what)
                XCTAssertGreaterThan(r.sameTopFraction, 0.9)
                let p = Double(ref.sameTop) / Double(n)
                XCTAssertEqual(r.sameTopStandardError, (p * (1 - p) / Double(n - 1)).squareRoot(), accuracy: 1e-15)
                let rms = (ref.deltaP.reduce(0) { $0 + $1 * $1 } / Double(n)).squareRoot()
                assertRelative(r.rmsDeltaP, rms, tolerance, "\(what) RMS delta-p")
                XCTAssertGreaterThan(r.rmsDeltaP, 0)
                // Perplexities: the reference's Double log-softmax against g2w_logsumexp's (float exps).
                let pplT = exp(ref.nll.reduce(0, +) / Double(n)), pplB = exp(ref.baseNLL.reduce(0, +) / Double(n))
                assertRelative(r.tested.perplexity, pplT, 1e-6, "\(what) tested perplexity")
                assertRelative(r.base.perplexity, pplB, 1e-6, "\(what) base perplexity")
                assertRelative(r.perplexityRatio, pplT / pplB, 1e-6, "\(what) perplexity ratio")
            }
            XCTAssertEqual(r.logPerplexityRatio, log(r.tested.perplexity / r.base.perplexity), accuracy: 1e-12)
            XCTAssertGreaterThan(r.logPerplexityRatioStandardError, 0)
            XCTAssertLessThan(r.logPerplexityRatioStandardError, r.tested.standardError / r.tested.perplexity, "the NLLs are correlated")
        }
    }

    /// The tested model's (and the base's) perplexity is exactly what `perplexity(...)` gives.
    func testPerplexitiesEqualPlainPerplexity() throws {
        let base = try tiny(.f32), tested = try tiny(.f16)
        let ids = try tokens(Self.longCount)
        for method in Self.methods {
            let r = try tested.klDivergence(against: base, tokens: ids, method: method, threads: 2)
            for (got, model) in [(r.tested, tested), (r.base, base)] {
                let plain = try model.perplexity(tokens: ids, method: method, threads: 2)
                XCTAssertEqual(got.perplexity, plain.perplexity, "\(method)")
                XCTAssertEqual(got.standardError, plain.standardError, "\(method)")
                XCTAssertEqual(got.meanNLL, plain.meanNLL, "\(method)")
                XCTAssertEqual(got.scoredCount, plain.scoredCount)
                XCTAssertEqual(got.windowCount, plain.windowCount)
                XCTAssertEqual(got.tokenCount, plain.tokenCount)
            }
            // One thread: the same figures (the session's results do not depend on how rows are
            // split between threads; the statistics are summed in position order).
            let one = try tested.klDivergence(against: base, tokens: ids, method: method, threads: 1)
            XCTAssertEqual(one.scoredCount, r.scoredCount)
            assertRelative(one.meanKL, r.meanKL, 1e-9, "\(method) mean KL, 1 thread")
            assertRelative(one.rmsDeltaP, r.rmsDeltaP, 1e-9, "\(method) RMS delta-p, 1 thread")
            assertRelative(one.tested.perplexity, r.tested.perplexity, 1e-12, "\(method) perplexity, 1 thread")
        }
    }

    /// A small random model (vocabulary 37, context `ctx`); `gain` sets the final LayerNorm's
    /// weights (logits then span about +-gain).
    func smallModel(ctx: Int, seed: UInt64 = 5, gain: Float? = nil) throws -> GPT2Model {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-kl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        var builder = SafetensorsBuilder.gpt2(layers: 1, embd: 12, ctx: ctx, vocab: 37, seed: seed)
        if let gain, let i = builder.tensors.firstIndex(where: { $0.name == "transformer.ln_f.weight" }) {
            builder.tensors[i].bytes = [Float](repeating: gain, count: 12).withUnsafeBytes { Array($0) }
        }
        try Data(builder.encode()).write(to: dir.appendingPathComponent("model.safetensors"))
        try SafetensorsBuilder.config(layers: 1, heads: 3, embd: 12, ctx: ctx, vocab: 37).write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        var o = HuggingFaceConverter.Options()
        o.dtype = .f32
        o.warn = { _ in }
        return try GPT2Model(path: try HuggingFaceConverter(input: dir.appendingPathComponent("model.safetensors").path, options: o).run().output)
    }

    func testMismatchedVocabularyAndContextAreErrors() throws {
        let big = try tiny(.f32), small = try smallModel(ctx: 16), shortContext = try smallModel(ctx: 9)
        let ids = Array(0..<36) + Array(0..<36)
        XCTAssertThrowsError(try big.klDivergence(against: small, tokens: ids, method: .chunks(context: 8))) {
            XCTAssertEqual($0 as? KLDivergenceError, .vocabularyMismatch(tested: 50257, base: 37))
            XCTAssertEqual("\($0)", "the base model's vocabulary has 37 tokens and the tested model's 50257: KL divergence needs the same vocabulary")
        }
        XCTAssertThrowsError(try small.klDivergence(against: big, tokens: ids, method: .chunks(context: 8))) {
            XCTAssertEqual($0 as? KLDivergenceError, .vocabularyMismatch(tested: 37, base: 50257))
        }
        XCTAssertThrowsError(try small.klDivergence(against: shortContext, tokens: ids, method: .chunks(context: 12))) {
            XCTAssertEqual($0 as? KLDivergenceError, .contextExceedsBase(context: 12, baseContextLength: 9))
            XCTAssertEqual("\($0)", "the perplexity context 12 exceeds the base model's n_ctx 9")
        }
        // The tested model's own limits are perplexity's errors.
        XCTAssertThrowsError(try shortContext.klDivergence(against: small, tokens: ids, method: .chunks(context: 12))) {
            XCTAssertTrue("\($0)".contains("exceeds the model's n_ctx 9"), "\($0)")
        }
        XCTAssertThrowsError(try small.klDivergence(against: shortContext, tokens: [1, 2, 3], method: .chunks(context: 8))) {
            XCTAssertTrue("\($0)".contains("fewer than one window of 8"), "\($0)")
        }
        // Both small models: it runs, and the context that fits both is fine.
        let r = try small.klDivergence(against: shortContext, tokens: ids, method: .sliding(context: 9, stride: 4))
        XCTAssertEqual(r.scoredCount, ids.count - 1)
        XCTAssertGreaterThan(r.meanKL, 0)
    }

    /// Two unrelated models whose logits span hundreds of nats: the large-difference paths (|y| >=
    /// 1/8, base probabilities below 1e-30) against the Double recomputation.
    func testUnrelatedModelsMatchDoubleRecomputation() throws {
        let base = try smallModel(ctx: 16, seed: 7, gain: 40), tested = try smallModel(ctx: 16, seed: 8, gain: 40)
        let spread = try base.allLogits(for: [3, 1, 4, 1, 5]).map { $0.max()! - $0.min()! }.max()!
        XCTAssertGreaterThan(spread, 100, "some base probabilities are below e^-69 = 1e-30")
        let ids = (0..<60).map { ($0 * 17 + 3) % 37 }
        for method in [PerplexityMethod.chunks(context: 16), .sliding(context: 12, stride: 5)] {
            let r = try tested.klDivergence(against: base, tokens: ids, method: method, threads: 2)
            let ref = try reference(tested: tested, base: base, tokens: ids, method: method, sameRows: true)
            let n = ref.kl.count
            XCTAssertEqual(r.scoredCount, n)
            XCTAssertGreaterThan(r.meanKL, 1, "\(method)")
            assertRelative(r.meanKL, ref.kl.reduce(0, +) / Double(n), 1e-6, "\(method) mean KL")
            let sorted = ref.kl.sorted()
            assertRelative(r.klMaximum, sorted.last!, 1e-6, "\(method) max KL")
            for (got, expected) in zip(r.klValues, sorted) {
                XCTAssertEqual(got, expected, accuracy: 1e-6 * expected + 1e-15, "\(method): every position's KL (ascending)")
            }
            XCTAssertEqual(r.sameTopCount, ref.sameTop)
            assertRelative(r.rmsDeltaP, (ref.deltaP.reduce(0) { $0 + $1 * $1 } / Double(n)).squareRoot(), 1e-6, "\(method) RMS delta-p")
            assertRelative(r.tested.perplexity, exp(ref.nll.reduce(0, +) / Double(n)), 1e-6, "\(method) tested perplexity")
        }
    }
}
