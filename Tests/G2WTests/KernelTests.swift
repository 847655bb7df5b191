import CG2W
import Foundation
import G2W
import G2WFormat
import XCTest

/// The fast kernels against plain Double loops, on sizes that are not multiples of the vector
/// width or the register tiles, for every dtype and both code paths (AVX2 and portable).
final class KernelTests: XCTestCase {
    var rng = SeededGenerator(seed: 7)
    func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Double(rng.next() >> 11) * 0x1.0p-53 * 2 - 1) } }

    /// The kernel levels this CPU can run: 0 portable, 1 AVX2+FMA+F16C, 2 + AVX-512F.
    var levels: [Int32] {
        let best = g2w_force_isa(-1)
        return Array(0...best)
    }

    func testMatmulAndMatvecAgainstReference() {
        for level in levels {
            let generic = level == 0
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for rows in [1, 2, 3, 4, 5, 13, 50, 101] {
                for cols in [1, 7, 8, 15, 16, 17, 33, 100] {
                    let w = rand(rows * cols), bias = rand(rows)
                    let wh = w.map { Float16($0).bitPattern }
                    let wf16 = wh.map { Float(Float16(bitPattern: $0)) }
                    for T in [1, 2, 3, 4, 5, 9, 16, 21] {
                        let x = rand(T * cols)
                        for f16 in [false, true] {
                            let weights = f16 ? wf16 : w
                            var y = [Float](repeating: .nan, count: T * rows)
                            // Split rows in two ranges to exercise row_begin/row_end.
                            let mid = rows / 2
                            for (r0, r1) in [(0, mid), (mid, rows)] where r0 < r1 {
                                if T == 1 {
                                    if f16 { g2w_matvec_f16(wh, x, bias, &y, cols, r0, r1) } else { g2w_matvec_f32(w, x, bias, &y, cols, r0, r1) }
                                } else {
                                    if f16 { g2w_matmul_f16(wh, x, bias, &y, T, cols, rows, r0, r1) } else { g2w_matmul_f32(w, x, bias, &y, T, cols, rows, r0, r1) }
                                }
                            }
                            for t in 0..<T {
                                for r in 0..<rows {
                                    var s = Double(bias[r]), mag = abs(Double(bias[r]))
                                    for k in 0..<cols { s += Double(weights[r * cols + k]) * Double(x[t * cols + k]); mag += abs(Double(weights[r * cols + k]) * Double(x[t * cols + k])) }
                                    XCTAssertEqual(Double(y[t * rows + r]), s, accuracy: 1e-6 * mag + 1e-7,
                                                   "rows \(rows) cols \(cols) T \(T) f16 \(f16) level \(level) (generic \(generic)) at (\(t), \(r))")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The decoding kernel reads a row range as four far-apart streams when the rows are whole
    /// cache lines (16 f32 or 32 f16 values): row ranges of 4-9 rows and larger ones with every
    /// remainder mod 4, starting at odd rows, beside lengths that are not whole lines.
    /// The benchmark's probes of the machine: the all-threads FMA peak counts every thread's
    /// FLOPs (two threads together at least the rate of one alone, give or take a shared core),
    /// the hand-off time is a real round trip (positive, well under a millisecond), and both are 0
    /// where there is nothing to measure.
    func testBenchmarkProbes() throws {
        let one = g2w_bench_fma_all(nil, 200_000, 5)
        XCTAssertTrue(one.isFinite && one > 1e8, "\(one)")  // any CPU does more than 0.1 GFLOP/s
        XCTAssertEqual(g2w_bench_fma_all(nil, 200_000, 0), 0)
        XCTAssertEqual(g2w_bench_handoff(nil, 10), 0)
        let pool = try XCTUnwrap(g2w_pool_create(2))
        defer { g2w_pool_destroy(pool) }
        guard g2w_pool_threads(pool) == 2 else { throw XCTSkip("no second thread") }
        let two = g2w_bench_fma_all(pool, 200_000, 5)
        XCTAssertTrue(two.isFinite && two > 0.5 * one, "two threads \(two), one \(one)")
        let handOff = g2w_bench_handoff(pool, 50)
        XCTAssertTrue(handOff > 0 && handOff < 1e6, "\(handOff) ns")
    }

    func testMatvecStreamsAgainstReference() {
        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for cols in [16, 32, 48, 64, 96, 80, 768] {
                let rows = 141
                let w = rand(rows * cols), bias = rand(rows), x = rand(cols)
                let wh = w.map { Float16($0).bitPattern }
                let wf16 = wh.map { Float(Float16(bitPattern: $0)) }
                for f16 in [false, true] {
                    let weights = f16 ? wf16 : w
                    for (r0, r1) in [(0, 4), (3, 8), (1, 10), (5, 56), (0, 141), (7, 140), (2, 139), (9, 138)] {
                        var y = [Float](repeating: .nan, count: rows)
                        if f16 { g2w_matvec_f16(wh, x, bias, &y, cols, r0, r1) } else { g2w_matvec_f32(w, x, bias, &y, cols, r0, r1) }
                        for r in 0..<rows {
                            guard r >= r0 && r < r1 else {
                                XCTAssertTrue(y[r].isNaN, "row \(r) outside \(r0)..<\(r1) written (cols \(cols), f16 \(f16), level \(level))")
                                continue
                            }
                            var s = Double(bias[r]), mag = abs(Double(bias[r]))
                            for k in 0..<cols { s += Double(weights[r * cols + k]) * Double(x[k]); mag += abs(Double(weights[r * cols + k]) * Double(x[k])) }
                            XCTAssertEqual(Double(y[r]), s, accuracy: 1e-6 * mag + 1e-7, "cols \(cols) rows \(r0)..<\(r1) f16 \(f16) level \(level) at \(r)")
                        }
                    }
                }
            }
        }
    }

    /// Many rows of X (the prompt path's packed kernels take T >= 32), with row counts around the
    /// 32-row panels and columns past one 512-column chunk, at every kernel level.
    func testBatchedMatmulWithManyRowsAgainstReference() {
        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for (rows, cols) in [(5, 17), (33, 600), (101, 40)] {
                let w = rand(rows * cols), bias = rand(rows)
                let wh = w.map { Float16($0).bitPattern }
                for T in [32, 37, 70] {
                    let x = rand(T * cols)
                    for f16 in [false, true] {
                        let weights = f16 ? wh.map { Float(Float16(bitPattern: $0)) } : w
                        var y = [Float](repeating: .nan, count: T * rows)
                        let mid = rows / 3
                        for (r0, r1) in [(0, mid), (mid, rows)] where r0 < r1 {
                            if f16 { g2w_matmul_f16(wh, x, bias, &y, T, cols, rows, r0, r1) } else { g2w_matmul_f32(w, x, bias, &y, T, cols, rows, r0, r1) }
                        }
                        var bad = 0  // outside tolerance, or NaN (never written)
                        for t in 0..<T {
                            for r in 0..<rows {
                                var s = Double(bias[r]), mag = abs(Double(bias[r]))
                                for k in 0..<cols { let p = Double(weights[r * cols + k]) * Double(x[t * cols + k]); s += p; mag += abs(p) }
                                if !(abs(Double(y[t * rows + r]) - s) <= 1e-6 * mag + 1e-7) { bad += 1 }
                            }
                        }
                        XCTAssertEqual(bad, 0, "rows \(rows) cols \(cols) T \(T) f16 \(f16) level \(level)")
                    }
                }
            }
        }
    }

    /// The attention products of a batched prompt: strided W (K rows, or V read transposed) and
    /// the masked softmax, at every kernel level.
    func testStridedGemmAndSoftmaxRowAgainstReference() {
        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            let stride = 50, d = 16
            // T queries after start = n - T cached positions; (530, 530) spans two column chunks.
            for (T, n) in [(33, 33), (40, 75), (5, 9), (530, 530)] {
                let start = n - T
                let K = rand(n * stride), Q = rand(T * 3 * stride)
                // S[t, j] = Q[t] . K[j] (rows of K at `stride`), all of it, then only the causal part.
                var S = [Float](repeating: .nan, count: T * n)
                var causalS = S
                g2w_gemm_strided(K, stride, 1, Q, 3 * stride, &S, n, T, d, n, 0, 0)
                g2w_gemm_strided(K, stride, 1, Q, 3 * stride, &causalS, n, T, d, n, start + 1, 0)
                var bad = 0, badCausal = 0
                for t in 0..<T { for j in 0..<n {
                    let e = (0..<d).reduce(0.0) { $0 + Double(Q[t * 3 * stride + $1]) * Double(K[j * stride + $1]) }
                    if !(abs(Double(S[t * n + j]) - e) <= 1e-5) { bad += 1 }
                    if j <= start + t && !(abs(Double(causalS[t * n + j]) - e) <= 1e-5) { badCausal += 1 }
                } }
                XCTAssertEqual(bad, 0, "S, T \(T) n \(n) level \(level)")
                XCTAssertEqual(badCausal, 0, "causal S, T \(T) n \(n) level \(level)")
                // Masked softmax of each row (of the causal S: its unneeded entries were not
                // written), then O[t, c] = sum_j P[t, j] V[j, c] (V read transposed).
                var P = causalS
                for t in 0..<T { g2w_softmax_row(&P[t * n], n, start + t + 1, 0.25) }
                for t in 0..<T {
                    let valid = start + t + 1
                    let row = (0..<valid).map { Double(S[t * n + $0]) * 0.25 }
                    let mx = row.max()!, z = row.reduce(0.0) { $0 + exp($1 - mx) }
                    for j in 0..<n {
                        let e = j < valid ? exp(row[j] - mx) / z : 0
                        if !(abs(Double(P[t * n + j]) - e) <= 1e-6) { bad += 1 }
                    }
                }
                XCTAssertEqual(bad, 0, "softmax, T \(T) n \(n) level \(level)")
                let V = rand(n * stride)
                for inLimit in [0, start + 1] {
                    var O = [Float](repeating: .nan, count: T * stride)
                    g2w_gemm_strided(V, 1, stride, P, n, &O, stride, T, n, d, 0, inLimit)
                    for t in 0..<T { for c in 0..<d {
                        let e = (0..<n).reduce(0.0) { $0 + Double(P[t * n + $1]) * Double(V[$1 * stride + c]) }
                        if !(abs(Double(O[t * stride + c]) - e) <= 1e-5) { bad += 1 }
                    } }
                    XCTAssertEqual(bad, 0, "O, T \(T) n \(n) in_limit \(inLimit) level \(level)")
                }
            }
        }
    }

    /// Greedy decoding's argmax against a plain loop (the first largest; NaN never wins; 0 when
    /// nothing is above -inf), at every level, with ties, NaN and -inf planted at every offset.
    func testArgmaxAgainstPlainLoop() {
        var rng = SeededGenerator(seed: 9)
        func plain(_ v: [Float]) -> Int {
            var best = 0, bv = -Float.infinity
            for (i, x) in v.enumerated() where x > bv { bv = x; best = i }
            return best
        }
        for level in Array(0...g2w_force_isa(-1)) {
            _ = g2w_force_isa(level)
            defer { _ = g2w_force_isa(-1) }
            for n in [0, 1, 2, 7, 8, 9, 15, 16, 17, 33, 50257] {
                var v = (0..<n).map { _ in Float(Int(rng.next() % 2000)) / 100 - 10 }  // repeated values: ties
                XCTAssertEqual(g2w_argmax(v, n), plain(v), "level \(level) n \(n)")
                guard n > 0 else { continue }
                for _ in 0..<4 {
                    let i = Int(rng.next() % UInt64(n))
                    v[i] = [Float.nan, -.infinity, 1e30, 10.0][Int(rng.next() % 4)]
                    XCTAssertEqual(g2w_argmax(v, n), plain(v), "level \(level) n \(n) planted at \(i)")
                }
                let odd = (0..<n).map { _ in [Float.nan, -.infinity][Int(rng.next() % 2)] }
                XCTAssertEqual(g2w_argmax(odd, n), 0)
            }
        }
        XCTAssertEqual(Sampler.argmax([]), 0)
        XCTAssertEqual(Sampler.argmax([1, 3, 3, 2]), 1)
    }

    func testLayerNormGeluAttendAgainstReference() {
        for generic in [false, true] {
            _ = g2w_force_isa(generic ? 0 : -1)
            defer { _ = g2w_force_isa(-1) }
            for n in [1, 5, 8, 31, 64] {
                let x = rand(n), g = rand(n), b = rand(n)
                var y = [Float](repeating: 0, count: n)
                g2w_layernorm(x, g, b, &y, n, 1e-5)
                let mean = x.reduce(0.0) { $0 + Double($1) } / Double(n)
                let v = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
                for i in 0..<n { XCTAssertEqual(Double(y[i]), (Double(x[i]) - mean) / (v + 1e-5).squareRoot() * Double(g[i]) + Double(b[i]), accuracy: 1e-5) }
                var gx = x.map { $0 * 4 }
                let orig = gx
                g2w_gelu(&gx, n)
                for i in 0..<n {
                    let z = Double(orig[i])
                    XCTAssertEqual(Double(gx[i]), 0.5 * z * (1 + tanh((2 / Double.pi).squareRoot() * (z + 0.044715 * z * z * z))), accuracy: 1e-6)
                }
            }
            // (positions, head size, heads, row stride): odd sizes, and GPT-2's head size 64 with
            // 1, 3 and 6 heads per call (the decoding jobs' groups).
            for (n, d, heads, stride) in [(1, 4, 1, 4), (3, 5, 2, 11), (3, 8, 1, 9), (13, 24, 2, 48), (17, 16, 3, 48), (64, 64, 1, 64),
                                          (203, 64, 3, 200), (37, 64, 6, 384), (6, 64, 2, 128)] {
                let q = rand(heads * d), K = rand(n * stride), V = rand(n * stride)
                var scores = [Float](repeating: 0, count: heads * n), out = [Float](repeating: 0, count: heads * d)
                g2w_attend(q, K, V, stride, n, d, heads, 0.3, &scores, &out)
                for h in 0..<heads {
                    var s = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(K[j * stride + h * d + $1]) } * 0.3 }
                    let mx = s.max()!
                    s = s.map { exp($0 - mx) }
                    let sum = s.reduce(0, +)
                    for i in 0..<d {
                        let e = (0..<n).reduce(0.0) { $0 + s[$1] / sum * Double(V[$1 * stride + h * d + i]) }
                        XCTAssertEqual(Double(out[h * d + i]), e, accuracy: 1e-5, "n \(n) d \(d) head \(h) of \(heads)")
                    }
                    // One head at a time gives the same bits (the groups do not change results).
                    var one = [Float](repeating: 0, count: d), s1 = [Float](repeating: 0, count: n)
                    q.withUnsafeBufferPointer { qp in K.withUnsafeBufferPointer { kp in V.withUnsafeBufferPointer { vp in
                        g2w_attend(qp.baseAddress! + h * d, kp.baseAddress! + h * d, vp.baseAddress! + h * d, stride, n, d, 1, 0.3, &s1, &one)
                    } } }
                    XCTAssertEqual(one, Array(out[h * d ..< (h + 1) * d]))
                }
            }
        }
    }
}

/// The whole fast path (batched prompt, KV cache, threads) against the plain reference path, on
/// a model with odd sizes, in f32 and f16.
final class FastPathTests: XCTestCase {
    func oddModel(dtype: G2WDType) throws -> GPT2Model {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-odd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let b = SafetensorsBuilder.gpt2(layers: 2, embd: 12, ctx: 9, vocab: 37, seed: 11)
        try Data(b.encode()).write(to: dir.appendingPathComponent("model.safetensors"))
        try SafetensorsBuilder.config(layers: 2, heads: 3, embd: 12, ctx: 9, vocab: 37).write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        var o = HuggingFaceConverter.Options()
        o.dtype = dtype
        o.warn = { _ in }
        return try GPT2Model(path: try HuggingFaceConverter(input: dir.appendingPathComponent("model.safetensors").path, options: o).run().output)
    }

    func testFastPathMatchesReference() throws {
        for dtype in [G2WDType.f32, .f16] {
            let m = try oddModel(dtype: dtype)
            let tokens = [3, 36, 0, 17, 17, 5, 9, 22, 1]  // the full context of 9
            let reference = try GPT2Reference.logits(model: m, tokens: tokens)
            for threads in [1, 2, 3] {
                let fast = try m.allLogits(for: tokens, threads: threads)
                XCTAssertLessThan(maxAbsDiff(fast.flatMap { $0 }, reference.flatMap { $0 }), 1e-5, "\(dtype), \(threads) threads")
                // One token at a time through the KV cache gives the same logits as the batch.
                let s = try GPT2Session(model: m, threads: threads)
                for (i, t) in tokens.enumerated() {
                    let step = try s.append([t])
                    XCTAssertLessThan(maxAbsDiff(step, reference[i]), 1e-5, "\(dtype), step \(i)")
                }
                // A prompt in two batches.
                s.reset()
                _ = try s.append(Array(tokens[0..<4]))
                let rest = try s.append(Array(tokens[4...]), allPositions: true)
                XCTAssertLessThan(maxAbsDiff(rest, reference[4...].flatMap { $0 }), 1e-5)
                // Past the context: an error, not a crash.
                XCTAssertThrowsError(try s.append([1])) { XCTAssertTrue("\($0)".contains("do not fit the model's context of 9"), "\($0)") }
            }
        }
    }

    func testBadTokensAreErrors() throws {
        let m = try oddModel(dtype: .f32)
        XCTAssertThrowsError(try m.logits(for: [37])) { XCTAssertEqual("\($0)", "token id 37 is out of range (vocabulary size 37)") }
        XCTAssertThrowsError(try m.logits(for: [-1]))
        XCTAssertThrowsError(try m.logits(for: []))
        XCTAssertThrowsError(try m.logits(for: [Int](repeating: 1, count: 10)))
        XCTAssertThrowsError(try m.encode("text")) { XCTAssertTrue("\($0)".contains("has no embedded tokenizer"), "\($0)") }
    }
}
