import CG2W
import G2W
import G2WFormat

/// GPT-2 forward and backward for batches of `batchSize` sequences of `sequenceLength` tokens, on
/// the parameters of a ``GPT2ParameterBlock`` (llm.c's plan: one block for the parameters, one
/// for the gradients, one for the activations, all allocated once; nothing is allocated in a step).
///
/// ```swift
/// let model = try GPT2TrainingModel(parameters: block, batchSize: 4, sequenceLength: 64, context: ComputeContext())
/// let loss = try model.forward(inputs: x, targets: y)   // mean cross-entropy, activations kept
/// model.backward(lossScale: 1)                          // gradients += d(loss)/d(parameters)
/// ```
/// Shapes in comments: N = B x T rows, E = n_embd, I = n_inner, V = vocab_size, H heads of D.
public final class GPT2TrainingModel {
    /// The hyperparameters of ``parameters``.
    public let configuration: GPT2Configuration
    /// Sequences per batch (B).
    public let batchSize: Int
    /// Tokens per sequence (T), at most n_ctx.
    public let sequenceLength: Int
    /// The parameters the passes read (shared, not copied: an optimizer updates them in place).
    public let parameters: GPT2ParameterBlock
    /// Gradients, same layout as the parameters. ``backward(lossScale:)`` adds to them;
    /// ``zeroGradients()`` clears them.
    public let gradients: GPT2ParameterBlock
    /// The worker threads the passes run on.
    public let context: ComputeContext
    /// Dropout probability (GPT-2's embd_pdrop, attn_pdrop and resid_pdrop together, as nanoGPT's
    /// `dropout`): on the embeddings, the attention probabilities and the output of each block's
    /// two branches. 0 (the default) is no dropout.
    public let dropout: Float

    // Activations of the last forward (per layer: L consecutive slices).
    let encoded: FloatBuffer                     // [N, E]   wte[token] + wpe[position]
    let ln1, ln1Mean, ln1Rstd: FloatBuffer       // [L, N, E], [L, N], [L, N]
    let qkv: FloatBuffer                         // [L, N, 3E]
    let probabilities: FloatBuffer               // [L, B, H, T, T]
    let attentionOut: FloatBuffer                // [L, N, E]  softmax(QK^T) V, before the projection
    let residual2: FloatBuffer                   // [L, N, E]  after the attention block
    let ln2, ln2Mean, ln2Rstd: FloatBuffer       // [L, N, E], [L, N], [L, N]
    let fc: FloatBuffer                          // [L, N, I]  before GELU
    let fcGelu: FloatBuffer                      // [L, N, I]
    let residual3: FloatBuffer                   // [L, N, E]  after the MLP block
    let lnf, lnfMean, lnfRstd: FloatBuffer       // [N, E], [N], [N]
    let logitBuffer: FloatBuffer                 // [N, V]  logits, then probabilities, then their gradient
    var losses: [Double]                         // [N]
    // Backward scratch.
    let dResidual: FloatBuffer                   // [N, E]
    let dSmall: FloatBuffer                      // [N, E]
    let dWide: FloatBuffer                       // [N, max(I, 3E)]
    let lnScratch: FloatBuffer
    let attentionScratch: FloatBuffer
    let dDropout: FloatBuffer                    // [N, E]  a branch's gradient through its dropout
    var dropoutSeed: UInt64 = 0
    var activeDropout: Float = 0                 // the last forward's (0 when it ran without dropout)
    var inputs: [Int32]
    var targets: [Int32]
    var hasTargets = false

    /// A model for batches of `batchSize` x `sequenceLength` tokens over `parameters`; the
    /// gradients and every activation buffer are allocated here, once.
    /// - Throws: ``TrainingError/invalidShape(_:)`` for a batch of 0, a sequence of 0 or longer
    ///   than n_ctx, or a dropout outside [0, 1); ``ModelError/invalidConfiguration(_:)`` for an
    ///   unusable configuration; ``AllocationError`` when memory for the gradients or activations
    ///   cannot be had.
    public init(parameters: GPT2ParameterBlock, batchSize: Int, sequenceLength: Int, context: ComputeContext, dropout: Float = 0) throws {
        let c = parameters.configuration
        try c.validate()
        guard dropout >= 0, dropout < 1 else { throw TrainingError.invalidShape("the dropout probability is \(dropout); it must be in [0, 1)") }
        self.dropout = dropout
        guard batchSize >= 1 else { throw TrainingError.invalidShape("the batch size is \(batchSize); it must be at least 1") }
        guard sequenceLength >= 1 else { throw TrainingError.invalidShape("the sequence length is \(sequenceLength); it must be at least 1") }
        guard sequenceLength <= c.contextLength else {
            throw TrainingError.invalidShape("the sequence length \(sequenceLength) exceeds the model's context of \(c.contextLength) tokens")
        }
        configuration = c
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.parameters = parameters
        self.context = context
        gradients = try GPT2ParameterBlock(sameLayoutAs: parameters, purpose: "gradients")
        let L = c.layerCount, E = c.embeddingSize, I = c.innerSize, V = c.vocabularySize, H = c.headCount, T = sequenceLength
        let (N, o1) = batchSize.multipliedReportingOverflow(by: T)
        func size(_ factors: Int...) throws -> Int {
            var n = 1
            for f in factors {
                let (p, o) = n.multipliedReportingOverflow(by: f)
                guard !o else { throw AllocationError(purpose: "activations", bytes: Int.max) }
                n = p
            }
            return n
        }
        guard !o1 else { throw AllocationError(purpose: "activations", bytes: Int.max) }
        func buffer(_ what: String, _ factors: Int...) throws -> FloatBuffer {
            var n = 1
            for f in factors { n = try size(n, f) }
            return try FloatBuffer(count: n, purpose: "activations (\(what))")
        }
        encoded = try buffer("embeddings", N, E)
        ln1 = try buffer("ln_1", L, N, E); ln1Mean = try buffer("ln_1 mean", L, N); ln1Rstd = try buffer("ln_1 rstd", L, N)
        qkv = try buffer("qkv", L, N, 3 * E)
        probabilities = try buffer("attention probabilities", L, batchSize, H, T, T)
        attentionOut = try buffer("attention output", L, N, E)
        residual2 = try buffer("residual", L, N, E)
        ln2 = try buffer("ln_2", L, N, E); ln2Mean = try buffer("ln_2 mean", L, N); ln2Rstd = try buffer("ln_2 rstd", L, N)
        fc = try buffer("mlp", L, N, I)
        fcGelu = try buffer("gelu", L, N, I)
        residual3 = try buffer("residual", L, N, E)
        lnf = try buffer("ln_f", N, E); lnfMean = try buffer("ln_f mean", N); lnfRstd = try buffer("ln_f rstd", N)
        logitBuffer = try buffer("logits", N, V)
        dResidual = try buffer("gradient", N, E)
        dSmall = try buffer("gradient", N, E)
        dWide = try buffer("gradient", N, max(I, 3 * E))
        lnScratch = try buffer("gradient", 2 * E, g2w_layernorm_backward_chunks(N))
        attentionScratch = try buffer("gradient", T, context.threads)
        dDropout = try buffer("gradient", N, E)
        losses = [Double](repeating: 0, count: N)
        inputs = [Int32](repeating: 0, count: N)
        targets = [Int32](repeating: 0, count: N)
    }

    var rows: Int { batchSize * sequenceLength }
    var pool: OpaquePointer? { context.pool }

    /// Clears the gradients.
    public func zeroGradients() { gradients.storage.zero() }

    /// The key of dropout site `site` (0: embeddings; 1 + 3l, 2 + 3l, 3 + 3l: layer l's attention
    /// probabilities, attention output, MLP output) for the current forward.
    func dropoutKey(_ site: Int) -> UInt64 { Self.dropoutKey(seed: dropoutSeed, site: site) }

    /// The mask key of dropout site `site` for a forward drawn with `seed` (shared with the reference path).
    public static func dropoutKey(seed: UInt64, site: Int) -> UInt64 {
        var r = SplitMix64(seed: seed ^ (UInt64(site) &* 0xD1B5_4A32_D192_ED03))
        return r.next()
    }

    /// Runs the model on `inputs` (B x T token ids, sequence after sequence) and keeps what the
    /// backward needs. With `targets` (the next token of each position), returns the mean
    /// cross-entropy over all B x T positions; without, returns nil and leaves the logits in
    /// ``logits``. `dropoutSeed` draws this pass's dropout masks (when ``dropout`` > 0 and
    /// `training`; evaluation passes `training: false`); the backward recomputes the same masks.
    @discardableResult
    public func forward(inputs: [Int32], targets: [Int32]?, dropoutSeed: UInt64 = 0, training: Bool = true) throws -> Double? {
        let c = configuration, N = rows, V = c.vocabularySize
        guard inputs.count == N else { throw TrainingError.wrongCount(what: "inputs", expected: N, found: inputs.count) }
        for (i, t) in inputs.enumerated() where t < 0 || Int(t) >= V {
            throw TrainingError.tokenOutOfRange(position: i, id: Int(t), vocabularySize: V)
        }
        if let targets {
            guard targets.count == N else { throw TrainingError.wrongCount(what: "targets", expected: N, found: targets.count) }
            for (i, t) in targets.enumerated() where t < 0 || Int(t) >= V {
                throw TrainingError.tokenOutOfRange(position: i, id: Int(t), vocabularySize: V)
            }
            self.targets = targets
        }
        self.inputs = inputs
        self.dropoutSeed = dropoutSeed
        hasTargets = targets != nil
        activeDropout = training ? dropout : 0
        let drop = activeDropout
        let p = parameters.parameters
        let L = c.layerCount, E = c.embeddingSize, I = c.innerSize, H = c.headCount, T = sequenceLength, B = batchSize
        let eps = Float(c.layerNormEpsilon)

        // x = wte[token] + wpe[position]                                               [N, E]
        let wte = p.tokenEmbedding.base.assumingMemoryBound(to: Float.self)
        let wpe = p.positionEmbedding.base.assumingMemoryBound(to: Float.self)
        for n in 0..<N {
            g2w_add3(nil, wte + Int(inputs[n]) * E, wpe + (n % T) * E, encoded.base + n * E, E)
        }
        if drop > 0 { g2w_dropout(pool, encoded.base, encoded.base, N * E, drop, dropoutKey(0)) }
        for l in 0..<L {
            let w = p.layers[l]
            let x = l == 0 ? encoded.base : residual3.base + (l - 1) * N * E
            let ln1 = ln1.base + l * N * E, qkv = qkv.base + l * N * 3 * E, att = probabilities.base + l * B * H * T * T
            let atty = attentionOut.base + l * N * E, res2 = residual2.base + l * N * E
            let ln2 = ln2.base + l * N * E, fc = fc.base + l * N * I, fcg = fcGelu.base + l * N * I, res3 = residual3.base + l * N * E
            // Attention block: res2 = x + proj(attention(qkv(LN1(x))))
            g2w_layernorm_forward(pool, x, w.ln1Weight, w.ln1Bias, ln1, ln1Mean.base + l * N, ln1Rstd.base + l * N, N, E, eps)
            linear(ln1, w.attention, w.attentionBias, qkv, N)                            // [N, 3E]
            g2w_attention_forward(pool, qkv, att, atty, B, T, H, c.headSize, drop, dropoutKey(1 + 3 * l))  // [N, E]
            linear(atty, w.projection, w.projectionBias, res2, N)
            if drop > 0 { g2w_dropout(pool, res2, res2, N * E, drop, dropoutKey(2 + 3 * l)) }
            g2w_add3(pool, res2, x, res2, N * E)
            // MLP block: res3 = res2 + proj(gelu(fc(LN2(res2))))
            g2w_layernorm_forward(pool, res2, w.ln2Weight, w.ln2Bias, ln2, ln2Mean.base + l * N, ln2Rstd.base + l * N, N, E, eps)
            linear(ln2, w.feedForward, w.feedForwardBias, fc, N)                         // [N, I]
            g2w_gelu_forward(pool, fc, fcg, N * I)
            linear(fcg, w.feedForwardOut, w.feedForwardOutBias, res3, N)                 // [N, E]
            if drop > 0 { g2w_dropout(pool, res3, res3, N * E, drop, dropoutKey(3 + 3 * l)) }
            g2w_add3(pool, res3, res2, res3, N * E)
        }
        // Final LayerNorm and LM head.                                                 [N, V]
        let last = residual3.base + (L - 1) * N * E
        g2w_layernorm_forward(pool, last, p.finalNormWeight, p.finalNormBias, lnf.base, lnfMean.base, lnfRstd.base, N, E, eps)
        linear(lnf.base, p.head, nil, logitBuffer.base, N)
        guard targets != nil else { return nil }
        // Softmax + cross-entropy, in place: logits -> probabilities.
        self.targets.withUnsafeBufferPointer { t in
            losses.withUnsafeMutableBufferPointer { g2w_softmax_cross_entropy_forward(pool, logitBuffer.base, V, t.baseAddress, $0.baseAddress, N, V) }
        }
        var sum = 0.0
        for l in losses { sum += l }
        return sum / Double(N)
    }

    /// The logits of the last ``forward(inputs:targets:)`` run without targets: [B x T, V].
    public var logits: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: logitBuffer.base, count: rows * configuration.vocabularySize) }

    /// The per-position losses of the last forward with targets.
    public var positionLosses: [Double] { losses }

    /// Adds to ``gradients`` the gradient of `lossScale` x (sum of the last forward's position
    /// losses / (B x T)): with `lossScale` 1, the gradient of its mean loss; with 1/K, one of K
    /// micro-batches of a step whose loss is the mean over all of them. With `accumulate` false
    /// the gradients are replaced instead (the first micro-batch of a step: no need to zero them
    /// first, and the weight gradients are written without being read).
    public func backward(lossScale: Float = 1, accumulate: Bool = true) {
        precondition(hasTargets, "backward needs a forward with targets")
        let c = configuration, N = rows, V = c.vocabularySize
        let L = c.layerCount, E = c.embeddingSize, I = c.innerSize, H = c.headCount, T = sequenceLength, B = batchSize
        let p = parameters.parameters, g = gradients.parameters
        hasTargets = false  // the probabilities become gradients below
        let acc: Int32 = accumulate ? 1 : 0
        let drop = activeDropout
        /// The gradient of a branch's output through its dropout (the residual stream's gradient itself flows on unchanged).
        func throughDropout(_ site: Int) -> UnsafePointer<Float> {
            guard drop > 0 else { return UnsafePointer(dResidual.base) }
            g2w_dropout(pool, dResidual.base, dDropout.base, N * E, drop, dropoutKey(site))
            return UnsafePointer(dDropout.base)
        }
        if !accumulate {
            // Written below only where tokens and positions occur: clear them first. (A tied head's
            // gradient is wte's, written whole by the head's product.)
            if p.hasSeparateHead { memset(mutable(g.tokenEmbedding), 0, V * c.embeddingSize * MemoryLayout<Float>.stride) }
            memset(mutable(g.positionEmbedding), 0, c.contextLength * c.embeddingSize * MemoryLayout<Float>.stride)
        }

        // dlogits = scale (probabilities - onehot(target)), in place.                  [N, V]
        targets.withUnsafeBufferPointer { t in
            g2w_softmax_cross_entropy_backward(pool, logitBuffer.base, V, t.baseAddress, N, V, lossScale / Float(N))
        }
        // LM head (tied: its gradient lands in wte's).
        linearBackward(dY: logitBuffer.base, x: lnf.base, w: p.head, dW: g.head, dBias: nil, dX: dSmall.base, N, acc)
        // Final LayerNorm: dResidual = d(residual stream after the last block).
        dResidual.zero()
        let last = residual3.base + (L - 1) * N * E
        g2w_layernorm_backward(pool, dSmall.base, last, p.finalNormWeight, lnfMean.base, lnfRstd.base, dResidual.base,
                               mutable(g.finalNormWeight), mutable(g.finalNormBias), N, E, lnScratch.base, acc)
        for l in stride(from: L - 1, through: 0, by: -1) {
            let w = p.layers[l], gw = g.layers[l]
            let x = l == 0 ? encoded.base : residual3.base + (l - 1) * N * E
            let ln1 = ln1.base + l * N * E, qkv = qkv.base + l * N * 3 * E, att = probabilities.base + l * B * H * T * T
            let atty = attentionOut.base + l * N * E, res2 = residual2.base + l * N * E
            let ln2 = ln2.base + l * N * E, fc = fc.base + l * N * I, fcg = fcGelu.base + l * N * I
            // MLP block (dResidual = d res3; it also flows straight to res2).
            linearBackward(dY: throughDropout(3 + 3 * l), x: fcg, w: w.feedForwardOut, dW: gw.feedForwardOut, dBias: gw.feedForwardOutBias, dX: dWide.base, N, acc)
            g2w_gelu_backward(pool, fc, dWide.base, dWide.base, N * I)
            linearBackward(dY: dWide.base, x: ln2, w: w.feedForward, dW: gw.feedForward, dBias: gw.feedForwardBias, dX: dSmall.base, N, acc)
            g2w_layernorm_backward(pool, dSmall.base, res2, w.ln2Weight, ln2Mean.base + l * N, ln2Rstd.base + l * N, dResidual.base,
                                   mutable(gw.ln2Weight), mutable(gw.ln2Bias), N, E, lnScratch.base, acc)
            // Attention block (dResidual = d res2; it also flows straight to x).
            linearBackward(dY: throughDropout(2 + 3 * l), x: atty, w: w.projection, dW: gw.projection, dBias: gw.projectionBias, dX: dSmall.base, N, acc)
            memset(dWide.base, 0, N * 3 * E * MemoryLayout<Float>.stride)
            g2w_attention_backward(pool, dSmall.base, qkv, att, dWide.base, B, T, H, c.headSize, attentionScratch.base, drop, dropoutKey(1 + 3 * l))
            linearBackward(dY: dWide.base, x: ln1, w: w.attention, dW: gw.attention, dBias: gw.attentionBias, dX: dSmall.base, N, acc)
            // The key bias cannot change the output: it adds q_t . b_k to every score of row t, and
            // softmax ignores a shift of its row. Its gradient is exactly zero; the column sums
            // leave float rounding there (~1e-7 of the terms), which AdamW's normalisation would
            // turn into updates of a sizeable fraction of the learning rate. Write the exact value.
            memset(mutable(gw.attentionBias) + E, 0, E * MemoryLayout<Float>.stride)
            g2w_layernorm_backward(pool, dSmall.base, x, w.ln1Weight, ln1Mean.base + l * N, ln1Rstd.base + l * N, dResidual.base,
                                   mutable(gw.ln1Weight), mutable(gw.ln1Bias), N, E, lnScratch.base, acc)
        }
        // Embeddings: dResidual = d(wte[token] + wpe[position]).
        let dwte = mutable(g.tokenEmbedding), dwpe = mutable(g.positionEmbedding)
        let dEmbedding = throughDropout(0)
        for n in 0..<N {
            let d = dEmbedding + n * E
            let te = dwte + Int(inputs[n]) * E, pe = dwpe + (n % T) * E
            g2w_add3(nil, te, d, te, E)
            g2w_add3(nil, pe, d, pe, E)
        }
    }

    // MARK: Linear layers

    /// Y[N, out] = X[N, in] W^T + bias (W [out, in], f32).
    func linear(_ X: UnsafePointer<Float>, _ w: WeightMatrix, _ bias: UnsafePointer<Float>?, _ Y: UnsafeMutablePointer<Float>, _ N: Int) {
        precondition(w.dtype == .f32, "training weights are f32")
        let W = w.base.assumingMemoryBound(to: Float.self)
        g2w_sgemm(pool, N, w.rows, w.cols, X, w.cols, 1, W, 1, w.cols, Y, w.rows, bias, 0)
    }

    /// dW (+)= dY^T X, dBias (+)= column sums of dY (replaced when `accumulate` is 0), dX = dY W.
    func linearBackward(dY: UnsafePointer<Float>, x X: UnsafePointer<Float>, w: WeightMatrix, dW: WeightMatrix, dBias: UnsafePointer<Float>?,
                        dX: UnsafeMutablePointer<Float>, _ N: Int, _ accumulate: Int32) {
        let out = w.rows, inp = w.cols
        let W = w.base.assumingMemoryBound(to: Float.self)
        let G = UnsafeMutableRawPointer(mutating: dW.base).assumingMemoryBound(to: Float.self)
        g2w_sgemm(pool, out, inp, N, dY, 1, out, X, inp, 1, G, inp, nil, accumulate)
        if let dBias { g2w_column_sums(pool, dY, N, out, out, mutable(dBias), accumulate) }
        g2w_sgemm(pool, N, inp, out, dY, out, 1, W, inp, 1, dX, inp, nil, 0)
    }

    func mutable(_ p: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> { UnsafeMutablePointer(mutating: p) }
    func mutable(_ m: WeightMatrix) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(mutating: m.base).assumingMemoryBound(to: Float.self)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
