import Foundation
import G2W
import G2WFormat
import G2WTokenizer
import G2WTraining
import XCTest

/// `HuggingFaceExport` against `HuggingFaceConverter`: a block exported as a Hugging Face
/// directory and converted back is the same block, bit for bit, with the tied or untied head; the
/// tokenizer written as vocab.json + merges.txt reads back to the same vocabulary, merges and
/// encodings; the files are named, shaped and configured as transformers writes them; existing
/// files are not replaced unless asked, and nothing is written when the export is refused.
/// (tools/check_hf_export.py loads an export with transformers itself.)
final class HuggingFaceExportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let tokenizer: Result<GPT2Tokenizer, Error> = Result {
        let dir = fixtures.appendingPathComponent("tiny-f32")
        return try GPT2Tokenizer.load(encoderJSON: dir.appendingPathComponent("vocab.json").path, vocabBPE: dir.appendingPathComponent("merges.txt").path)
    }
    static let sample = "Hello, world! It's 2024 — naïve café, 東京 and emoji 😀\n\n  spaces\tand <|endoftext|> too."

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func listing(_ dir: URL) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() }

    /// GPT-2's vocabulary with tiny other sizes.
    func configuration(inner: Int? = nil) -> GPT2Configuration {
        GPT2Configuration(layerCount: 2, headCount: 2, embeddingSize: 8, innerSize: inner, contextLength: 8, vocabularySize: 50257)
    }

    /// Converts `dir` back with the library's converter (f32) and opens the result.
    func convertBack(_ dir: URL, into scratch: URL, skipTokenizer: Bool = false) throws -> GPT2Model {
        var o = HuggingFaceConverter.Options()
        o.dtype = .f32
        o.output = scratch.appendingPathComponent("back-\(UUID().uuidString).g2w").path
        o.skipTokenizer = skipTokenizer
        _ = try HuggingFaceConverter(input: dir.path, options: o).run()
        return try GPT2Model(path: o.output!)
    }

    func assertBitIdentical(_ a: GPT2ParameterBlock, _ b: GPT2ParameterBlock, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.configuration, b.configuration, file: file, line: line)
        XCTAssertEqual(a.untiedHead, b.untiedHead, file: file, line: line)
        XCTAssertEqual(a.entries, b.entries, file: file, line: line)
        guard a.entries == b.entries else { return }
        for e in a.entries {
            let x = a.tensor(named: e.name)!, y = b.tensor(named: e.name)!
            let same = memcmp(x.baseAddress!, y.baseAddress!, e.count * 4) == 0
            XCTAssertTrue(same, "tensor \(e.name) differs", file: file, line: line)
        }
    }

    func testRoundTripThroughTheConverter() throws {
        let tokenizer = try Self.tokenizer.get()
        let scratch = try temporaryDirectory()
        let cases: [(untied: Bool, inner: Int?)] = [(false, nil), (true, nil), (false, 12)]
        for (untied, inner) in cases {
            let block = try randomBlock(configuration(inner: inner), untied: untied, seed: untied ? 11 : 7)
            let dir = scratch.appendingPathComponent("untied-\(untied)-inner-\(inner ?? 0)/nested/hf")
            try HuggingFaceExport.export(block, tokenizer: tokenizer, to: dir.path)
            XCTAssertEqual(try listing(dir), ["config.json", "merges.txt", "model.safetensors", "vocab.json"], "no temporary file remains")

            // model.safetensors as transformers writes it.
            let st = try SafetensorsFile(path: dir.appendingPathComponent("model.safetensors").path)
            XCTAssertEqual(st.metadata, ["format": "pt"])
            XCTAssertEqual(st.entries.count, block.entries.count)
            XCTAssertEqual(st.entry(named: "lm_head.weight") != nil, untied)
            XCTAssertNil(st.entry(named: "wte.weight"))
            XCTAssertEqual(st.entry(named: "transformer.wte.weight")?.shape, [50257, 8])
            XCTAssertEqual(st.entry(named: "transformer.h.1.attn.c_attn.weight")?.shape, [8, 24], "Conv1D weights are [in, out]")
            XCTAssertEqual(st.entry(named: "transformer.h.0.mlp.c_proj.weight")?.shape, [block.configuration.innerSize, 8])
            XCTAssertTrue(st.entries.allSatisfy { $0.dtype == .f32 })
            // One transposed element checked directly: checkpoint [k][r] = block [r][k].
            let w = block.tensor(named: "h.0.attn.c_attn.weight")!
            let e = try XCTUnwrap(st.entry(named: "transformer.h.0.attn.c_attn.weight"))
            XCTAssertEqual(st.bytes(of: e).loadUnaligned(fromByteOffset: 4 * (3 * 24 + 17), as: Float.self), w[17 * 8 + 3])

            // config.json.
            let config = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("config.json")))
            XCTAssertEqual(config["model_type"], .string("gpt2"))
            XCTAssertEqual(config["architectures"], .array([.string("GPT2LMHeadModel")]))
            XCTAssertEqual(config["tie_word_embeddings"], .bool(!untied))
            XCTAssertEqual(config["n_inner"]?.int, inner.map(Int64.init))
            XCTAssertEqual(config["n_inner"]?.isNull, inner == nil)
            XCTAssertEqual(config["bos_token_id"]?.int, 50256)
            XCTAssertEqual(config["eos_token_id"]?.int, 50256)
            XCTAssertEqual(config["layer_norm_epsilon"]?.double, 1e-5)
            XCTAssertEqual(config["activation_function"], .string("gelu_new"))
            XCTAssertEqual(try HuggingFaceConverter.readConfig(dir.appendingPathComponent("config.json").path), block.configuration)

            // Back through the converter: the same block, bit for bit, and the same tokenizer.
            let model = try convertBack(dir, into: scratch)
            XCTAssertEqual(model.hasSeparateHead, untied)
            assertBitIdentical(try GPT2ParameterBlock(copying: model), block)
            let embedded = try model.requireTokenizer()
            XCTAssertEqual(embedded.encode(Self.sample), tokenizer.encode(Self.sample))
            XCTAssertEqual(embedded.endOfTextID, 50256)
        }
    }

    func testTokenizerFilesReadBackIdentically() throws {
        let tokenizer = try Self.tokenizer.get()
        let scratch = try temporaryDirectory()
        let block = try randomBlock(configuration(), untied: false, seed: 3)
        try HuggingFaceExport.export(block, tokenizer: tokenizer, to: scratch.path)
        let vocab = scratch.appendingPathComponent("vocab.json"), merges = scratch.appendingPathComponent("merges.txt")
        let back = try GPT2Tokenizer.load(encoderJSON: vocab.path, vocabBPE: merges.path)
        XCTAssertEqual(back.vocabularyInIDOrder, tokenizer.vocabularyInIDOrder)
        XCTAssertEqual(back.mergeStrings, tokenizer.mergeStrings)
        XCTAssertEqual(back.specialTokens, tokenizer.specialTokens)
        XCTAssertEqual(back.encode(Self.sample), tokenizer.encode(Self.sample))
        XCTAssertEqual(back.encode(Self.sample, allowSpecialTokens: true), tokenizer.encode(Self.sample, allowSpecialTokens: true))

        // vocab.json maps tokens to ids as encoder.json does (same object, ASCII-only text).
        let text = try Data(contentsOf: vocab)
        XCTAssertTrue(text.allSatisfy { $0 < 0x80 })
        let exported = try JSONSerialization.jsonObject(with: text) as! [String: Int]
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("tiny-f32/vocab.json"))) as! [String: Int]
        XCTAssertEqual(exported, original)
        // merges.txt: the header, one merge per line, a final newline (what transformers' reader expects).
        let lines = try String(contentsOf: merges, encoding: .utf8)
        XCTAssertTrue(lines.hasPrefix("#version: 0.2\n"))
        XCTAssertTrue(lines.hasSuffix("\n"))
        XCTAssertEqual(lines.split(separator: "\n", omittingEmptySubsequences: false).count, tokenizer.mergeStrings.count + 2)
        XCTAssertEqual(lines, try String(contentsOf: Self.fixtures.appendingPathComponent("tiny-f32/merges.txt"), encoding: .utf8))
    }

    func testWithoutTokenizer() throws {
        let scratch = try temporaryDirectory()
        // GPT-2's vocabulary size: bos/eos are 50256.
        let big = try randomBlock(configuration(), untied: true, seed: 5)
        let a = scratch.appendingPathComponent("a")
        try HuggingFaceExport.export(big, tokenizer: nil, to: a.path)
        XCTAssertEqual(try listing(a), ["config.json", "model.safetensors"])
        var config = try JSONValue.parse(Data(contentsOf: a.appendingPathComponent("config.json")))
        XCTAssertEqual(config["eos_token_id"]?.int, 50256)
        assertBitIdentical(try GPT2ParameterBlock(copying: convertBack(a, into: scratch)), big)

        // A small vocabulary has no id 50256: bos/eos are null (not GPT2Config's default 50256).
        let small = try randomBlock(GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 4, contextLength: 3, vocabularySize: 5), untied: false, seed: 9)
        let b = scratch.appendingPathComponent("b")
        try HuggingFaceExport.export(small, tokenizer: nil, to: b.path)
        config = try JSONValue.parse(Data(contentsOf: b.appendingPathComponent("config.json")))
        XCTAssertEqual(config["bos_token_id"], .null)
        XCTAssertEqual(config["eos_token_id"], .null)
        assertBitIdentical(try GPT2ParameterBlock(copying: convertBack(b, into: scratch, skipTokenizer: true)), small)
    }

    /// Exports for tools/check_hf_export.py: with `G2W_EXPORT_SOURCE` (a `.g2w` file) and
    /// `G2W_EXPORT_DIRECTORY`, that model and its tokenizer; with `G2W_EXPORT_RANDOM` (a
    /// directory), a random block with an untied head and n_inner 12 and the fixture tokenizer.
    /// Existing exports are replaced. Skipped when neither is set.
    func testExportForTheTransformersCheck() throws {
        let env = ProcessInfo.processInfo.environment
        var done = false
        if let source = env["G2W_EXPORT_SOURCE"], let directory = env["G2W_EXPORT_DIRECTORY"] {
            let model = try GPT2Model(path: source)
            let tokenizer = model.hasTokenizer ? try model.requireTokenizer() : nil
            try HuggingFaceExport.export(GPT2ParameterBlock(copying: model), tokenizer: tokenizer, to: directory, overwrite: true)
            done = true
        }
        if let directory = env["G2W_EXPORT_RANDOM"] {
            let block = try randomBlock(configuration(inner: 12), untied: true, seed: 42)
            try HuggingFaceExport.export(block, tokenizer: Self.tokenizer.get(), to: directory, overwrite: true)
            done = true
        }
        if !done { throw XCTSkip("set G2W_EXPORT_SOURCE + G2W_EXPORT_DIRECTORY, or G2W_EXPORT_RANDOM, to export for tools/check_hf_export.py") }
    }

    func testRefusals() throws {
        let tokenizer = try Self.tokenizer.get()
        let scratch = try temporaryDirectory()
        let block = try randomBlock(configuration(), untied: false, seed: 1)
        let dir = scratch.appendingPathComponent("hf")
        try HuggingFaceExport.export(block, tokenizer: nil, to: dir.path)
        let before = try Data(contentsOf: dir.appendingPathComponent("model.safetensors"))

        // Existing files: refused before anything is written (vocab.json does not appear).
        XCTAssertThrowsError(try HuggingFaceExport.export(block, tokenizer: tokenizer, to: dir.path)) { error in
            guard case G2WFormatError.outputExists(let path)? = error as? G2WFormatError else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasSuffix("model.safetensors"), path)
        }
        XCTAssertEqual(try listing(dir), ["config.json", "model.safetensors"])
        // With overwrite: replaced.
        let other = try randomBlock(configuration(), untied: false, seed: 2)
        try HuggingFaceExport.export(other, tokenizer: tokenizer, to: dir.path, overwrite: true)
        XCTAssertNotEqual(try Data(contentsOf: dir.appendingPathComponent("model.safetensors")), before)
        XCTAssertEqual(try listing(dir), ["config.json", "merges.txt", "model.safetensors", "vocab.json"])

        // A tokenizer that does not fit the model.
        let small = try randomBlock(GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 4, contextLength: 3, vocabularySize: 5), untied: false, seed: 9)
        let c = scratch.appendingPathComponent("c")
        XCTAssertThrowsError(try HuggingFaceExport.export(small, tokenizer: tokenizer, to: c.path)) { error in
            XCTAssertEqual(error as? HuggingFaceExport.ExportError, .vocabularyMismatch(tokenizer: 50257, model: 5))
            XCTAssertTrue("\(error)".contains("50257 tokens but the model's vocab_size is 5"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.path))

        // The destination is a file.
        let file = scratch.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try HuggingFaceExport.export(small, tokenizer: nil, to: file.path)) { error in
            XCTAssertEqual(error as? HuggingFaceExport.ExportError, .notADirectory(file.path))
        }
        // A directory that cannot be created.
        XCTAssertThrowsError(try HuggingFaceExport.export(small, tokenizer: nil, to: file.path + "/sub")) { error in
            guard case G2WFormatError.io(let op, _, _)? = error as? G2WFormatError else { return XCTFail("\(error)") }
            XCTAssertEqual(op, "mkdir")
        }
    }
}
