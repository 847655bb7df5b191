import CG2W
import Dispatch
import Foundation
import G2WFormat

/// Inference state for one sequence: the KV cache and scratch buffers. Feed tokens with
/// ``append(_:allPositions:)``: the first call processes the prompt in one batched pass
/// (matrix x matrix), later calls one token at a time (matrix x vector), reusing the cache.
///
/// Not thread-safe: one session per sequence. Work inside a call is spread over `threads`.
public final class GPT2Session {
    /// The model the session runs.
    public let model: GPT2Model
    /// Threads a computation runs on, the caller included (``ComputeContext/threads``).
    public let threads: Int
    /// Tokens in the cache.
    public private(set) var count = 0
    /// The tokens in the cache, in order.
    public private(set) var tokens: [Int] = []
    /// The logits of the last position processed (`vocab_size` floats); nil before the first
    /// call and after ``reset()``.
    public private(set) var lastLogits: [Float]?

    /// Where a forward pass's time goes, accumulated over calls while ``profiling`` is on.
    public struct Profile: Sendable {
        /// Nanoseconds in the layers' matrix products (thread hand-offs included).
        public var layerProducts: UInt64 = 0
        /// Nanoseconds in the LM head's product.
        public var head: UInt64 = 0
        /// Nanoseconds in attention over the KV cache (appending to the cache included).
        public var attention: UInt64 = 0
        /// Parallel sections run (hand-offs to the worker threads and back).
        public var parallelSections = 0
        /// Nanoseconds in whole `append` calls.
        public var total: UInt64 = 0
        /// Everything else: embeddings, LayerNorms, residual adds (and attention: see ``attention``).
        public var other: UInt64 { total - layerProducts - head }
        /// `append` calls timed.
        public var calls = 0
    }
    /// Turns the time split of ``profile`` on (a clock read around each product: ~60 per token).
    public var profiling = false
    /// The time accumulated while ``profiling`` is on; not cleared by ``reset()`` (assign
    /// `Profile()` to start over).
    public var profile = Profile()

    let c: GPT2Configuration
    /// Element type of the KV cache: f32, or f16 (half the memory, and half the bytes attention
    /// reads every token deep in the context; keys and values rounded to binary16).
    public let kvType: G2WDType
    // KV cache: [layer][position][E], keys and values, of kvType.
    var keys: UnsafeMutableRawPointer
    var values: UnsafeMutableRawPointer
    /// Positions the cache has room for (per layer); grown, up to n_ctx, as the sequence grows,
    /// so a model with a long context runs a short prompt in memory for that prompt.
    var cachePositions = 0
    /// Positions the score buffers have room for.
    var scorePositions = 0
    /// f16 cache, batched prompts: one layer's keys and values widened to f32 for the products.
    var wideKeys = UnsafeMutablePointer<Float>.allocate(capacity: 1), wideValues = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    var wideCapacity = 0
    // Scratch sized for `capacity` rows; grown on demand.
    var capacity = 0
    var x, h, qkv, att, ff: UnsafeMutablePointer<Float>
    var scores: UnsafeMutablePointer<Float>  // per thread: n_head x scorePositions floats
    /// The prepared (int8-quantized) activation of a decoding step's product, for quantized weights.
    var prepared = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    var preparedCapacity = 64
    /// Per thread: capacity x scorePositions floats, the score matrix of one head for a batched prompt.
    var promptScores: UnsafeMutablePointer<Float>
    /// The worker threads the session computes on, shared with other sessions.
    public let compute: ComputeContext
    /// The context's pool (the calling thread is worker 0); nil if none could be made (then all
    /// work runs on the calling thread). Valid while `compute` lives (the session holds it).
    let pool: OpaquePointer?

    /// A session on the process's shared worker pool for `threads` threads
    /// (``ComputeContext/shared(threads:)``; default: the number of active processors).
    /// - Parameter kvType: `.f32` (default) or `.f16`.
    public convenience init(model: GPT2Model, threads: Int? = nil, kvType: G2WDType = .f32) throws {
        try self.init(model: model, compute: .shared(threads: threads), kvType: kvType)
    }

    /// A session computing on `compute` (sessions used from several threads at once take turns
    /// on it, one parallel section at a time).
    public init(model: GPT2Model, compute: ComputeContext, kvType: G2WDType = .f32) throws {
        guard kvType == .f32 || kvType == .f16 else { throw GenerationError.invalidOption("the KV cache type must be f32 or f16, not \(kvType)") }
        self.model = model
        self.kvType = kvType
        c = model.configuration
        // A thread that cannot be started leaves the pool smaller; the session uses what it got.
        self.compute = compute
        pool = compute.pool
        self.threads = compute.threads
        keys = malloc(1)!
        values = malloc(1)!
        x = Self.placeholder(); h = Self.placeholder(); qkv = Self.placeholder(); att = Self.placeholder(); ff = Self.placeholder()
        scores = Self.placeholder()
        promptScores = Self.placeholder()
        // A failure here runs deinit (the object is fully initialized), which frees what was made.
        try reserve(1)
        try reserveCache(min(c.contextLength, 64))
    }

    static func placeholder() -> UnsafeMutablePointer<Float> { malloc(4)!.assumingMemoryBound(to: Float.self) }

    /// `count` floats from malloc; failure (or a size that overflows) is an error, not an abort.
    static func floats(_ count: Int, _ purpose: String) throws -> UnsafeMutablePointer<Float> {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: 4)
        guard !overflow, let p = malloc(bytes) else { throw AllocationError(purpose: purpose, bytes: overflow ? Int.max : bytes) }
        return p.assumingMemoryBound(to: Float.self)
    }

    /// Grows the KV cache to hold `positions` per layer (at least doubling, at most n_ctx),
    /// copying the cached positions layer by layer.
    func reserveCache(_ positions: Int) throws {
        try growKVCache(keys: &keys, values: &values, cachePositions: &cachePositions, count: count, to: positions, c, kvType)
    }

    deinit {
        free(keys); free(values); prepared.deallocate(); wideKeys.deallocate(); wideValues.deallocate()
        for p in [x, h, qkv, att, ff, scores, promptScores] { free(p) }
    }

    /// Forgets the sequence (the cache is overwritten by the next tokens).
    public func reset() { count = 0; tokens = []; lastLogits = nil }

    /// Scratch for `rows` new positions with `positions` in all (scores are per position). New
    /// buffers are allocated before the old ones are freed: a failure leaves the session as it was.
    func reserve(_ rows: Int, positions: Int = 1) throws {
        let e = c.embeddingSize
        if rows > capacity {
            var fresh: [UnsafeMutablePointer<Float>] = []
            do {
                for n in [rows * e, rows * e, rows * 3 * e, rows * e, rows * c.innerSize] { fresh.append(try Self.floats(n, "activations")) }
            } catch {
                fresh.forEach { free($0) }
                throw error
            }
            for p in [x, h, qkv, att, ff] { free(p) }
            x = fresh[0]; h = fresh[1]; qkv = fresh[2]; att = fresh[3]; ff = fresh[4]
            capacity = rows
            scorePositions = 0  // the prompt score buffer depends on rows too
        }
        if positions > scorePositions {
            let n = min(c.contextLength, max(positions, 2 * scorePositions, 64))  // doubling: amortized
            let s1 = try Self.floats(threads * c.headCount * n, "attention scores")  // per thread, [heads, positions]
            let s2: UnsafeMutablePointer<Float>
            // Only the batched attention of 32 or more rows uses it: per thread, [rows, positions].
            do { s2 = try Self.floats(capacity >= 32 ? threads * capacity * n : 1, "prompt attention scores") } catch { free(s1); throw error }
            free(scores); free(promptScores)
            scores = s1; promptScores = s2
            scorePositions = n
        }
    }

    /// Runs `tokens` through the model after the cached ones and returns the logits of the last
    /// position (`vocab_size` floats), or of every new position (`tokens.count x vocab_size`).
    public func append(_ tokens: [Int], allPositions: Bool = false) throws -> [Float] {
        try append(tokens, logitRowsFrom: allPositions ? 0 : tokens.count - 1)
    }

    /// Like ``append(_:allPositions:)``, returning the logits of new positions `first..<tokens.count`
    /// (`(tokens.count - first) x vocab_size` floats).
    public func append(_ tokens: [Int], logitRowsFrom first: Int) throws -> [Float] {
        guard !tokens.isEmpty else { throw ModelError.emptyInput("no tokens to process") }
        for t in tokens where t < 0 || t >= c.vocabularySize { throw ModelError.tokenOutOfRange(id: t, vocabularySize: c.vocabularySize) }
        guard count + tokens.count <= c.contextLength else {
            throw ModelError.contextOverflow(needed: count + tokens.count, contextLength: c.contextLength)
        }
        let T = tokens.count, E = c.embeddingSize, H = c.headCount, D = c.headSize
        let start = count
        let began = profiling ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if profiling { profile.total += DispatchTime.now().uptimeNanoseconds - began; profile.calls += 1 }
        }
        try reserve(T, positions: count + T)
        try reserveCache(count + T)
        let eps = Float(c.layerNormEpsilon)
        let m = model

        // x[t] = wte[token] + wpe[position]                                    x: [T, E]
        for (t, tok) in tokens.enumerated() {
            m.parameters.tokenEmbedding.copyRow(tok, into: x + t * E)
            m.parameters.positionEmbedding.copyRow(start + t, into: h + t * E)
            g2w_add(x + t * E, h + t * E, E)
        }
        for (l, layer) in m.parameters.layers.enumerated() {
            let layerOffset = l * cachePositions * E
            // Attention block: h = LN1(x); qkv = h W_attn^T + b                qkv: [T, 3E]
            for t in 0..<T { g2w_layernorm(x + t * E, layer.ln1Weight, layer.ln1Bias, h + t * E, E, eps) }
            matmul(layer.attention, h, layer.attentionBias, qkv, T)
            // Append k, v to the cache.                                         cache: [n_ctx, E]
            let attentionStart = profiling ? DispatchTime.now().uptimeNanoseconds : 0
            let half = kvType == .f16
            let kHalf = keys.assumingMemoryBound(to: UInt16.self) + layerOffset, vHalf = values.assumingMemoryBound(to: UInt16.self) + layerOffset
            var kCache = keys.assumingMemoryBound(to: Float.self) + layerOffset, vCache = values.assumingMemoryBound(to: Float.self) + layerOffset
            for t in 0..<T {
                if half {
                    g2w_f32_to_f16(qkv + t * 3 * E + E, kHalf + (start + t) * E, E)
                    g2w_f32_to_f16(qkv + t * 3 * E + 2 * E, vHalf + (start + t) * E, E)
                } else {
                    (kCache + (start + t) * E).update(from: qkv + t * 3 * E + E, count: E)
                    (vCache + (start + t) * E).update(from: qkv + t * 3 * E + 2 * E, count: E)
                }
            }
            // Causal attention per (position, head): att[t, head] over positions 0...start+t.
            let scale = 1 / Float(D).squareRoot()
            let q = qkv, a = att, sc = scores, ctx = scorePositions
            if T >= 32 && g2w_has_fast_gemm() != 0 {
                // Many queries: per head, two matrix products on the blocked kernel,
                //   S = Q K^T [T, n] -> causal softmax per row -> att = S V [T, D],
                // heads dealt round-robin to the workers (each with a [T, n] score buffer).
                // Row t sees positions < start + t + 1: both products skip the masked triangle.
                let n = start + T, ps = promptScores
                if half {  // the products read f32: this layer's cache, widened
                    if n * E > wideCapacity {
                        wideKeys.deallocate(); wideValues.deallocate()
                        wideKeys = .allocate(capacity: n * E); wideValues = .allocate(capacity: n * E)
                        wideCapacity = n * E
                    }
                    g2w_f16_to_f32(kHalf, wideKeys, n * E)
                    g2w_f16_to_f32(vHalf, wideValues, n * E)
                    kCache = wideKeys; vCache = wideValues
                }
                let kc = kCache, vc = vCache
                interleaved(H) { hd, worker in
                    let S = ps + worker * T * n
                    g2w_gemm_strided(kc + hd * D, E, 1, q + hd * D, 3 * E, S, n, T, D, n, start + 1, 0)
                    for t in 0..<T { g2w_softmax_row(S + t * n, n, start + t + 1, scale) }
                    g2w_gemm_strided(vc + hd * D, 1, E, S, n, a + hd * D, E, T, n, D, 0, start + 1)
                }
            } else {
                // Jobs of (position, group of consecutive heads), one group per thread: a job reads
                // one stretch of each cache row (its heads' slices), which streams better than a head
                // at a time. Dealt round-robin, so the workers get equal shares of the causal triangle.
                let kc = kCache, vc = vCache
                let (groups, perGroup) = headGroups(threads)
                interleaved(T * groups) { job, worker in
                    let g = job / T, t = job % T
                    let h0 = g * perGroup, heads = min(H, h0 + perGroup) - h0
                    if half {
                        g2w_attend_f16(q + t * 3 * E + h0 * D, kHalf + h0 * D, vHalf + h0 * D, E, start + t + 1, D, heads, scale,
                                       sc + worker * H * ctx, a + t * E + h0 * D)
                    } else {
                        g2w_attend(q + t * 3 * E + h0 * D, kc + h0 * D, vc + h0 * D, E, start + t + 1, D, heads, scale,
                                   sc + worker * H * ctx, a + t * E + h0 * D)
                    }
                }
            }
            if profiling { profile.attention += DispatchTime.now().uptimeNanoseconds - attentionStart }
            // x += att W_proj^T + b
            matmul(layer.projection, att, layer.projectionBias, h, T)
            g2w_add(x, h, T * E)
            // MLP block: x += gelu(LN2(x) W_fc^T + b) W_proj^T + b             ff: [T, I]
            for t in 0..<T { g2w_layernorm(x + t * E, layer.ln2Weight, layer.ln2Bias, h + t * E, E, eps) }
            matmul(layer.feedForward, h, layer.feedForwardBias, ff, T, gelu: true)  // GELU applied by each thread to its rows
            matmul(layer.feedForwardOut, ff, layer.feedForwardOutBias, h, T)
            g2w_add(x, h, T * E)
        }
        count += T
        self.tokens += tokens
        lastLogits = nil
        // Final LayerNorm and LM head, for the rows asked for.                logits: [rows, V]
        precondition(first >= 0 && first < T, "logit rows out of range")
        let rows = T - first
        for r in 0..<rows { g2w_layernorm(x + (first + r) * E, m.parameters.finalNormWeight, m.parameters.finalNormBias, h + r * E, E, eps) }
        let headStart = profiling ? DispatchTime.now().uptimeNanoseconds : 0
        // Every element is written by the product: no zero-filling first (200 KB per token).
        let logits = [Float](unsafeUninitializedCapacity: rows * c.vocabularySize) { buffer, n in
            matmul(m.parameters.head, h, nil, buffer.baseAddress!, rows, isHead: true)
            n = rows * c.vocabularySize
        }
        if profiling { profile.head += DispatchTime.now().uptimeNanoseconds - headStart }
        lastLogits = rows == 1 ? logits : Array(logits[((rows - 1) * c.vocabularySize)...])
        return logits
    }

    /// Y[T, W.rows] = X[T, W.cols] W^T + bias, spread over the threads by output rows. The
    /// element type's kernels come from its traits; for one row (decoding), x is first prepared
    /// once (quantized to int8 per block for the quantized types) and shared by the threads.
    /// With `gelu`, each thread applies GELU to the outputs it computed (no separate pass and
    /// hand-off for the activation).
    func matmul(_ w: WeightMatrix, _ X: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ Y: UnsafeMutablePointer<Float>, _ T: Int,
                isHead: Bool = false, gelu: Bool = false) {
        let began = profiling && !isHead ? DispatchTime.now().uptimeNanoseconds : 0
        defer { if profiling && !isHead { profile.layerProducts += DispatchTime.now().uptimeNanoseconds - began } }
        let cols = w.cols, rows = w.rows
        let k = w.dtype.traits.pointee
        // Chunks aligned to 12 rows (the kernels' 4-row and 3-row tiles). Decoding quantized
        // weights deals two chunks per thread, claimed one at a time, so a thread slowed down (a
        // shared core, a noisy neighbour) holds the others at the barrier for less of the matrix;
        // each chunk starts its streams cold, so more is worse (124M, two threads, Zen 5, passes
        // interleaved in one process: two chunks 2-4 % (q8_0) and 6-8 % (q4_0) faster than four;
        // one chunk in between). f16 and f32 keep one chunk per thread.
        let n = T == 1 && w.dtype.isQuantized ? 2 * threads : threads
        let per = (rows + n - 1) / n
        let chunk = min(rows, max(12, (per + 11) / 12 * 12))
        let pieces = (rows + chunk - 1) / chunk
        if T == 1 {
            var xp = UnsafeRawPointer(X)
            if let prepare = k.prepare {
                let bytes = k.prepared_bytes(cols)
                if bytes > preparedCapacity {
                    prepared.deallocate()
                    prepared = .allocate(byteCount: bytes, alignment: 64)
                    preparedCapacity = bytes
                }
                prepare(X, cols, prepared)
                xp = UnsafeRawPointer(prepared)
            }
            interleaved(pieces) { i, _ in
                let r0 = i * chunk, r1 = min(rows, r0 + chunk)
                k.matvec(w.base, rows, cols, xp, bias, Y, r0, r1)
                if gelu { g2w_gelu(Y + r0, r1 - r0) }
            }
        } else {
            interleaved(pieces) { i, _ in
                let r0 = i * chunk, r1 = min(rows, r0 + chunk)
                k.matmul(w.base, rows, cols, X, bias, Y, T, rows, r0, r1)
                if gelu { for t in 0..<T { g2w_gelu(Y + t * rows + r0, r1 - r0) } }
            }
        }
    }

    /// The heads dealt as about `wanted` groups of consecutive heads, none empty: `size` heads a
    /// group (the last may have fewer), `groups` of them. Decoding attention's jobs.
    func headGroups(_ wanted: Int) -> (groups: Int, size: Int) {
        let H = c.headCount, n = max(1, min(H, wanted))
        let size = (H + n - 1) / n
        return ((H + size - 1) / size, size)
    }

    /// Runs `body(job, worker)` for jobs 0..<n on the pool: the threads take the jobs one at a time,
    /// in order, so consecutive jobs run side by side. `worker` (0..<threads) indexes per-thread scratch.
    func interleaved(_ n: Int, _ body: (Int, Int) -> Void) {
        guard n > 1, threads > 1, let pool else { for j in 0..<n { body(j, 0) }; return }
        if profiling { profile.parallelSections += 1 }
        withoutActuallyEscaping(body) { body in
            var body = body
            withUnsafeMutablePointer(to: &body) { context in
                g2w_pool_run(pool, n, { context, job, worker in
                    context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(job, worker)
                }, context)
            }
        }
    }

    /// Runs `body(range, worker)` over 0..<n split into one contiguous range per thread.
    func parallel(_ n: Int, _ body: (Range<Int>, Int) -> Void) {
        let workers = min(threads, n)
        let per = (n + workers - 1) / workers
        interleaved(workers) { w, worker in
            let lo = w * per, hi = min(n, lo + per)
            if lo < hi { body(lo..<hi, worker) }
        }
    }
}

/// Memory for a KV cache (freed with `free`). From 2 MB up it is aligned to 2 MB and asks for
/// transparent huge pages: attention reads every position's keys and values each token, after
/// the token's weights have gone through the caches, and with 4 KB pages each layer's slice
/// (hundreds of KB) costs a page walk per 4 KB on top of its reads.
func allocateCache(_ bytes: Int) -> UnsafeMutableRawPointer? {
    let huge = 2 << 20
    guard bytes >= huge else { return malloc(max(bytes, 1)) }
    let (padded, overflow) = bytes.addingReportingOverflow(huge - 1)
    guard !overflow else { return nil }
    let rounded = padded / huge * huge
    var p: UnsafeMutableRawPointer?
    guard posix_memalign(&p, huge, rounded) == 0, let p else { return nil }
    _ = madvise(p, rounded, MADV_HUGEPAGE)
    return p
}

/// Grows a KV cache (`keys`, `values`: [layer][position][E] of `kvType`) to hold `positions` per
/// layer (at least doubling, at most n_ctx), copying the first `count` positions layer by layer.
/// A failure leaves the cache as it was. One routine for sessions and batched sequences.
func growKVCache(keys: inout UnsafeMutableRawPointer, values: inout UnsafeMutableRawPointer, cachePositions: inout Int,
                 count: Int, to positions: Int, _ c: GPT2Configuration, _ kvType: G2WDType) throws {
    guard positions > cachePositions else { return }
    let newPositions = min(c.contextLength, max(positions, 2 * cachePositions))
    let E = c.embeddingSize, size = kvType.size
    let (perLayer, o1) = newPositions.multipliedReportingOverflow(by: E * size)
    let (bytes, o2) = perLayer.multipliedReportingOverflow(by: c.layerCount)
    guard !o1, !o2, let k = allocateCache(bytes) else {
        throw AllocationError(purpose: "the key cache (\(newPositions) positions, \(kvType))", bytes: o1 || o2 ? Int.max : bytes)
    }
    guard let v = allocateCache(bytes) else {
        free(k)
        throw AllocationError(purpose: "the value cache (\(newPositions) positions, \(kvType))", bytes: bytes)
    }
    for l in 0..<c.layerCount where count > 0 {
        memcpy(k + l * perLayer, keys + l * cachePositions * E * size, count * E * size)
        memcpy(v + l * perLayer, values + l * cachePositions * E * size, count * E * size)
    }
    free(keys); free(values)
    keys = k; values = v
    cachePositions = newPositions
}
