import Foundation

/// The GPT-2 forward pass written as plainly as possible (picoGPT style): no cache, no threads,
/// no SIMD, Double accumulation. It reads the same mapped weights as the fast path and exists
/// so the fast path can be tested against it. Slow; for small models and tests.
public enum GPT2Reference {
    /// Logits for every position of `tokens`: [T][V].
    public static func logits(model m: GPT2Model, tokens: [Int]) throws -> [[Float]] {
        try m.validate(tokens: tokens)
        let c = m.configuration
        let E = c.embeddingSize, H = c.headCount, D = c.headSize, T = tokens.count
        // x = wte[tokens] + wpe[0..<T]                                         [T, E]
        var x: [[Float]] = tokens.enumerated().map { t, tok in
            let w = m.parameters.tokenEmbedding.row(tok), p = m.parameters.positionEmbedding.row(t)
            return (0..<E).map { w[$0] + p[$0] }
        }
        for layer in m.parameters.layers {
            // Attention.
            let h = x.map { layerNorm($0, layer.ln1Weight, layer.ln1Bias, c.layerNormEpsilon) }
            let qkv = h.map { linear(layer.attention, layer.attentionBias, $0) }     // [T, 3E]
            var att = [[Float]](repeating: [Float](repeating: 0, count: E), count: T)
            for head in 0..<H {
                for t in 0..<T {
                    // Scores against positions 0...t (causal mask), softmax, weighted sum of values.
                    var s = (0...t).map { u -> Double in
                        var d = 0.0
                        for i in 0..<D { d += Double(qkv[t][head * D + i]) * Double(qkv[u][E + head * D + i]) }
                        return d / Double(D).squareRoot()
                    }
                    let mx = s.max()!
                    s = s.map { exp($0 - mx) }
                    let sum = s.reduce(0, +)
                    for i in 0..<D {
                        var v = 0.0
                        for u in 0...t { v += s[u] / sum * Double(qkv[u][2 * E + head * D + i]) }
                        att[t][head * D + i] = Float(v)
                    }
                }
            }
            for t in 0..<T {
                let p = linear(layer.projection, layer.projectionBias, att[t])
                for i in 0..<E { x[t][i] += p[i] }
            }
            // MLP.
            for t in 0..<T {
                let h2 = layerNorm(x[t], layer.ln2Weight, layer.ln2Bias, c.layerNormEpsilon)
                let f = linear(layer.feedForward, layer.feedForwardBias, h2).map(gelu)
                let o = linear(layer.feedForwardOut, layer.feedForwardOutBias, f)
                for i in 0..<E { x[t][i] += o[i] }
            }
        }
        return x.map { linear(m.parameters.head, nil, layerNorm($0, m.parameters.finalNormWeight, m.parameters.finalNormBias, c.layerNormEpsilon)) }
    }

    static func layerNorm(_ x: [Float], _ g: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ eps: Double) -> [Float] {
        let n = Double(x.count)
        let mean = x.reduce(0.0) { $0 + Double($1) } / n
        let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
        return x.indices.map { Float((Double(x[$0]) - mean) / (variance + eps).squareRoot() * Double(g[$0]) + Double(b[$0])) }
    }

    /// y = W x + b with W stored [out, in].
    static func linear(_ w: WeightMatrix, _ b: UnsafePointer<Float>?, _ x: [Float]) -> [Float] {
        (0..<w.rows).map { r in
            let row = w.row(r)  // dequantized exactly as the file says
            var s = 0.0
            for k in 0..<w.cols { s += Double(row[k]) * Double(x[k]) }
            return Float(s + Double(b?[r] ?? 0))
        }
    }

    /// GELU, tanh approximation (Hugging Face `gelu_new`).
    static func gelu(_ x: Float) -> Float {
        let v = Double(x)
        return Float(0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))))
    }
}
