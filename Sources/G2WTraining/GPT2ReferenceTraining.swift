import CG2W
import Foundation
import G2W

/// The training computation written as plainly as possible, in Double: forward, cross-entropy,
/// and the backward of every part, one sequence and one position at a time (picoGPT's forward,
/// and its derivative line by line). No threads, no SIMD. It exists so the fast path
/// (``GPT2TrainingModel``) can be tested against it at every vector level, and it is itself
/// checked against PyTorch and by finite differences. Slow; for small models.
public struct GPT2ReferenceTraining {
    /// The hyperparameters of the block it was made from.
    public let configuration: GPT2Configuration
    /// Whether there is a separate LM head (`lm_head.weight`) rather than one tied to `wte`.
    public let untiedHead: Bool
    /// Every tensor of the schema by name, row-major ([out, in] for matrices).
    public var parameters: [String: [Double]]

    /// The values of `block`, widened to Double.
    public init(block: GPT2ParameterBlock) {
        configuration = block.configuration
        untiedHead = block.untiedHead
        var p: [String: [Double]] = [:]
        for e in block.entries { p[e.name] = UnsafeBufferPointer(block.tensor(named: e.name)!).map(Double.init) }
        parameters = p
    }

    /// What ``run(inputs:targets:batchSize:dropout:dropoutSeed:)`` computes.
    public struct Output {
        /// Mean cross-entropy over all positions (nil without targets).
        public var loss: Double?
        /// [B x T][V].
        public var logits: [[Double]]
        /// d(loss)/d(tensor) for every tensor of the schema (empty without targets).
        public var gradients: [String: [Double]]
    }

    /// Runs `batchSize` sequences of `inputs.count / batchSize` tokens; with targets, the mean
    /// loss and the gradients of every parameter. With `dropout` > 0, the same masks as
    /// ``GPT2TrainingModel`` draws with `dropoutSeed` (the same counter-based factors).
    public func run(inputs: [Int], targets: [Int]?, batchSize: Int, dropout: Float = 0, dropoutSeed: UInt64 = 0) -> Output {
        let c = configuration
        let E = c.embeddingSize, I = c.innerSize, V = c.vocabularySize, H = c.headCount, D = c.headSize
        let T = inputs.count / batchSize, N = inputs.count
        let eps = c.layerNormEpsilon, scale = 1 / Double(D).squareRoot()
        func P(_ name: String) -> [Double] { parameters[name]! }
        func L(_ l: Int, _ s: String) -> [Double] { parameters[GPT2Tensors.layer(l, s)]! }
        let wte = P(GPT2Tensors.tokenEmbedding), wpe = P(GPT2Tensors.positionEmbedding)
        let head = untiedHead ? P(GPT2Tensors.lmHead) : wte
        var grads: [String: [Double]] = [:]
        for (name, shape) in GPT2Tensors.all(c, untiedHead: untiedHead) { grads[name] = [Double](repeating: 0, count: shape.reduce(1, *)) }
        var allLogits: [[Double]] = []
        var totalLoss = 0.0
        /// The dropout factor of element `index` at `site` (1 without dropout).
        func keep(_ site: Int, _ index: Int) -> Double {
            dropout > 0 ? Double(g2w_dropout_factor(GPT2TrainingModel.dropoutKey(seed: dropoutSeed, site: site), UInt64(index), dropout)) : 1
        }

        for b in 0..<batchSize {
            let tokens = Array(inputs[(b * T)..<((b + 1) * T)])
            // Forward, keeping every intermediate value.
            struct LayerCache {
                var x: [[Double]] = [], h1: [[Double]] = [], xhat1: [[Double]] = [], rstd1: [Double] = []
                var qkv: [[Double]] = [], probs: [[[Double]]] = [], a: [[Double]] = [], x2: [[Double]] = []
                var h2: [[Double]] = [], xhat2: [[Double]] = [], rstd2: [Double] = [], f: [[Double]] = [], gf: [[Double]] = []
            }
            var x: [[Double]] = (0..<T).map { t in (0..<E).map { (wte[tokens[t] * E + $0] + wpe[t * E + $0]) * keep(0, (b * T + t) * E + $0) } }
            var caches: [LayerCache] = []
            for l in 0..<c.layerCount {
                var k = LayerCache()
                k.x = x
                for t in 0..<T {
                    let (y, xh, r) = layerNorm(x[t], L(l, "ln_1.weight"), L(l, "ln_1.bias"), eps)
                    k.h1.append(y); k.xhat1.append(xh); k.rstd1.append(r)
                }
                k.qkv = k.h1.map { matvec(L(l, "attn.c_attn.weight"), L(l, "attn.c_attn.bias"), $0) }
                k.a = [[Double]](repeating: [Double](repeating: 0, count: E), count: T)
                k.probs = [[[Double]]](repeating: [], count: H)
                for h in 0..<H {
                    for t in 0..<T {
                        var s = (0...t).map { u in (0..<D).reduce(0.0) { $0 + k.qkv[t][h * D + $1] * k.qkv[u][E + h * D + $1] } * scale }
                        let mx = s.max()!
                        s = s.map { exp($0 - mx) }
                        let sum = s.reduce(0, +)
                        s = s.map { $0 / sum }
                        k.probs[h].append(s)
                        let row = ((b * H + h) * T + t) * T
                        let sd = (0...t).map { s[$0] * keep(1 + 3 * l, row + $0) }  // dropout of the probabilities
                        for i in 0..<D { k.a[t][h * D + i] = (0...t).reduce(0.0) { $0 + sd[$1] * k.qkv[$1][2 * E + h * D + i] } }
                    }
                }
                k.x2 = (0..<T).map { t in
                    let o = matvec(L(l, "attn.c_proj.weight"), L(l, "attn.c_proj.bias"), k.a[t])
                    return (0..<E).map { x[t][$0] + o[$0] * keep(2 + 3 * l, (b * T + t) * E + $0) }
                }
                for t in 0..<T {
                    let (y, xh, r) = layerNorm(k.x2[t], L(l, "ln_2.weight"), L(l, "ln_2.bias"), eps)
                    k.h2.append(y); k.xhat2.append(xh); k.rstd2.append(r)
                }
                k.f = k.h2.map { matvec(L(l, "mlp.c_fc.weight"), L(l, "mlp.c_fc.bias"), $0) }
                k.gf = k.f.map { $0.map(gelu) }
                x = (0..<T).map { t in
                    let o = matvec(L(l, "mlp.c_proj.weight"), L(l, "mlp.c_proj.bias"), k.gf[t])
                    return (0..<E).map { k.x2[t][$0] + o[$0] * keep(3 + 3 * l, (b * T + t) * E + $0) }
                }
                caches.append(k)
            }
            var hf: [[Double]] = [], xhatf: [[Double]] = [], rstdf: [Double] = []
            for t in 0..<T {
                let (y, xh, r) = layerNorm(x[t], P(GPT2Tensors.finalNormWeight), P(GPT2Tensors.finalNormBias), eps)
                hf.append(y); xhatf.append(xh); rstdf.append(r)
            }
            let logits = hf.map { matvec(head, nil, $0) }
            allLogits += logits
            guard let targets else { continue }

            // Loss and backward.
            var dx = [[Double]](repeating: [Double](repeating: 0, count: E), count: T)
            var dHead = [Double](repeating: 0, count: V * E)
            for t in 0..<T {
                let z = logits[t], mx = z.max()!
                let e = z.map { exp($0 - mx) }, sum = e.reduce(0, +)
                let target = targets[b * T + t]
                totalLoss += log(sum) + mx - z[target]
                var dz = e.map { $0 / sum / Double(N) }
                dz[target] -= 1 / Double(N)
                outerAdd(&dHead, dz, hf[t])
                let dh = matTvec(head, V, E, dz)
                dx[t] = layerNormBackward(dh, xhatf[t], rstdf[t], P(GPT2Tensors.finalNormWeight),
                                          &grads, GPT2Tensors.finalNormWeight, GPT2Tensors.finalNormBias)
            }
            if untiedHead { add(&grads[GPT2Tensors.lmHead]!, dHead) } else { add(&grads[GPT2Tensors.tokenEmbedding]!, dHead) }
            for l in stride(from: c.layerCount - 1, through: 0, by: -1) {
                let k = caches[l]
                func G(_ s: String) -> String { GPT2Tensors.layer(l, s) }
                // MLP: x3 = x2 + Wp gelu(Wf LN2(x2) + bf) + bp
                for t in 0..<T {
                    let dm = (0..<E).map { dx[t][$0] * keep(3 + 3 * l, (b * T + t) * E + $0) }
                    outerAdd(&grads[G("mlp.c_proj.weight")]!, dm, k.gf[t])
                    add(&grads[G("mlp.c_proj.bias")]!, dm)
                    let dgf = matTvec(L(l, "mlp.c_proj.weight"), E, I, dm)
                    let df = (0..<I).map { dgf[$0] * geluDerivative(k.f[t][$0]) }
                    outerAdd(&grads[G("mlp.c_fc.weight")]!, df, k.h2[t])
                    add(&grads[G("mlp.c_fc.bias")]!, df)
                    let dh2 = matTvec(L(l, "mlp.c_fc.weight"), I, E, df)
                    let dln = layerNormBackward(dh2, k.xhat2[t], k.rstd2[t], L(l, "ln_2.weight"), &grads, G("ln_2.weight"), G("ln_2.bias"))
                    for i in 0..<E { dx[t][i] += dln[i] }
                }
                // Attention: x2 = x + Wo attention(Wqkv LN1(x) + bqkv) + bo
                var da: [[Double]] = []
                for t in 0..<T {
                    let dproj = (0..<E).map { dx[t][$0] * keep(2 + 3 * l, (b * T + t) * E + $0) }
                    outerAdd(&grads[G("attn.c_proj.weight")]!, dproj, k.a[t])
                    add(&grads[G("attn.c_proj.bias")]!, dproj)
                    da.append(matTvec(L(l, "attn.c_proj.weight"), E, E, dproj))
                }
                var dqkv = [[Double]](repeating: [Double](repeating: 0, count: 3 * E), count: T)
                for h in 0..<H {
                    for t in 0..<T {
                        let p = k.probs[h][t]
                        let row = ((b * H + h) * T + t) * T
                        let f = (0...t).map { keep(1 + 3 * l, row + $0) }
                        let dp = (0...t).map { u in f[u] * (0..<D).reduce(0.0) { $0 + da[t][h * D + $1] * k.qkv[u][2 * E + h * D + $1] } }
                        let s = (0...t).reduce(0.0) { $0 + p[$1] * dp[$1] }
                        for u in 0...t {
                            let ds = p[u] * (dp[u] - s) * scale
                            for i in 0..<D {
                                dqkv[u][2 * E + h * D + i] += f[u] * p[u] * da[t][h * D + i]
                                dqkv[t][h * D + i] += ds * k.qkv[u][E + h * D + i]
                                dqkv[u][E + h * D + i] += ds * k.qkv[t][h * D + i]
                            }
                        }
                    }
                }
                for t in 0..<T {
                    outerAdd(&grads[G("attn.c_attn.weight")]!, dqkv[t], k.h1[t])
                    add(&grads[G("attn.c_attn.bias")]!, dqkv[t])
                    let dh1 = matTvec(L(l, "attn.c_attn.weight"), 3 * E, E, dqkv[t])
                    let dln = layerNormBackward(dh1, k.xhat1[t], k.rstd1[t], L(l, "ln_1.weight"), &grads, G("ln_1.weight"), G("ln_1.bias"))
                    for i in 0..<E { dx[t][i] += dln[i] }
                }
            }
            for t in 0..<T {
                for i in 0..<E {
                    let d = dx[t][i] * keep(0, (b * T + t) * E + i)
                    grads[GPT2Tensors.tokenEmbedding]![tokens[t] * E + i] += d
                    grads[GPT2Tensors.positionEmbedding]![t * E + i] += d
                }
            }
        }
        return Output(loss: targets == nil ? nil : totalLoss / Double(N), logits: allLogits, gradients: targets == nil ? [:] : grads)
    }

    // MARK: Pieces

    /// (y, xhat, rstd) of LayerNorm with biased variance.
    func layerNorm(_ x: [Double], _ g: [Double], _ b: [Double], _ eps: Double) -> ([Double], [Double], Double) {
        let n = Double(x.count)
        let mean = x.reduce(0, +) / n
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        let rstd = 1 / (variance + eps).squareRoot()
        let xhat = x.map { ($0 - mean) * rstd }
        return (x.indices.map { xhat[$0] * g[$0] + b[$0] }, xhat, rstd)
    }

    /// dx of LayerNorm; adds dgamma and dbeta.
    func layerNormBackward(_ dy: [Double], _ xhat: [Double], _ rstd: Double, _ g: [Double], _ grads: inout [String: [Double]],
                           _ gName: String, _ bName: String) -> [Double] {
        let n = Double(dy.count)
        let dxhat = dy.indices.map { dy[$0] * g[$0] }
        let m1 = dxhat.reduce(0, +) / n
        let m2 = dxhat.indices.reduce(0.0) { $0 + dxhat[$1] * xhat[$1] } / n
        for i in dy.indices { grads[gName]![i] += dy[i] * xhat[i]; grads[bName]![i] += dy[i] }
        return dy.indices.map { rstd * (dxhat[$0] - m1 - xhat[$0] * m2) }
    }

    /// W x + b, W [rows, cols] row-major.
    func matvec(_ w: [Double], _ b: [Double]?, _ x: [Double]) -> [Double] {
        let cols = x.count, rows = w.count / cols
        return (0..<rows).map { r in
            var s = b?[r] ?? 0
            for k in 0..<cols { s += w[r * cols + k] * x[k] }
            return s
        }
    }

    /// W^T dy, W [rows, cols].
    func matTvec(_ w: [Double], _ rows: Int, _ cols: Int, _ dy: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: cols)
        for r in 0..<rows where dy[r] != 0 {
            for k in 0..<cols { out[k] += w[r * cols + k] * dy[r] }
        }
        return out
    }

    /// dW += dy x^T.
    func outerAdd(_ dw: inout [Double], _ dy: [Double], _ x: [Double]) {
        let cols = x.count
        for r in dy.indices { for k in 0..<cols { dw[r * cols + k] += dy[r] * x[k] } }
    }

    func add(_ a: inout [Double], _ b: [Double]) { for i in a.indices { a[i] += b[i] } }

    static let geluC = (2 / Double.pi).squareRoot()
    func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh(Self.geluC * (x + 0.044715 * x * x * x))) }
    func geluDerivative(_ x: Double) -> Double {
        let t = tanh(Self.geluC * (x + 0.044715 * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * Self.geluC * (1 + 3 * 0.044715 * x * x)
    }
}
