import CG2W
import Foundation
import G2WFormat

/// One sequence of a batched forward pass (continuous batching): its KV cache and its position.
/// A ``GPT2Session`` lends the scratch buffers, the worker pool and the matrix products; the
/// sequences of one pass each keep their own cache (``GPT2Session/forward(_:tokens:logitRowsFrom:)``).
///
/// Not thread-safe; a sequence belongs to one pass at a time.
public final class GPT2BatchSequence {
    public let model: GPT2Model
    /// Element type of the KV cache: f32 or f16.
    public let kvType: G2WDType
    /// Tokens in the cache.
    public fileprivate(set) var count = 0
    /// The tokens in the cache, in order.
    public fileprivate(set) var tokens: [Int] = []
    // KV cache: [layer][position][E] keys and values of kvType, `cachePositions` per layer (grown
    // by doubling up to n_ctx, as GPT2Session's).
    var keys: UnsafeMutableRawPointer
    var values: UnsafeMutableRawPointer
    var cachePositions = 0

    public init(model: GPT2Model, kvType: G2WDType = .f32) throws {
        guard kvType == .f32 || kvType == .f16 else { throw GenerationError.invalidOption("the KV cache type must be f32 or f16, not \(kvType)") }
        self.model = model
        self.kvType = kvType
        keys = malloc(1)!
        values = malloc(1)!
        try reserveCache(min(model.configuration.contextLength, 64))
    }

    deinit { free(keys); free(values) }

    /// Forgets the sequence (the cache is overwritten by the next tokens).
    public func reset() { count = 0; tokens = [] }

    /// Bytes of KV cache allocated.
    public var cacheBytes: Int { 2 * model.configuration.layerCount * cachePositions * model.configuration.embeddingSize * kvType.size }

    /// Grows the cache to hold `positions` per layer (at least doubling, at most n_ctx), copying
    /// the cached positions layer by layer. A failure leaves the cache as it was.
    func reserveCache(_ positions: Int) throws {
        try growKVCache(keys: &keys, values: &values, cachePositions: &cachePositions, count: count, to: positions, model.configuration, kvType)
    }
}

/// Batched forward passes: continuous batching for a server.
///
/// Decoding one token is memory-bound: every weight matrix is streamed from memory for a single
/// row of activations. Running the rows of several sequences through one pass streams the weights
/// once for all of them: the matrix products take all rows at once, while the embeddings,
/// LayerNorms and attention stay per row, each row at its own sequence's position and against its
/// own sequence's KV cache.
extension GPT2Session {
    /// One decoding step for several sequences: `tokens[i]` is run through `sequences[i]` at its
    /// position, in one forward pass. Returns `sequences.count` rows of logits (`vocab_size`
    /// floats each), row i equal (to float rounding) to what a ``GPT2Session`` holding the same
    /// tokens returns from `append([tokens[i]])`.
    public func decode(_ sequences: [GPT2BatchSequence], tokens: [Int]) throws -> [Float] {
        guard sequences.count == tokens.count else {
            throw GenerationError.invalidOption("decode: \(sequences.count) sequences but \(tokens.count) tokens")
        }
        return try forward(sequences, tokens: tokens.map { [$0] }, logitRowsFrom: Array(repeating: 0, count: tokens.count))
    }

    /// One forward pass over several sequences, each with one or more new tokens (a decoding step
    /// and prompt chunks together): `tokens[i]` runs through `sequences[i]` after its cached
    /// tokens. Returns the logits of each sequence's new positions `logitRowsFrom[i]..<tokens[i].count`
    /// (`tokens[i].count` asks for none), concatenated in sequence order (`vocab_size` floats a row).
    ///
    /// The session lends its scratch buffers, pool and products (its own cache is not touched).
    /// The sequences must be distinct and of the session's model; everything is checked (token
    /// ids, context) before anything changes, so an error leaves every sequence as it was.
    ///
    /// One sequence alone runs the same kernels as ``append(_:logitRowsFrom:)`` (matrix x vector
    /// for one token, the batched products and per-row attention for fewer than 32, the prompt's
    /// attention products from 32), so its logits are bit for bit the session's.
    public func forward(_ sequences: [GPT2BatchSequence], tokens: [[Int]], logitRowsFrom first: [Int]) throws -> [Float] {
        guard !sequences.isEmpty else { return [] }
        guard sequences.count == tokens.count, sequences.count == first.count else {
            throw GenerationError.invalidOption("forward: \(sequences.count) sequences, \(tokens.count) token lists, \(first.count) logit starts")
        }
        var seen = Set<ObjectIdentifier>()
        for (i, s) in sequences.enumerated() {
            guard s.model === model else { throw GenerationError.invalidOption("forward: a sequence belongs to another model") }
            guard seen.insert(ObjectIdentifier(s)).inserted else { throw GenerationError.invalidOption("forward: a sequence appears twice") }
            guard !tokens[i].isEmpty else { throw ModelError.emptyInput("no tokens to process") }
            guard first[i] >= 0 && first[i] <= tokens[i].count else {
                throw GenerationError.invalidOption("forward: logit rows from \(first[i]) for \(tokens[i].count) tokens")
            }
            for t in tokens[i] where t < 0 || t >= c.vocabularySize { throw ModelError.tokenOutOfRange(id: t, vocabularySize: c.vocabularySize) }
            guard s.count + tokens[i].count <= c.contextLength else {
                throw ModelError.contextOverflow(needed: s.count + tokens[i].count, contextLength: c.contextLength)
            }
        }

        // Rows: every new token of every sequence, sequence by sequence.
        let E = c.embeddingSize, H = c.headCount, D = c.headSize, V = c.vocabularySize
        var rowSequence: [Int] = [], rowPosition: [Int] = [], rowToken: [Int] = []
        var logitRows: [Int] = []
        var maxPositions = 0
        for (i, s) in sequences.enumerated() {
            for (j, t) in tokens[i].enumerated() {
                if j >= first[i] { logitRows.append(rowSequence.count) }
                rowSequence.append(i); rowPosition.append(s.count + j); rowToken.append(t)
            }
            maxPositions = max(maxPositions, s.count + tokens[i].count)
        }
        let R = rowSequence.count
        // Memory first (each call leaves its owner valid on failure), then the pass.
        try reserve(R, positions: maxPositions)
        for (i, s) in sequences.enumerated() { try s.reserveCache(s.count + tokens[i].count) }
        // A sequence with 32 or more rows in this pass takes the prompt's attention products (as append).
        let gemm = g2w_has_fast_gemm() != 0
        var rowStart = 0
        var blocks: [(sequence: Int, row: Int, count: Int)] = []
        for (i, t) in tokens.enumerated() {
            if t.count >= 32 && gemm { blocks.append((i, rowStart, t.count)) }
            rowStart += t.count
        }
        if !blocks.isEmpty {
            let widest = blocks.map { sequences[$0.sequence].count + $0.count }.max()!
            if sequences.contains(where: { $0.kvType == .f16 }) && widest * E > wideCapacity {
                let k = UnsafeMutablePointer<Float>.allocate(capacity: widest * E), v = UnsafeMutablePointer<Float>.allocate(capacity: widest * E)
                wideKeys.deallocate(); wideValues.deallocate()
                wideKeys = k; wideValues = v
                wideCapacity = widest * E
            }
        }
        let attendOneByOne = (0..<R).filter { r in !blocks.contains { r >= $0.row && r < $0.row + $0.count } }

        let m = model
        let eps = Float(c.layerNormEpsilon)
        let x = self.x, h = self.h, qkv = self.qkv, att = self.att, ff = self.ff
        let sc = scores, ctx = scorePositions, ps = promptScores
        let scale = 1 / Float(D).squareRoot()
        // Per row: its sequence's cache (layer 0), floats per layer, element type.
        let rowKeys = rowSequence.map { sequences[$0].keys }, rowValues = rowSequence.map { sequences[$0].values }
        let rowStride = rowSequence.map { sequences[$0].cachePositions * E }
        let rowHalf = rowSequence.map { sequences[$0].kvType == .f16 }

        let began = profiling ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if profiling { profile.total += DispatchTime.now().uptimeNanoseconds - began; profile.calls += 1 }
        }
        // x[r] = wte[token] + wpe[position]                                    x: [R, E]
        for r in 0..<R {
            m.parameters.tokenEmbedding.copyRow(rowToken[r], into: x + r * E)
            m.parameters.positionEmbedding.copyRow(rowPosition[r], into: h + r * E)
            g2w_add(x + r * E, h + r * E, E)
        }
        for (l, layer) in m.parameters.layers.enumerated() {
            for r in 0..<R { g2w_layernorm(x + r * E, layer.ln1Weight, layer.ln1Bias, h + r * E, E, eps) }
            batchProduct(layer.attention, h, layer.attentionBias, qkv, R)
            let attentionStart = profiling ? DispatchTime.now().uptimeNanoseconds : 0
            // Each row's key and value into its own sequence's cache, at its own position.
            for r in 0..<R {
                let offset = l * rowStride[r] + rowPosition[r] * E
                if rowHalf[r] {
                    g2w_f32_to_f16(qkv + r * 3 * E + E, rowKeys[r].assumingMemoryBound(to: UInt16.self) + offset, E)
                    g2w_f32_to_f16(qkv + r * 3 * E + 2 * E, rowValues[r].assumingMemoryBound(to: UInt16.self) + offset, E)
                } else {
                    (rowKeys[r].assumingMemoryBound(to: Float.self) + offset).update(from: qkv + r * 3 * E + E, count: E)
                    (rowValues[r].assumingMemoryBound(to: Float.self) + offset).update(from: qkv + r * 3 * E + 2 * E, count: E)
                }
            }
            // Long chunks: per head, S = Q K^T -> causal softmax -> S V on the blocked kernel (append's prompt path).
            for b in blocks {
                let s = sequences[b.sequence], T = b.count, start = s.count, n = start + T
                var kc = s.keys.assumingMemoryBound(to: Float.self) + l * s.cachePositions * E
                var vc = s.values.assumingMemoryBound(to: Float.self) + l * s.cachePositions * E
                if s.kvType == .f16 {
                    g2w_f16_to_f32(s.keys.assumingMemoryBound(to: UInt16.self) + l * s.cachePositions * E, wideKeys, n * E)
                    g2w_f16_to_f32(s.values.assumingMemoryBound(to: UInt16.self) + l * s.cachePositions * E, wideValues, n * E)
                    kc = wideKeys; vc = wideValues
                }
                let q = qkv + b.row * 3 * E, a = att + b.row * E, k = kc, v = vc
                interleaved(H) { hd, worker in
                    let S = ps + worker * T * n
                    g2w_gemm_strided(k + hd * D, E, 1, q + hd * D, 3 * E, S, n, T, D, n, start + 1, 0)
                    for t in 0..<T { g2w_softmax_row(S + t * n, n, start + t + 1, scale) }
                    g2w_gemm_strided(v + hd * D, 1, E, S, n, a + hd * D, E, T, n, D, 0, start + 1)
                }
            }
            // Other rows: attention per (row, group of consecutive heads) against the row's sequence,
            // positions 0...rowPosition[r]; as many groups per row as it takes to give every thread work.
            let rows = attendOneByOne, n1 = rows.count
            let (groups, perGroup) = headGroups((threads + n1 - 1) / max(n1, 1))
            interleaved(n1 * groups) { job, worker in
                let g = job / n1, r = rows[job % n1]
                let h0 = g * perGroup, heads = min(H, h0 + perGroup) - h0
                let layerOffset = l * rowStride[r] + h0 * D
                let q = qkv + r * 3 * E + h0 * D, out = att + r * E + h0 * D, n = rowPosition[r] + 1
                if rowHalf[r] {
                    g2w_attend_f16(q, rowKeys[r].assumingMemoryBound(to: UInt16.self) + layerOffset,
                                   rowValues[r].assumingMemoryBound(to: UInt16.self) + layerOffset, E, n, D, heads, scale, sc + worker * H * ctx, out)
                } else {
                    g2w_attend(q, rowKeys[r].assumingMemoryBound(to: Float.self) + layerOffset,
                               rowValues[r].assumingMemoryBound(to: Float.self) + layerOffset, E, n, D, heads, scale, sc + worker * H * ctx, out)
                }
            }
            if profiling { profile.attention += DispatchTime.now().uptimeNanoseconds - attentionStart }
            batchProduct(layer.projection, att, layer.projectionBias, h, R)
            g2w_add(x, h, R * E)
            for r in 0..<R { g2w_layernorm(x + r * E, layer.ln2Weight, layer.ln2Bias, h + r * E, E, eps) }
            batchProduct(layer.feedForward, h, layer.feedForwardBias, ff, R, gelu: true)
            batchProduct(layer.feedForwardOut, ff, layer.feedForwardOutBias, h, R)
            g2w_add(x, h, R * E)
        }
        for (i, s) in sequences.enumerated() {
            s.count += tokens[i].count
            s.tokens += tokens[i]
        }

        // Final LayerNorm and LM head for the rows asked for.                  logits: [rows, V]
        let rows = logitRows.count
        guard rows > 0 else { return [] }
        for (k, r) in logitRows.enumerated() {
            g2w_layernorm(x + r * E, m.parameters.finalNormWeight, m.parameters.finalNormBias, h + k * E, E, eps)
        }
        return [Float](unsafeUninitializedCapacity: rows * V) { buffer, n in
            batchProduct(m.parameters.head, h, nil, buffer.baseAddress!, rows, isHead: true)
            n = rows * V
        }
    }

    /// Y[T, W.rows] = X[T, W.cols] W^T + bias. For 2...8 rows (a decoding step of a few
    /// sequences) the small-batch kernel, each weight row read once for all T rows
    /// (`g2w_matmul_small`, f16 and f32 weights, AVX-512), spread over the threads in chunks
    /// aligned to 12 rows, two a thread; otherwise (one row, many rows, other types or CPUs) the
    /// session's own product.
    func batchProduct(_ w: WeightMatrix, _ X: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                      _ Y: UnsafeMutablePointer<Float>, _ T: Int, isHead: Bool = false, gelu: Bool = false) {
        let code = Int32(w.dtype.traits.pointee.code)
        guard T > 1, g2w_matmul_small_available(code, T) != 0 else {
            let began = profiling && isHead ? DispatchTime.now().uptimeNanoseconds : 0
            matmul(w, X, bias, Y, T, isHead: isHead, gelu: gelu)  // records the layers' products itself
            if profiling && isHead { profile.head += DispatchTime.now().uptimeNanoseconds - began }
            return
        }
        let began = profiling ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if profiling {
                let t = DispatchTime.now().uptimeNanoseconds - began
                if isHead { profile.head += t } else { profile.layerProducts += t }
            }
        }
        let rows = w.rows, cols = w.cols
        let n = 2 * threads
        let chunk = min(rows, max(12, ((rows + n - 1) / n + 11) / 12 * 12))
        let pieces = (rows + chunk - 1) / chunk
        interleaved(pieces) { i, _ in
            let r0 = i * chunk, r1 = min(rows, r0 + chunk)
            _ = g2w_matmul_small(code, w.base, X, bias, Y, T, cols, rows, r0, r1)
            if gelu { for t in 0..<T { g2w_gelu(Y + t * rows + r0, r1 - r0) } }
        }
    }
}
