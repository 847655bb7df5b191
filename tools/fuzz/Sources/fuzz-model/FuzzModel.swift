// fuzz-model: GPT2Model(file:) on corrupted copies of tiny valid GPT-2 .g2w files.
//
// Two base models are written with G2WWriter when the target starts:
//   A: 1 layer, n_head 2, n_embd 8, n_ctx 8, vocab 16, f32, tied head, no tokenizer;
//   B: 1 layer, n_head 1, n_embd 8, n_inner 16, n_ctx 4, vocab 260, f16 matrices, separate
//      lm_head, embedded tokenizer (256 byte tokens, 3 merges, <|endoftext|>).
// An input that starts with the .g2w magic is the whole file (the seeds are A and B). Any other
// input is a list of 4-byte edits [u16 offset, u8 op, u8 value] applied to base A or B (bit 0 of
// the first byte). In both cases the header CRC-32C is then recomputed (unless bit 1 of the first
// byte is set) so that the edits reach the metadata, the tensor table and the model checks.
// Opening must throw G2WFormatError or ModelError; a model that opens must run a forward pass.
import Foundation
import FuzzSupport
import G2W
import G2WFormat
import G2WTokenizer

let scratch = ScratchFile(name: "model.g2w")
let bases: [[UInt8]] = [makeBase(tokenizer: false), makeBase(tokenizer: true)]


@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = inputBytes(data, size)
    var image: [UInt8]
    let flags = input.first ?? 0
    if input.starts(with: G2WLayout.magic) {
        image = input
    } else {
        image = bases[Int(flags & 1)]
        var i = 1
        while i + 3 < input.count {
            let offset = (Int(input[i]) | Int(input[i + 1]) << 8) % image.count
            let value = input[i + 3]
            switch input[i + 2] & 3 {
            case 0: image[offset] = value
            case 1: image[offset] ^= value
            case 2: image[offset] &+= value
            default:
                // An interesting 64-bit value at an 8-byte aligned offset.
                let interesting: [UInt64] = [0, 1, 2, 3, 4, 7, 8, 16, 63, 64, 128, 255, 256, 1 << 20, (1 << 20) + 1, 1 << 31,
                                             1 << 32, UInt64(Int.max / 8), UInt64(Int.max / 8) + 1, UInt64(Int.max), 1 << 63, .max, .max - 63,
                                             UInt64(bitPattern: Int64(-1)), 0x3FF0_0000_0000_0000, 0x7FF0_0000_0000_0000,
                                             0x7FF8_0000_0000_0000, 0xFFF0_0000_0000_0000, 0x3EE4_F8B5_88E3_68F1]
                writeLE(&image, offset & ~7, interesting[Int(value) % interesting.count])
            }
            i += 4
        }
    }
    if flags & 2 == 0 { fixG2WHeaderChecksum(&image) }
    scratch.write(image)
    let model: GPT2Model
    do {
        model = try GPT2Model(file: G2WFile(path: scratch.path))
    } catch let e as G2WFormatError {
        fuzzNote("G2WFile: \(e.description)")
        return 0
    } catch let e as ModelError {
        fuzzNote("GPT2Model: \(e.description)")
        return 0
    } catch {
        fuzzCheck(false, "GPT2Model(file:) threw \(type(of: error)): \(error)")
        return 0
    }
    fuzzNote("GPT2Model: \(model.configuration), tokenizer: \(model.hasTokenizer), separate head: \(model.hasSeparateHead)")
    exercise(model, seed: input)
    return 0
}

func exercise(_ model: GPT2Model, seed: [UInt8]) {
    let c = model.configuration
    do { try c.validate() } catch { fuzzCheck(false, "a model opened with an invalid configuration: \(error)") }
    do {
        try model.validate(tokens: [c.vocabularySize])
        fuzzCheck(false, "validate accepted an id out of range")
    } catch is ModelError {
    } catch {
        fuzzCheck(false, "validate threw \(error)")
    }
    // A forward pass over 1...3 tokens (kept cheap: a mutated file may claim a big model only if
    // its tensors are all there, so this bound only skips what is slow, not what is invalid).
    if c.embeddingSize * (c.vocabularySize + c.contextLength + 12 * c.layerCount * c.innerSize) <= 1 << 22 {
        let count = 1 + Int(seed.last ?? 0) % min(3, c.contextLength)
        let tokens = (0..<count).map { Int(seed.count > $0 ? seed[$0] : 0) % c.vocabularySize }
        do {
            try model.validate(tokens: tokens)
            let logits = try model.logits(for: tokens, threads: 1)
            fuzzCheck(logits.count == c.vocabularySize, "logits count")
        } catch {
            fuzzCheck(false, "forward pass over valid tokens threw \(error)")
        }
    }
    // The embedded tokenizer is built on first use: it must build or throw ModelError.
    guard model.hasTokenizer else {
        do { let none = try model.tokenizer == nil; fuzzCheck(none, "a tokenizer without tokenizer.vocab") } catch {
            fuzzCheck(false, "the tokenizer accessor threw for a file without tokenizer.vocab: \(error)")
        }
        return
    }
    let t: GPT2Tokenizer
    do {
        t = try model.requireTokenizer()
    } catch let e as ModelError {
        fuzzNote("requireTokenizer: \(e.description)")
        fuzzCheck((try? model.tokenizer) == nil, "the tokenizer accessor did not throw after requireTokenizer threw")
        return
    } catch {
        fuzzCheck(false, "requireTokenizer threw \(type(of: error)): \(error)")
        return
    }
    fuzzCheck(t.vocabularySize <= c.vocabularySize, "embedded tokenizer larger than vocab_size")
    let text = " the<|endoftext|>"
    do {
        let decoded = try t.decode(t.encode(text, allowSpecialTokens: true))
        fuzzCheck(decoded == Array(text.utf8), "embedded tokenizer round trip")
    } catch {
        fuzzCheck(false, "embedded tokenizer: \(error)")
    }
}

// MARK: - Base models

func makeBase(tokenizer withTokenizer: Bool) -> [UInt8] {
    let c = withTokenizer
        ? GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 8, innerSize: 16, contextLength: 4, vocabularySize: 260)
        : GPT2Configuration(layerCount: 1, headCount: 2, embeddingSize: 8, contextLength: 8, vocabularySize: 16)
    var meta = G2WMetadata()
    meta["g2w.architecture"] = .string("gpt2")
    meta["gpt2.n_layer"] = .uint(UInt64(c.layerCount))
    meta["gpt2.n_head"] = .uint(UInt64(c.headCount))
    meta["gpt2.n_embd"] = .uint(UInt64(c.embeddingSize))
    meta["gpt2.n_inner"] = .uint(UInt64(c.innerSize))
    meta["gpt2.n_ctx"] = .uint(UInt64(c.contextLength))
    meta["gpt2.vocab_size"] = .uint(UInt64(c.vocabularySize))
    meta["gpt2.layer_norm_epsilon"] = .float(c.layerNormEpsilon)
    meta["gpt2.activation"] = .string(c.activation)
    meta["gpt2.matrix_layout"] = .string(GPT2Configuration.matrixLayout)
    if withTokenizer {
        let vocabulary = (0..<256).map { ByteLevel.string(forBytes: [UInt8($0)]) } + ["Ġt", "he", "Ġthe", "<|endoftext|>"]
        meta["tokenizer.model"] = .string("gpt2-bpe")
        meta["tokenizer.vocab"] = .stringArray(G2WStringArray(vocabulary))
        meta["tokenizer.merges"] = .stringArray(["Ġ t", "h e", "Ġt he"])
        meta["tokenizer.eos_id"] = .uint(259)
    }
    let plan = GPT2Tensors.all(c, untiedHead: withTokenizer)
    let descriptors = plan.map { G2WTensorDescriptor(name: $0.name, dtype: withTokenizer && $0.shape.count == 2 ? .f16 : .f32, shape: $0.shape) }
    let path = scratch.directory + "/base.g2w"
    do {
        let w = try G2WWriter(path: path, metadata: meta, tensors: descriptors, overwrite: true)
        var x: UInt32 = 12345
        for d in descriptors {
            let n = d.shape.reduce(1, *)
            var floats = [Float](repeating: 0, count: n)
            for i in 0..<n {
                x = x &* 1_103_515_245 &+ 12345
                floats[i] = d.name.hasSuffix("ln_1.weight") || d.name.hasSuffix("ln_2.weight") || d.name == "ln_f.weight"
                    ? 1 : (Float(x >> 16 & 0x7FFF) / 32768 - 0.5) * 0.2
            }
            var e = G2WTensorEncoder(writer: w, name: d.name, dtype: d.dtype, shape: d.shape)
            try floats.withUnsafeBufferPointer { try e.append($0) }
            try e.finish()
        }
        try w.finish()
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        unlink(path)
        _ = try GPT2Model(file: G2WFile(path: { scratch.write(bytes); return scratch.path }()))
        return bytes
    } catch {
        fatalError("fuzz harness: cannot build the base model: \(error)")
    }
}
