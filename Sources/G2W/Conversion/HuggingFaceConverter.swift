import CG2W
import Foundation
import G2WFormat
import G2WTokenizer

/// An error while converting a checkpoint, saying what and where.
public struct ConversionError: Error, CustomStringConvertible, Equatable {
    /// The message: what went wrong and where (the path, the tensor, the field).
    public var description: String
    /// The error this one reports, when it comes from a lower layer (a `G2WFormatError` from the
    /// writer or the file readers, a `TokenizerError`, a `JSONError`, a `ModelError`), so a
    /// caller can match it; nil when the converter found the problem itself.
    public var underlying: (any Error)?

    /// An error with `description` as its message, reporting `underlying` if given.
    public init(_ description: String, underlying: (any Error)? = nil) {
        self.description = description
        self.underlying = underlying
    }

    /// Equal when the messages are equal.
    public static func == (a: ConversionError, b: ConversionError) -> Bool { a.description == b.description }
}

/// Converts a Hugging Face GPT-2 checkpoint (`model.safetensors` + `config.json` + tokenizer
/// files) to one self-contained `.g2w` file.
///
/// Reads the safetensors file itself through a memory map (or the shards a
/// `model.safetensors.index.json` lists, validated first: see `SafetensorsCheckpoint`); accepts keys with and without the
/// `transformer.` prefix; drops the `attn.bias` / `attn.masked_bias` mask buffers; stores
/// `lm_head.weight` only when it differs from `wte`; transposes Conv1D weights to [out, in];
/// converts F32/F16/BF16 sources to the requested dtype (2-D weights) or f32 (biases, LayerNorm).
/// Memory stays bounded by about one tensor. Output is atomic (temporary file + rename).
public struct HuggingFaceConverter {
    public struct Options {
        /// Element type of the layers' weight matrices. Default f16.
        public var dtype: G2WDType = .f16
        /// Element type of the embeddings (`wte`, `wpe`) and the LM head, read in full every token
        /// and the most sensitive to rounding; nil: ``defaultHeadDType(for:)``.
        public var headDType: G2WDType?
        /// Output path; default: the input with its extension replaced by `.g2w`.
        public var output: String?
        public var overwrite = false
        /// `config.json`; default: beside the model.
        public var configPath: String?
        /// n_head when there is no config.json (it cannot be inferred from shapes).
        public var headCount: Int?
        /// Explicit tokenizer files: (vocab.json/encoder.json, merges.txt/vocab.bpe) or tokenizer.json.
        public var vocabPath: String?
        public var mergesPath: String?
        public var tokenizerJSONPath: String?
        /// Do not look for or embed a tokenizer.
        public var skipTokenizer = false
        /// Called after each tensor: (tensors done, total, bytes written so far, total bytes).
        public var progress: ((Int, Int, UInt64, UInt64) -> Void)?
        /// Called with non-fatal warnings.
        public var warn: ((String) -> Void)?
        public init() {}
    }

    public struct Summary: Sendable {
        public var output: String
        public var configuration: GPT2Configuration
        public var tensorCount: Int
        public var parameterCount: Int
        public var bytesWritten: UInt64
        public var seconds: Double
        public var tokenizerSource: String?
        public var untiedHead: Bool
        public var droppedBuffers: Int
    }

    public let input: String
    public var options: Options

    /// The embeddings' and LM head's type when none is given: q8_0 for q4_0 layers (4-bit
    /// embeddings cost the most quality per byte saved), otherwise the layers' type.
    public static func defaultHeadDType(for dtype: G2WDType) -> G2WDType { dtype == .q4_0 ? .q8_0 : dtype }

    /// The element type of tensor `name` of `shape` under `options`: vectors f32, embeddings and
    /// head the head type, other matrices the layers' type.
    static func dtype(of name: String, shape: [Int], _ o: Options) -> G2WDType {
        guard shape.count == 2 else { return .f32 }
        let head = [GPT2Tensors.tokenEmbedding, GPT2Tensors.positionEmbedding, GPT2Tensors.lmHead].contains(name)
        return head ? (o.headDType ?? defaultHeadDType(for: o.dtype)) : o.dtype
    }

    /// Checks that every matrix of `plan` fits its block type (columns a multiple of the block).
    static func checkBlocks(_ plan: [(name: String, shape: [Int])], _ o: Options) throws {
        for (name, shape) in plan {
            let t = dtype(of: name, shape: shape, o)
            guard shape.last! % t.blockElements == 0 else {
                throw ConversionError("tensor '\(name)' has \(shape.last!) columns, not a multiple of \(t)'s block of \(t.blockElements) (f16 and f32 fit any shape)")
            }
        }
    }

    public init(input: String, options: Options = Options()) {
        self.input = input
        self.options = options
    }

    /// Output path used when none is given: `dir/model.safetensors` -> `dir/model.g2w`.
    public static func defaultOutput(for input: String) -> String {
        let url = URL(fileURLWithPath: input)
        let base = url.pathExtension.isEmpty ? url : url.deletingPathExtension()
        let path = base.appendingPathExtension("g2w").path
        return input.hasPrefix("/") ? path : String(path.dropFirst(FileManager.default.currentDirectoryPath.count + 1))
    }

    public func run() throws -> Summary {
        if Self.isG2WFile(input) { return try requantize(input) }
        let start = Date()
        var modelPath = input
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: input, isDirectory: &isDir), isDir.boolValue {
            // model.safetensors, or a sharded checkpoint's index.
            modelPath = SafetensorsCheckpoint.path(inDirectory: input)
        }
        let dir = (modelPath as NSString).deletingLastPathComponent.isEmpty ? "." : (modelPath as NSString).deletingLastPathComponent
        let st = try SafetensorsCheckpoint(path: modelPath)

        // Map checkpoint keys to .g2w names.
        var sources: [String: SafetensorsCheckpoint.Tensor] = [:]
        var dropped = 0
        var unexpected: [String] = []
        for e in st.tensors {
            var name = e.name
            if name.hasPrefix("transformer.") { name.removeFirst("transformer.".count) }
            if name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") { dropped += 1; continue }
            if sources[name] != nil {
                throw ConversionError("\(modelPath): tensor '\(escapedForDisplay(name, limit: 100))' appears both with and without the 'transformer.' prefix")
            }
            sources[name] = e
        }
        for name in sources.keys where !Self.isKnownName(name) { unexpected.append(name) }
        if !unexpected.isEmpty {
            throw ConversionError("\(modelPath): unexpected tensors not part of GPT2LMHeadModel: \(unexpected.sorted().prefix(5).map { escapedForDisplay($0, limit: 100) }.joined(separator: ", "))\(unexpected.count > 5 ? " (and \(unexpected.count - 5) more)" : "")")
        }

        let config = try configuration(dir: dir, sources: sources, modelPath: modelPath)

        // The LM head: kept only when it differs from wte.
        var untied = false
        if let head = sources[GPT2Tensors.lmHead], let wte = sources[GPT2Tensors.tokenEmbedding] {
            let same = head.shape == wte.shape && head.dtype == wte.dtype && head.bytes.elementsEqual(wte.bytes)
            untied = !same
        }
        // Check every tensor's presence and shape (in checkpoint layout) before writing anything.
        let plan = GPT2Tensors.all(config, untiedHead: untied)
        for (name, shape) in plan {
            guard let e = sources[name] else {
                throw ConversionError("\(modelPath): missing required tensor '\(name)' (looked for '\(name)' and 'transformer.\(name)')")
            }
            let expected = Self.isTransposed(name) ? [shape[1], shape[0]] : shape
            guard e.shape == expected else {
                throw ConversionError("\(modelPath): tensor '\(escapedForDisplay(e.name, limit: 100))' has shape \(e.shape), but config.json (\(config)) implies \(expected)")
            }
            guard [.f32, .f16, .bf16].contains(e.dtype) else {
                throw ConversionError("\(modelPath): tensor '\(escapedForDisplay(e.name, limit: 100))' has dtype \(e.dtype.rawValue); g2w-convert reads F32, F16 and BF16")
            }
        }

        // Tokenizer.
        var tokenizer: GPT2Tokenizer?
        var tokenizerSource: String?
        if !options.skipTokenizer {
            (tokenizer, tokenizerSource) = try loadTokenizer(dir: dir)
            if let t = tokenizer, t.vocabularySize != config.vocabularySize {
                throw ConversionError("the tokenizer (\(tokenizerSource!)) has \(t.vocabularySize) tokens but the model's vocab_size is \(config.vocabularySize)")
            }
            if tokenizer == nil {
                options.warn?("no tokenizer found beside \(modelPath) (vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json); the .g2w will need token ids for input and output")
            }
        }

        // Metadata.
        var meta = G2WMetadata()
        meta["g2w.architecture"] = .string("gpt2")
        meta["g2w.converter"] = .string("g2w-convert \(G2WVersion.string)")
        meta["g2w.source"] = .string(st.sourceName)
        let dtypes = Set(plan.map { sources[$0.name]!.dtype.rawValue }).sorted()
        meta["g2w.source_dtype"] = .string(dtypes.joined(separator: ","))
        config.write(to: &meta)
        if let t = tokenizer {
            for (k, v) in GPT2ModelWriter.tokenizerMetadata(t) { meta[k] = v }
        }

        try Self.checkBlocks(plan, options)
        let descriptors = plan.map { G2WTensorDescriptor(name: $0.name, dtype: Self.dtype(of: $0.name, shape: $0.shape, options), shape: $0.shape) }
        let output = options.output ?? Self.defaultOutput(for: (dir as NSString).appendingPathComponent(st.sourceName))
        for source in st.files.map(\.path) + [modelPath, dir + "/config.json", dir + "/vocab.json", dir + "/merges.txt", dir + "/tokenizer.json"] where OutputFiles.sameFile(output, source) {
            throw ConversionError("the output \(output) is an input (\(source))")
        }
        let writer: G2WWriter
        do { writer = try G2WWriter(path: output, metadata: meta, tensors: descriptors, overwrite: options.overwrite) } catch let e as G2WFormatError {
            throw ConversionError(e.description, underlying: e)
        }
        var written: UInt64 = 0
        var parameters = 0
        do {
            for (i, d) in descriptors.enumerated() {
                let e = sources[d.name]!
                let transpose = Self.isTransposed(d.name)
                // Stream each tensor in slices of output rows (about 4 MB), so memory stays
                // bounded by a slice, not a tensor, whatever the model size.
                let rows = d.shape.count == 2 ? d.shape[0] : 1
                let cols = d.shape.count == 2 ? d.shape[1] : d.shape[0]
                let step = max(1, (1 << 20) / max(cols, 1))
                var encoder = G2WTensorEncoder(writer: writer, name: d.name, dtype: d.dtype, shape: d.shape)
                var r0 = 0
                while r0 < rows {
                    let r1 = min(rows, r0 + step)
                    let floats = Self.readFloats(e, transpose: transpose, outputRows: r0..<r1)
                    try floats.withUnsafeBufferPointer { try encoder.append($0) }
                    if !transpose { e.release(bytes: (r0 * cols * e.dtype.size)..<(r1 * cols * e.dtype.size)) }
                    r0 = r1
                }
                try encoder.finish()
                e.release()
                parameters += d.shape.reduce(1, *)
                written += d.dtype.byteCount(elements: UInt64(d.shape.reduce(1, *)))!
                options.progress?(i + 1, descriptors.count, written, writer.fileSize)
            }
            try writer.finish()
        } catch let e as G2WFormatError {
            writer.cancel()
            throw ConversionError(e.description, underlying: e)
        }
        return Summary(output: output, configuration: config, tensorCount: descriptors.count, parameterCount: parameters,
                       bytesWritten: writer.fileSize, seconds: Date().timeIntervalSince(start), tokenizerSource: tokenizerSource,
                       untiedHead: untied, droppedBuffers: dropped)
    }

    // MARK: Pieces

    static func isTransposed(_ name: String) -> Bool {
        GPT2Tensors.transposedSuffixes.contains { name.hasSuffix("." + $0) }
    }

    static func isKnownName(_ name: String) -> Bool {
        if [GPT2Tensors.tokenEmbedding, GPT2Tensors.positionEmbedding, GPT2Tensors.finalNormWeight, GPT2Tensors.finalNormBias, GPT2Tensors.lmHead].contains(name) { return true }
        let parts = name.split(separator: ".", maxSplits: 2)
        return parts.count == 3 && parts[0] == "h" && Int(parts[1]) != nil && GPT2Tensors.layerSuffixes.contains(String(parts[2]))
    }

    /// Rows `outputRows` of a tensor in `.g2w` layout, as Float32 (exact for F32, F16 and BF16).
    /// For a transposed (Conv1D) weight, source [in, out] -> output [out, in]: output row r is
    /// source column r. 1-D tensors are one row.
    static func readFloats(_ e: SafetensorsCheckpoint.Tensor, transpose: Bool, outputRows: Range<Int>) -> [Float] {
        let raw = e.bytes
        @inline(__always) func element(_ i: Int) -> Float {
            switch e.dtype {
            case .f32: return raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            case .f16: return Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case .bf16: return Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            default: preconditionFailure("dtype checked before conversion")
            }
        }
        if transpose && e.shape.count == 2 {
            let inRows = e.shape[0], outCols = e.shape[1]  // source [in, out]
            var out = [Float](repeating: 0, count: outputRows.count * inRows)
            out.withUnsafeMutableBufferPointer { d in
                // Blocked so both sides stay in cache.
                let block = 64
                for k0 in stride(from: 0, to: inRows, by: block) {
                    for r in outputRows {
                        let base = (r - outputRows.lowerBound) * inRows
                        for k in k0..<min(k0 + block, inRows) { d[base + k] = element(k * outCols + r) }
                    }
                }
            }
            return out
        }
        let cols = e.shape.count == 2 ? e.shape[1] : e.elementCount
        let start = outputRows.lowerBound * cols, n = outputRows.count * cols
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { d in
            switch e.dtype {
            case .f32: _ = memcpy(d.baseAddress!, raw.baseAddress! + 4 * start, 4 * n)
            case .f16:
                var tmp = [UInt16](repeating: 0, count: n)
                tmp.withUnsafeMutableBytes { _ = memcpy($0.baseAddress!, raw.baseAddress! + 2 * start, 2 * n) }
                g2w_f16_to_f32(tmp, d.baseAddress!, n)
            default:
                for i in 0..<n { d[i] = element(start + i) }
            }
        }
        return out
    }

    func configuration(dir: String, sources: [String: SafetensorsCheckpoint.Tensor], modelPath: String) throws -> GPT2Configuration {
        let configPath = options.configPath ?? (dir as NSString).appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: configPath) {
            return try Self.readConfig(configPath, headCountOverride: options.headCount)
        }
        if options.configPath != nil { throw ConversionError("\(configPath): no such file") }
        // Infer what the shapes determine.
        guard let wte = sources[GPT2Tensors.tokenEmbedding], wte.shape.count == 2,
              let wpe = sources[GPT2Tensors.positionEmbedding], wpe.shape.count == 2 else {
            throw ConversionError("\(modelPath): no config.json beside it, and wte/wpe are missing or not 2-D, so the shapes cannot be inferred")
        }
        var layers = 0
        while sources[GPT2Tensors.layer(layers, "ln_1.weight")] != nil { layers += 1 }
        guard let heads = options.headCount else {
            throw ConversionError("no config.json beside \(modelPath): n_layer \(layers), n_embd \(wte.shape[1]), n_ctx \(wpe.shape[0]) and vocab_size \(wte.shape[0]) follow from the shapes, but n_head does not: give the head count or a config.json")
        }
        let inner = sources[GPT2Tensors.layer(0, "mlp.c_fc.weight")].map { $0.shape.count == 2 ? $0.shape[1] : 4 * wte.shape[1] }
        let c = GPT2Configuration(layerCount: layers, headCount: heads, embeddingSize: wte.shape[1], innerSize: inner,
                                  contextLength: wpe.shape[0], vocabularySize: wte.shape[0])
        options.warn?("no config.json: inferred \(c) from the tensor shapes (layer_norm_epsilon defaults to 1e-5)")
        do { try c.validate() } catch { throw ConversionError("\(modelPath): \(error)", underlying: error) }
        return c
    }

    /// A JSON value as a user would write it (numbers plainly, strings quoted and escaped, the
    /// kind of arrays and objects), for messages.
    static func shortText(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .number(d, i): return i.map(String.init) ?? "\(d)"
        case let .string(s): return "\"\(escapedForDisplay(String(s.prefix(80))))\"\(s.count > 80 ? "..." : "")"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Reads the GPT-2 fields of a Hugging Face `config.json`.
    public static func readConfig(_ path: String, headCountOverride: Int? = nil) throws -> GPT2Configuration {
        let data: [UInt8]
        do { data = try G2WFileReading.readRegularFile(path, limit: 16 << 20, what: "config") } catch { throw ConversionError("\(error)", underlying: error) }
        let json: JSONValue
        do { json = try JSONValue.parse(data) } catch let e as JSONError { throw ConversionError("\(path): \(e)", underlying: e) }
        guard case .object = json else { throw ConversionError("\(path): not a JSON object") }
        func int(_ keys: [String], required: Bool = true) throws -> Int? {
            for k in keys {
                guard let v = json[k], !v.isNull else { continue }
                guard let i = v.int, i >= 1, i <= 1 << 20 else { throw ConversionError("\(path): \"\(k)\" must be an integer in 1...1048576, found \(Self.shortText(v))") }
                return Int(i)
            }
            if required { throw ConversionError("\(path): missing \"\(keys[0])\"") }
            return nil
        }
        if let mt = json["model_type"]?.string, mt != "gpt2" {
            throw ConversionError("\(path): \"model_type\" is \"\(escapedForDisplay(mt, limit: 40))\", expected \"gpt2\" (g2w-convert converts GPT-2)")
        }
        // Every field that changes the computation is supported or refused (never silently ignored).
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"] {
            if let v = json[flag], !v.isNull {
                guard case let .bool(b) = v else { throw ConversionError("\(path): \"\(flag)\" must be true or false, found \(Self.shortText(v))") }
                if b { throw ConversionError("\(path): \"\(flag)\": true is not supported (g2w runs GPT-2's attention)") }
            }
        }
        if let v = json["scale_attn_weights"], !v.isNull {
            guard case let .bool(b) = v else { throw ConversionError("\(path): \"scale_attn_weights\" must be true or false, found \(Self.shortText(v))") }
            if !b { throw ConversionError("\(path): \"scale_attn_weights\": false is not supported (g2w always scales attention scores by 1/sqrt(head size), as GPT-2 does)") }
        }
        let eps: Double
        if let v = json["layer_norm_epsilon"], !v.isNull {
            guard let d = v.double, d.isFinite, d > 0, d < 1 else { throw ConversionError("\(path): \"layer_norm_epsilon\" must be a number in (0, 1), found \(Self.shortText(v))") }
            eps = d
        } else { eps = 1e-5 }
        if let v = json["activation_function"], !v.isNull, v.string == nil {
            throw ConversionError("\(path): \"activation_function\" must be a string, found \(Self.shortText(v))")
        }
        let act = json["activation_function"]?.string ?? "gelu_new"
        let c = GPT2Configuration(layerCount: try int(["n_layer", "num_hidden_layers"])!, headCount: try headCountOverride ?? int(["n_head", "num_attention_heads"])!,
                                  embeddingSize: try int(["n_embd", "hidden_size"])!, innerSize: try int(["n_inner"], required: false),
                                  contextLength: try int(["n_positions", "n_ctx"])!, vocabularySize: try int(["vocab_size"])!,
                                  layerNormEpsilon: eps, activation: act)
        do { try c.validate() } catch { throw ConversionError("\(path): \(error)", underlying: error) }
        return c
    }

    func loadTokenizer(dir: String) throws -> (GPT2Tokenizer?, String?) {
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        func exists(_ p: String) -> Bool { FileManager.default.fileExists(atPath: p) }
        do {
            if let v = options.vocabPath, let m = options.mergesPath {
                return (try Self.tokenizer(vocab: v, merges: m), "\(v) + \(m)")
            }
            if let t = options.tokenizerJSONPath {
                return (try Self.tokenizer(json: t), t)
            }
            for (v, m) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] where exists(path(v)) && exists(path(m)) {
                return (try Self.tokenizer(vocab: path(v), merges: path(m)), "\(v) + \(m)")
            }
            if exists(path("tokenizer.json")) {
                return (try Self.tokenizer(json: path("tokenizer.json")), "tokenizer.json")
            }
        } catch let e as TokenizerError {
            throw ConversionError("tokenizer: \(e)", underlying: e)
        }
        return (nil, nil)
    }

    /// Tokenizer files, read with the tools' bounds (regular files of at most 256 MB) and named
    /// in messages by the paths the user gave (or found), not just their last components.
    static func tokenizer(vocab: String, merges: String) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(encoderJSON: Data(readTokenizerFile(vocab)), vocabBPE: Data(readTokenizerFile(merges)), encoderName: vocab, mergesName: merges)
    }

    static func tokenizer(json: String) throws -> GPT2Tokenizer {
        try GPT2Tokenizer(tokenizerJSON: Data(readTokenizerFile(json)), sourceName: json)
    }

    static func readTokenizerFile(_ path: String) throws -> [UInt8] {
        do { return try G2WFileReading.readRegularFile(path, limit: 256 << 20, what: "tokenizer file") } catch { throw ConversionError("\(error)", underlying: error) }
    }
}
