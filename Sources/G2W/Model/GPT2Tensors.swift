/// Tensor names and shapes of a GPT-2 `.g2w` file (spec/g2w.md, "GPT-2 profile").
///
/// Names are Hugging Face's without the `transformer.` prefix. Every 2-D weight is stored
/// [out, in] (`gpt2.matrix_layout` = "out_in"): Hugging Face's Conv1D weights ([in, out]) are
/// transposed by the converter, so every matrix-vector product reads contiguous rows.
public enum GPT2Tensors {
    /// The token embedding, [vocab_size, n_embd]; also the LM head when it is tied.
    public static let tokenEmbedding = "wte.weight"
    /// The position embedding, [n_ctx, n_embd].
    public static let positionEmbedding = "wpe.weight"
    /// The final LayerNorm's gain, [n_embd].
    public static let finalNormWeight = "ln_f.weight"
    /// The final LayerNorm's bias, [n_embd].
    public static let finalNormBias = "ln_f.bias"
    /// Present only when the LM head is not tied to `wte`.
    public static let lmHead = "lm_head.weight"

    /// Per-layer tensor suffixes in file order.
    public static let layerSuffixes = [
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
        "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    ]

    /// Hugging Face Conv1D weights, stored [in, out] in checkpoints and transposed in `.g2w`.
    public static let transposedSuffixes: Set<String> = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]

    /// The name of layer `i`'s tensor with `suffix` (one of ``layerSuffixes``): "h.i.suffix".
    public static func layer(_ i: Int, _ suffix: String) -> String { "h.\(i).\(suffix)" }

    /// The `.g2w` shape of a per-layer tensor.
    public static func shape(ofLayerTensor suffix: String, _ c: GPT2Configuration) -> [Int] {
        let e = c.embeddingSize, i = c.innerSize
        switch suffix {
        case "attn.c_attn.weight": return [3 * e, e]
        case "attn.c_attn.bias": return [3 * e]
        case "attn.c_proj.weight": return [e, e]
        case "mlp.c_fc.weight": return [i, e]
        case "mlp.c_fc.bias": return [i]
        case "mlp.c_proj.weight": return [e, i]
        default: return [e]  // LayerNorm weights and biases, attn.c_proj.bias, mlp.c_proj.bias
        }
    }

    /// The `.g2w` shape of the tensor called `name` (a global one or `h.L.SUFFIX`).
    public static func shape(of name: String, _ c: GPT2Configuration) -> [Int] {
        switch name {
        case tokenEmbedding, lmHead: return [c.vocabularySize, c.embeddingSize]
        case positionEmbedding: return [c.contextLength, c.embeddingSize]
        case finalNormWeight, finalNormBias: return [c.embeddingSize]
        default: return shape(ofLayerTensor: String(name.split(separator: ".", maxSplits: 2).last ?? ""), c)
        }
    }

    /// All tensor names of a model with `c`'s shape, in file order, with their `.g2w` shapes.
    public static func all(_ c: GPT2Configuration, untiedHead: Bool) -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = [(tokenEmbedding, shape(of: tokenEmbedding, c)), (positionEmbedding, shape(of: positionEmbedding, c))]
        for l in 0..<c.layerCount {
            for s in layerSuffixes { out.append((layer(l, s), shape(ofLayerTensor: s, c))) }
        }
        for name in [finalNormWeight, finalNormBias] + (untiedHead ? [lmHead] : []) { out.append((name, shape(of: name, c))) }
        return out
    }
}

/// The library's version, recorded by the converter in `g2w.converter`.
public enum G2WVersion {
    /// The version as "major.minor.patch".
    public static let string = "0.1.0"
}
