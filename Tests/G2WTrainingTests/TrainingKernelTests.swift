import CG2W
import G2W
import XCTest

/// The training kernels against plain Double loops, on odd sizes, at every kernel level and with
/// and without the worker pool.
final class TrainingKernelTests: XCTestCase {
    func values(_ n: Int, seed: UInt64) -> [Float] {
        var r = TestRandom(seed: seed)
        return (0..<n).map { _ in r.uniform() }
    }

    /// C (+)= A B (+ bias) for the three stride patterns of a linear layer and a general one.
    func testGEMMAgainstDoubleLoops() throws {
        let pool = ComputeContext(threads: 2)
        defer { withExtendedLifetime(pool) {} }
        // (M, N, K) including 1s, sizes around the tiles (8 x 32, 6 x 16), the K chunk (256) and the row block (256).
        let shapes = [(1, 1, 1), (7, 33, 5), (9, 31, 17), (13, 65, 300), (257, 40, 3), (6, 16, 257), (300, 97, 513), (8, 32, 256)]
        struct Case {
            var M: Int, N: Int, K: Int, layout: Int, ars: Int, acs: Int, brs: Int, bcs: Int
            var A: [Float], B: [Float]
            /// The Double sum of A B and of |products| per element of C (M x N): the reference,
            /// the same for every level, mode and pool, so computed once (Double loops in a debug
            /// build dominated the test's time).
            var sum: [Double], magnitude: [Double]
        }
        var cases: [Case] = []
        for (M, N, K) in shapes {
            for layout in 0..<4 {
                // layout 0: A row-major, B = W^T (forward); 1: A row-major, B row-major (dX);
                // 2: A = dY^T (a_rs 1), B row-major (dW); 3: both strided oddly.
                let lda = layout == 2 ? M : K + (layout == 3 ? 3 : 0)
                let (ars, acs) = layout == 2 ? (1, M) : layout == 3 ? (1, M + 2) : (K, 1)
                let (brs, bcs) = layout == 0 ? (1, K) : layout == 3 ? (N + 1, 1) : (N, 1)
                let A = values(max(ars * (M - 1) + acs * (K - 1) + 1, lda), seed: UInt64(M * 31 + K))
                let Bm = values(brs * (K - 1) + bcs * (N - 1) + 1, seed: UInt64(N * 17 + K))
                var sum = [Double](repeating: 0, count: M * N), magnitude = sum
                for i in 0..<M {
                    for j in 0..<N {
                        var s = 0.0, mag = 0.0
                        for k in 0..<K {
                            let p = Double(A[i * ars + k * acs]) * Double(Bm[k * brs + j * bcs])
                            s += p; mag += abs(p)
                        }
                        sum[i * N + j] = s
                        magnitude[i * N + j] = mag
                    }
                }
                cases.append(Case(M: M, N: N, K: K, layout: layout, ars: ars, acs: acs, brs: brs, bcs: bcs, A: A, B: Bm, sum: sum, magnitude: magnitude))
            }
        }
        atEveryLevel { level in
            for t in cases {
                let (M, N, K, A, Bm) = (t.M, t.N, t.K, t.A, t.B)
                let bias = values(N, seed: 9)
                let start = values(M * (N + 2), seed: 5)
                for mode in 0..<3 {  // 0: C = AB, 1: C = AB + bias, 2: C += AB
                    for threads in [nil, pool] as [ComputeContext?] {
                        var C = start
                        let biasArg: [Float]? = mode == 1 ? bias : nil
                        C.withUnsafeMutableBufferPointer { c in
                            if let biasArg {
                                biasArg.withUnsafeBufferPointer { g2w_sgemm(threads?.pool, M, N, K, A, t.ars, t.acs, Bm, t.brs, t.bcs, c.baseAddress, N + 2, $0.baseAddress, 0) }
                            } else {
                                g2w_sgemm(threads?.pool, M, N, K, A, t.ars, t.acs, Bm, t.brs, t.bcs, c.baseAddress, N + 2, nil, mode == 2 ? 1 : 0)
                            }
                        }
                        var worst = 0.0
                        for i in 0..<M {
                            for j in 0..<(N + 2) {
                                let got = Double(C[i * (N + 2) + j])
                                guard j < N else { XCTAssertEqual(got, Double(start[i * (N + 2) + j]), "padding written"); continue }
                                var s = t.sum[i * N + j]
                                if mode == 1 { s += Double(bias[j]) }
                                if mode == 2 { s += Double(start[i * (N + 2) + j]) }
                                worst = max(worst, abs(got - s) / (t.magnitude[i * N + j] + 1))
                            }
                        }
                        XCTAssertLessThan(worst, 1e-6, "level \(level), M \(M) N \(N) K \(K), layout \(t.layout), mode \(mode)")
                    }
                }
            }
        }
    }

    func testColumnSumsLayerNormGELUAndAdamW() throws {
        let ctx = ComputeContext(threads: 2)
        defer { withExtendedLifetime(ctx) {} }
        atEveryLevel { level in
            // Column sums of a 37 x 300 matrix (row stride 301) added to existing values.
            let M = 37, N = 300
            let dY = values(M * 301, seed: 1)
            var out = values(N, seed: 2)
            let before = out
            g2w_column_sums(ctx.pool, dY, M, N, 301, &out, 1)
            for j in 0..<N {
                let s = (0..<M).reduce(Double(before[j])) { $0 + Double(dY[$1 * 301 + j]) }
                XCTAssertEqual(Double(out[j]), s, accuracy: 1e-5, "column \(j), level \(level)")
            }
            // GELU backward against the Double derivative.
            let x = values(1001, seed: 3).map { $0 * 6 }, dy = values(1001, seed: 4)
            var dx = [Float](repeating: 0, count: 1001)
            g2w_gelu_backward(ctx.pool, x, dy, &dx, 1001)
            let c = (2 / Double.pi).squareRoot()
            for i in 0..<1001 {
                let v = Double(x[i]), t = tanh(c * (v + 0.044715 * v * v * v))
                let d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
                XCTAssertEqual(Double(dx[i]), Double(dy[i]) * d, accuracy: 2e-6, "gelu' at \(v), level \(level)")
            }
            // AdamW on 70,001 values (more than one chunk) against the Double formula.
            let n = 70_001
            var p = values(n, seed: 5), m = values(n, seed: 6).map { $0 * 0.01 }, v = values(n, seed: 7).map { $0 * $0 * 1e-4 }
            let g = values(n, seed: 8), p0 = p, m0 = m, v0 = v
            let lr: Float = 1e-3, b1: Float = 0.9, b2: Float = 0.95, eps: Float = 1e-8, wd: Float = 0.1, scale: Float = 0.7
            let step = 3.0, bias1 = 1 - pow(0.9, step), bias2 = (1 - pow(0.95, step)).squareRoot()
            g2w_adamw(ctx.pool, &p, g, &m, &v, n, lr, b1, b2, eps, wd, scale, bias1, bias2)
            for i in stride(from: 0, to: n, by: 97) {
                let gi = Double(g[i]) * Double(scale)
                let mi = 0.9 * Double(m0[i]) + 0.1 * gi, vi = 0.95 * Double(v0[i]) + 0.05 * gi * gi
                let pi = Double(p0[i]) * (1 - 1e-4) - 1e-3 / bias1 * mi / ((vi).squareRoot() / bias2 + 1e-8)
                XCTAssertEqual(Double(m[i]), mi, accuracy: 1e-6 * (abs(0.9 * Double(m0[i])) + abs(0.1 * gi)))
                XCTAssertEqual(Double(v[i]), vi, accuracy: 1e-6 * vi + 1e-15)
                XCTAssertEqual(Double(p[i]), pi, accuracy: 1e-6, "adamw element \(i)")
            }
            // Sum of squares: the same value with and without the pool.
            let s1 = g2w_sum_squares(ctx.pool, g, n), s2 = g2w_sum_squares(nil, g, n)
            XCTAssertEqual(s1, s2)
            XCTAssertEqual(s1, g.reduce(0.0) { $0 + Double($1) * Double($1) }, accuracy: 1e-9 * s1)
        }
    }
}
