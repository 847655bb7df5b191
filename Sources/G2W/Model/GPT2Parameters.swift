import CG2W
import Foundation
import G2WFormat

/// GPT-2's parameters as typed views, whatever holds them: the read-only mapping of a `.g2w`
/// file (inference: no copy) or one owned, writable f32 block (training: ``GPT2ParameterBlock``).
/// Inference, the reference paths, the trainer and checkpoints all read this one value. The
/// names and shapes come from one schema, ``GPT2Tensors/all(_:untiedHead:)``.
public struct GPT2Parameters: @unchecked Sendable {
    /// One transformer block's tensors. Matrices are [out, in].
    public struct Layer: @unchecked Sendable {
        package let ln1Weight, ln1Bias: UnsafePointer<Float>      // [E]
        package let attention: WeightMatrix                        // [3E, E]
        package let attentionBias: UnsafePointer<Float>            // [3E]
        package let projection: WeightMatrix                       // [E, E]
        package let projectionBias: UnsafePointer<Float>           // [E]
        package let ln2Weight, ln2Bias: UnsafePointer<Float>       // [E]
        package let feedForward: WeightMatrix                      // [I, E]
        package let feedForwardBias: UnsafePointer<Float>          // [I]
        package let feedForwardOut: WeightMatrix                   // [E, I]
        package let feedForwardOutBias: UnsafePointer<Float>       // [E]
    }

    /// The hyperparameters the views were built for.
    public let configuration: GPT2Configuration
    package let tokenEmbedding: WeightMatrix      // [V, E]
    package let positionEmbedding: WeightMatrix   // [n_ctx, E]
    package let layers: [Layer]
    package let finalNormWeight, finalNormBias: UnsafePointer<Float>
    /// The LM head: `wte` unless the model has a separate `lm_head.weight`.
    package let head: WeightMatrix
    /// Whether the LM head is a separate matrix (not tied to `wte`).
    public let hasSeparateHead: Bool

    /// Builds the views. `storage(name, shape)` returns where the tensor of the schema with that
    /// name and shape lies and its element type, or throws (missing, wrong shape). Vectors must
    /// be f32; matrices may be of any element type.
    public init(configuration c: GPT2Configuration, untiedHead: Bool,
                storage: (_ name: String, _ shape: [Int]) throws -> (UnsafeRawPointer, G2WDType)) throws {
        configuration = c
        // Shapes are asked tensor by tensor (not the whole schema up front): a file claiming 2^20
        // layers fails at its first missing tensor instead of building millions of names.
        func shape(_ name: String) -> [Int] { GPT2Tensors.shape(of: name, c) }
        func vector(_ name: String) throws -> UnsafePointer<Float> {
            let (p, dtype) = try storage(name, shape(name))
            guard dtype == .f32 else { throw ModelError.wrongDType(name: name, found: dtype.description) }
            return p.assumingMemoryBound(to: Float.self)
        }
        func matrix(_ name: String) throws -> WeightMatrix {
            let sh = shape(name)
            let (p, dtype) = try storage(name, sh)
            return WeightMatrix(base: p, dtype: dtype, rows: sh[0], cols: sh[1])
        }
        tokenEmbedding = try matrix(GPT2Tensors.tokenEmbedding)
        positionEmbedding = try matrix(GPT2Tensors.positionEmbedding)
        layers = try (0..<c.layerCount).map { l in
            func n(_ s: String) -> String { GPT2Tensors.layer(l, s) }
            return Layer(ln1Weight: try vector(n("ln_1.weight")), ln1Bias: try vector(n("ln_1.bias")),
                         attention: try matrix(n("attn.c_attn.weight")), attentionBias: try vector(n("attn.c_attn.bias")),
                         projection: try matrix(n("attn.c_proj.weight")), projectionBias: try vector(n("attn.c_proj.bias")),
                         ln2Weight: try vector(n("ln_2.weight")), ln2Bias: try vector(n("ln_2.bias")),
                         feedForward: try matrix(n("mlp.c_fc.weight")), feedForwardBias: try vector(n("mlp.c_fc.bias")),
                         feedForwardOut: try matrix(n("mlp.c_proj.weight")), feedForwardOutBias: try vector(n("mlp.c_proj.bias")))
        }
        finalNormWeight = try vector(GPT2Tensors.finalNormWeight)
        finalNormBias = try vector(GPT2Tensors.finalNormBias)
        hasSeparateHead = untiedHead
        head = untiedHead ? try matrix(GPT2Tensors.lmHead) : tokenEmbedding
    }
}

/// An error allocating memory for a model, its training state or its activations.
public struct AllocationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What the memory was for.
    public var purpose: String
    /// The size asked for, in bytes (`Int.max` when the size overflowed).
    public var bytes: Int
    /// An error for `bytes` bytes of `purpose` (a phrase: "the key cache").
    public init(purpose: String, bytes: Int) { self.purpose = purpose; self.bytes = bytes }
    /// The message: "cannot allocate N bytes for PURPOSE".
    public var description: String { "cannot allocate \(bytes) bytes for \(purpose)" }
}

/// Zero-initialised memory that is owned and freed with this object; allocation failure is an
/// error, never an abort.
public final class FloatBuffer: @unchecked Sendable {
    /// Floats in the buffer (at least one is allocated, even for 0).
    public let count: Int
    /// The first float; valid while this object lives.
    public let base: UnsafeMutablePointer<Float>

    /// `count` zeros. The pages are written once here, so the work of mapping them (a fault and,
    /// for pages first read as the shared zero page, a TLB shootdown on every CPU) is paid now
    /// rather than inside the first computation that writes them.
    public init(count: Int, purpose: String) throws {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !overflow, let p = calloc(max(count, 1), MemoryLayout<Float>.stride) else {
            throw AllocationError(purpose: purpose, bytes: overflow ? Int.max : bytes)
        }
        memset(p, 0, bytes)
        self.count = count
        base = p.assumingMemoryBound(to: Float.self)
    }

    deinit { free(base) }

    /// The `count` floats as a buffer; valid while this object lives.
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
    /// Sets every element to zero.
    public func zero() { memset(base, 0, count * MemoryLayout<Float>.stride) }
}

/// GPT-2's parameters in one owned, contiguous, writable f32 block, laid out in schema order
/// (llm.c's `ParameterTensors`): the trainer's master weights, and, with the same layout, its
/// gradients and AdamW's two moments, so the optimizer runs over flat arrays.
public final class GPT2ParameterBlock: @unchecked Sendable {
    /// A tensor of the schema and where it lies in the block (in floats).
    public struct Entry: Sendable, Equatable {
        /// The tensor's name (``GPT2Tensors``).
        public var name: String
        /// Its `.g2w` shape (matrices [out, in]).
        public var shape: [Int]
        /// Where its first element lies, in floats from the start of the block.
        public var offset: Int
        /// Its elements: the product of `shape`.
        public var count: Int
    }

    /// The hyperparameters that fix the layout.
    public let configuration: GPT2Configuration
    /// Whether the block has a separate LM head (`lm_head.weight`) after the final LayerNorm.
    public let untiedHead: Bool
    /// Every tensor of the schema, in layout (file) order.
    public let entries: [Entry]
    /// The memory: ``count`` floats, owned by the block.
    public let storage: FloatBuffer
    /// Typed views into the block.
    public let parameters: GPT2Parameters

    /// A block of zeros with the layout of `configuration` (and a separate head if `untiedHead`).
    public init(configuration c: GPT2Configuration, untiedHead: Bool, purpose: String = "parameters") throws {
        try c.validate()
        configuration = c
        self.untiedHead = untiedHead
        var entries: [Entry] = []
        var offset = 0
        for (name, shape) in GPT2Tensors.all(c, untiedHead: untiedHead) {
            let n = shape.reduce(1, *)
            entries.append(Entry(name: name, shape: shape, offset: offset, count: n))
            offset += n
        }
        self.entries = entries
        storage = try FloatBuffer(count: offset, purpose: "\(purpose) (\(offset) floats)")
        let base = storage.base
        let index = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0) })
        parameters = try GPT2Parameters(configuration: c, untiedHead: untiedHead) { name, _ in
            (UnsafeRawPointer(base + index[name]!.offset), .f32)
        }
    }

    /// A block with `other`'s layout (same configuration and head), all zeros: gradients, moments.
    public convenience init(sameLayoutAs other: GPT2ParameterBlock, purpose: String) throws {
        try self.init(configuration: other.configuration, untiedHead: other.untiedHead, purpose: purpose)
    }

    /// A writable f32 copy of a model's parameters (f16 weights are widened exactly, quantized
    /// ones dequantized).
    public convenience init(copying model: GPT2Model) throws {
        try self.init(configuration: model.configuration, untiedHead: model.parameters.hasSeparateHead)
        for e in entries {
            guard let t = model.file.tensor(named: e.name) else { throw ModelError.missingTensor(e.name) }
            let cols = e.shape.last!, rows = e.count / cols
            t.dtype.traits.pointee.dequantize(t.baseAddress, rows, cols, 0, rows, storage.base + e.offset)
        }
    }

    /// Total floats.
    public var count: Int { storage.count }

    /// The elements of tensor `name`, or nil if the schema has no such tensor.
    public func tensor(named name: String) -> UnsafeMutableBufferPointer<Float>? {
        guard let e = entries.first(where: { $0.name == name }) else { return nil }
        return UnsafeMutableBufferPointer(start: storage.base + e.offset, count: e.count)
    }

    /// Copies every value from a block of the same layout.
    public func copy(from other: GPT2ParameterBlock) {
        precondition(other.entries == entries, "blocks of different layouts")
        storage.base.update(from: other.storage.base, count: count)
    }
}
