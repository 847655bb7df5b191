import Foundation
import G2W
import G2WFormat
import G2WTokenizer

/// Writes a parameter block as a Hugging Face GPT-2 directory, the inverse of
/// `HuggingFaceConverter`: `transformers.GPT2LMHeadModel.from_pretrained(directory)` loads it with
/// no missing or unexpected keys, and `g2w-convert` turns it back into the same weights, bit for bit.
///
/// The directory holds:
/// - `model.safetensors`: every tensor in F32, named as `transformers` writes them
///   (`transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`, ...), the Conv1D weights
///   (`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`) transposed back to their [in, out]
///   layout, `lm_head.weight` only when the head is untied; metadata `{"format": "pt"}`, which
///   `transformers` requires.
/// - `config.json`: a `GPT2Config` (model_type `gpt2`, architectures `GPT2LMHeadModel`, the sizes,
///   `n_inner` null when it is 4 x n_embd, the activation, `layer_norm_epsilon`,
///   `tie_word_embeddings` = !untied, `bos_token_id`/`eos_token_id` = the `<|endoftext|>` id when
///   the vocabulary has one). The dropout rates `resid_pdrop`, `embd_pdrop` and `attn_pdrop` are
///   GPT-2's 0.1, as in OpenAI's released checkpoints, so fine-tuning the export in `transformers`
///   regularises as GPT-2 does; inference (`model.eval()`) does not use them.
/// - with a tokenizer, `vocab.json` (token -> id, in id order, non-ASCII as `\uXXXX` escapes as
///   in OpenAI's `encoder.json`) and `merges.txt` (`#version: 0.2`, then one `left right` merge
///   per line in rank order, ending with a newline as `transformers` expects).
///
/// Every file is written atomically (temporary file, `fsync`, rename). Without `overwrite`, the
/// export stops before writing anything if any of these files already exists.
///
/// ```swift
/// try HuggingFaceExport.export(block, tokenizer: model.tokenizer, to: "out/gpt2-finetuned")
/// ```
public enum HuggingFaceExport {
    /// The weights' file name in the directory.
    public static let modelFile = "model.safetensors"
    /// The `GPT2Config` file name.
    public static let configFile = "config.json"
    /// The vocabulary's file name (written only with a tokenizer).
    public static let vocabularyFile = "vocab.json"
    /// The BPE merges' file name (written only with a tokenizer).
    public static let mergesFile = "merges.txt"
    /// The dropout rates written to `config.json` (GPT-2's).
    public static let dropout = 0.1

    /// An export that cannot be done as asked.
    public enum ExportError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The tokenizer's vocabulary and the model's `vocab_size` differ.
        case vocabularyMismatch(tokenizer: Int, model: Int)
        /// A merge that cannot be written as one line of `merges.txt`.
        case invalidMerge(rank: Int, merge: String)
        /// The destination exists and is not a directory.
        case notADirectory(String)

        /// The message.
        public var description: String {
            switch self {
            case let .vocabularyMismatch(t, m):
                return "the tokenizer has \(t) tokens but the model's vocab_size is \(m); export the tokenizer the model was trained with"
            case let .invalidMerge(rank, merge):
                return "merge \(rank) '\(escapedForDisplay(merge))' contains a line break and cannot be written to merges.txt"
            case let .notADirectory(path):
                return "\(path) exists and is not a directory"
            }
        }
    }

    /// Writes `block` (and `tokenizer`, if given) as a Hugging Face GPT-2 directory at `directory`,
    /// creating it (and its parents) if needed.
    ///
    /// - Parameter overwrite: replace the files this export writes if they exist; other files in
    ///   the directory are left alone either way.
    /// - Throws: ``ExportError`` (tokenizer and model disagree, destination is a file),
    ///   `G2WFormatError.outputExists` (a file exists and `overwrite` is false; nothing is
    ///   written), `G2WFormatError.io` (which call on which file failed, and why).
    public static func export(_ block: GPT2ParameterBlock, tokenizer: GPT2Tokenizer?, to directory: String, overwrite: Bool = false) throws {
        let c = block.configuration
        if let t = tokenizer, t.vocabularySize != c.vocabularySize {
            throw ExportError.vocabularyMismatch(tokenizer: t.vocabularySize, model: c.vocabularySize)
        }
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ExportError.notADirectory(directory) }
        } else {
            do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw G2WFormatError.io(operation: "mkdir", path: directory, reason: (error as NSError).localizedDescription)
            }
        }
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let files = [modelFile, configFile] + (tokenizer == nil ? [] : [vocabularyFile, mergesFile])
        if !overwrite, let existing = files.map(path).first(where: { fm.fileExists(atPath: $0) }) {
            throw G2WFormatError.outputExists(path: existing)
        }

        // The text files are built first: a bad tokenizer is found before anything is written.
        var texts: [(String, String)] = []
        if let t = tokenizer {
            texts.append((vocabularyFile, vocabularyJSON(t)))
            texts.append((mergesFile, try mergesText(t)))
        }
        let eos = tokenizer.map { $0.endOfTextID } ?? (c.vocabularySize > 50256 ? 50256 : nil)
        texts.append((configFile, configJSON(c, untiedHead: block.untiedHead, endOfTextID: eos)))

        try writeSafetensors(block, to: path(modelFile), overwrite: overwrite)
        // config.json last: a directory with it is complete.
        for (name, text) in texts { try AtomicFileWriter.write(text, to: path(name), overwrite: overwrite) }
    }

    /// The safetensors key of a `.g2w` tensor name (`wte.weight` -> `transformer.wte.weight`;
    /// `lm_head.weight` stays as it is).
    public static func checkpointName(_ name: String) -> String {
        name == GPT2Tensors.lmHead ? name : "transformer." + name
    }

    /// Whether `name` is a Conv1D weight, stored [in, out] by Hugging Face and [out, in] in the block.
    public static func isConv1DWeight(_ name: String) -> Bool {
        GPT2Tensors.transposedSuffixes.contains { name.hasSuffix("." + $0) }
    }

    /// Writes the block's tensors (schema order) as `model.safetensors`. Transposed tensors are
    /// streamed in slices of about 4 MB, so memory stays bounded whatever the model size.
    static func writeSafetensors(_ block: GPT2ParameterBlock, to path: String, overwrite: Bool) throws {
        let base = block.storage.base
        var tensors: [SafetensorsWriter.Tensor] = []
        for e in block.entries {
            let values = UnsafeBufferPointer(start: base + e.offset, count: e.count)
            guard isConv1DWeight(e.name), e.shape.count == 2 else {
                tensors.append(.f32(name: checkpointName(e.name), shape: e.shape, values))
                continue
            }
            // Block [out, in] -> checkpoint [in, out]: checkpoint row k is block column k.
            let rows = e.shape[0], cols = e.shape[1]
            tensors.append(.init(name: checkpointName(e.name), dtype: .f32, shape: [cols, rows]) { sink in
                let step = max(1, (1 << 20) / max(rows, 1))
                var slice = [Float](repeating: 0, count: min(cols, step) * rows)
                var k0 = 0
                while k0 < cols {
                    let k1 = min(cols, k0 + step)
                    slice.withUnsafeMutableBufferPointer { d in
                        // Blocked over the rows so both sides stay in cache.
                        for r0 in stride(from: 0, to: rows, by: 64) {
                            for k in k0..<k1 {
                                let out = (k - k0) * rows
                                for r in r0..<min(rows, r0 + 64) { d[out + r] = values[r * cols + k] }
                            }
                        }
                    }
                    try slice.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<((k1 - k0) * rows * 4)])) }
                    k0 = k1
                }
            })
        }
        try SafetensorsWriter.write(to: path, tensors: tensors, metadata: ["format": "pt"], overwrite: overwrite)
    }

    /// `config.json` for `transformers`' `GPT2Config` (two-space indent, a final newline).
    /// `endOfTextID`, when given, is written as `bos_token_id` and `eos_token_id`.
    public static func configJSON(_ c: GPT2Configuration, untiedHead: Bool, endOfTextID: Int?) -> String {
        func int(_ v: Int) -> JSONValue { .number(Double(v), integer: Int64(v)) }
        func real(_ v: Double) -> JSONValue { .number(v, integer: nil) }
        let special: JSONValue = endOfTextID.map(int) ?? .null
        let doc = JSONValue.object([
            ("architectures", .array([.string("GPT2LMHeadModel")])),
            ("model_type", .string("gpt2")),
            ("vocab_size", int(c.vocabularySize)),
            ("n_positions", int(c.contextLength)),
            ("n_ctx", int(c.contextLength)),
            ("n_embd", int(c.embeddingSize)),
            ("n_layer", int(c.layerCount)),
            ("n_head", int(c.headCount)),
            ("n_inner", c.innerSize == 4 * c.embeddingSize ? .null : int(c.innerSize)),
            ("activation_function", .string(c.activation)),
            ("resid_pdrop", real(dropout)),
            ("embd_pdrop", real(dropout)),
            ("attn_pdrop", real(dropout)),
            ("layer_norm_epsilon", real(c.layerNormEpsilon)),
            ("initializer_range", real(0.02)),
            ("scale_attn_weights", .bool(true)),
            ("scale_attn_by_inverse_layer_idx", .bool(false)),
            ("reorder_and_upcast_attn", .bool(false)),
            ("use_cache", .bool(true)),
            ("bos_token_id", special),
            ("eos_token_id", special),
            ("tie_word_embeddings", .bool(!untiedHead)),
            ("torch_dtype", .string("float32")),
        ])
        return doc.serialized(indent: 2) + "\n"
    }

    /// `vocab.json`: `{"token": id, ...}` in id order on one line, as OpenAI's `encoder.json`
    /// (non-ASCII characters as `\uXXXX` escapes).
    public static func vocabularyJSON(_ tokenizer: GPT2Tokenizer) -> String {
        var out = "{"
        for (id, token) in tokenizer.vocabularyInIDOrder.enumerated() {
            if id > 0 { out += ", " }
            out += JSONValue.quoted(token, asciiOnly: true) + ": " + String(id)
        }
        return out + "}"
    }

    /// `merges.txt`: `#version: 0.2`, then each merge on its own line in rank order, each line
    /// ending with a newline (`transformers`' slow tokenizer drops the text after the last one).
    public static func mergesText(_ tokenizer: GPT2Tokenizer) throws -> String {
        var out = "#version: 0.2\n"
        for (rank, merge) in tokenizer.mergeStrings.enumerated() {
            guard !merge.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else {
                throw ExportError.invalidMerge(rank: rank, merge: merge)
            }
            out += merge + "\n"
        }
        return out
    }
}
