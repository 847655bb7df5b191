import CG2W
import Foundation
import G2WFormat
import G2WTokenizer

/// Writes GPT-2 `.g2w` files from parameters in memory: the GPT-2 profile's metadata and tensors
/// (spec/g2w.md, section 12), the tokenizer, and optionally more metadata and tensors (the
/// training state of a checkpoint, section 14). Atomic like every g2w writer: a temporary file
/// beside the destination, fsync, rename; an error or interruption leaves no partial file.
public enum GPT2ModelWriter {
    /// An extra f32 tensor (checkpoints: the optimizer's moments).
    public struct ExtraTensor {
        /// The tensor's name in the file; must differ from the model's tensor names.
        public var name: String
        /// Its dimensions; their product is `values.count`, and the last is the row length.
        public var shape: [Int]
        /// The elements, row-major, written as f32; must stay valid until `write` returns.
        public var values: UnsafeBufferPointer<Float>
        /// An extra tensor of `shape` with `values` (not copied).
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) { self.name = name; self.shape = shape; self.values = values }
    }

    /// The `tokenizer.*` metadata of a tokenizer (spec 12.2).
    public static func tokenizerMetadata(_ t: GPT2Tokenizer) -> G2WMetadata {
        var m = G2WMetadata()
        m["tokenizer.model"] = .string("gpt2-bpe")
        m["tokenizer.vocab"] = .stringArray(G2WStringArray(t.vocabularyInIDOrder))
        m["tokenizer.merges"] = .stringArray(G2WStringArray(t.mergeStrings))
        if let eos = t.endOfTextID { m["tokenizer.eos_id"] = .uint(UInt64(eos)) }
        return m
    }

    /// The `tokenizer.*` entries of an existing file, copied as they are (no rebuild).
    public static func tokenizerMetadata(of file: G2WFile) -> G2WMetadata {
        var m = G2WMetadata()
        for (k, v) in file.metadata where k.hasPrefix("tokenizer.") { m[k] = v }
        return m
    }

    /// Writes `block` to `path`: 2-D weights as `dtype` (f16 rounded to nearest even; quantized
    /// types with ggml's reference rounding),
    /// vectors as f32. `tokenizer` is `tokenizer.*` metadata (empty: no tokenizer); `metadata`
    /// adds application keys; `extraTensors` follow the model's. `writer` names the program in
    /// `g2w.converter`.
    public static func write(_ block: GPT2ParameterBlock, to path: String, dtype: G2WDType = .f32, tokenizer: G2WMetadata = G2WMetadata(),
                             metadata extra: G2WMetadata = G2WMetadata(), extraTensors: [ExtraTensor] = [], writer program: String,
                             overwrite: Bool = false) throws {
        var meta = G2WMetadata()
        meta["g2w.architecture"] = .string("gpt2")
        meta["g2w.converter"] = .string("\(program) \(G2WVersion.string)")
        block.configuration.write(to: &meta)
        for (k, v) in tokenizer { meta[k] = v }
        for (k, v) in extra { meta[k] = v }
        var descriptors = block.entries.map { G2WTensorDescriptor(name: $0.name, dtype: $0.shape.count == 2 ? dtype : .f32, shape: $0.shape) }
        descriptors += extraTensors.map { G2WTensorDescriptor(name: $0.name, dtype: .f32, shape: $0.shape) }
        let w = try G2WWriter(path: path, metadata: meta, tensors: descriptors, overwrite: overwrite)
        do {
            for (e, d) in zip(block.entries, descriptors) {
                try write(UnsafeBufferPointer(block.tensor(named: e.name)!), name: e.name, shape: e.shape, as: d.dtype, to: w)
            }
            for t in extraTensors { try write(t.values, name: t.name, shape: t.shape, as: .f32, to: w) }
            try w.finish()
        } catch {
            w.cancel()
            throw error
        }
    }

    /// Streams values in slices of about 1 Mi elements (whole rows), encoded as `dtype`.
    static func write(_ values: UnsafeBufferPointer<Float>, name: String, shape: [Int], as dtype: G2WDType, to w: G2WWriter) throws {
        var e = G2WTensorEncoder(writer: w, name: name, dtype: dtype, shape: shape)
        let cols = shape.last!
        let slice = max(1, (1 << 20) / cols) * cols
        var i = 0
        while i < values.count {
            let n = min(slice, values.count - i)
            try e.append(UnsafeBufferPointer(rebasing: values[i..<(i + n)]))
            i += n
        }
        try e.finish()
    }
}
