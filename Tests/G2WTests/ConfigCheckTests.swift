import Foundation
import G2W
import G2WFormat
import XCTest

/// Every config.json field that changes the computation is supported or refused, with a message
/// in the user's terms (issue 17, items 11 and 12).
final class ConfigCheckTests: XCTestCase {
    func check(_ extra: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString).json").path
        defer { unlink(path) }
        let base = #""model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 32, "vocab_size": 100"#
        try "{\(base)\(extra.isEmpty ? "" : ", " + extra)}".write(toFile: path, atomically: true, encoding: .utf8)
        if expected.isEmpty {
            XCTAssertNoThrow(try HuggingFaceConverter.readConfig(path), file: file, line: line)
        } else {
            XCTAssertThrowsError(try HuggingFaceConverter.readConfig(path), file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(e)", file: file, line: line)
            }
        }
    }

    func testFieldsThatChangeTheComputation() throws {
        try check("", "")
        try check(#""scale_attn_weights": true"#, "")
        try check(#""scale_attn_weights": false"#, "\"scale_attn_weights\": false is not supported")
        try check(#""scale_attn_weights": "no""#, "\"scale_attn_weights\" must be true or false, found \"no\"")
        try check(#""reorder_and_upcast_attn": true"#, "true is not supported")
        try check(#""activation_function": "relu""#, "activation 'relu' is not supported")
        try check(#""activation_function": 3"#, "\"activation_function\" must be a string, found 3")
        try check(#""layer_norm_epsilon": -1"#, "\"layer_norm_epsilon\" must be a number in (0, 1), found -1")
        try check(#""layer_norm_epsilon": 1e-6"#, "")
    }

    func testMessagesNameTheValueAsWritten() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString).json").path
        defer { unlink(path) }
        try #"{"n_layer": 2, "n_head": 0, "n_embd": 64, "n_positions": 32, "vocab_size": 100}"#.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try HuggingFaceConverter.readConfig(path)) { e in
            XCTAssertTrue("\(e)".hasSuffix("\"n_head\" must be an integer in 1...1048576, found 0"), "\(e)")
        }
    }
}

/// A file whose embedded tokenizer is malformed is rejected whatever the input (spec 12.2; issue
/// 17 item 10), not treated as a file without one.
final class MalformedEmbeddedTokenizerTests: XCTestCase {
    func testGenerationRefusesAMalformedTokenizer() throws {
        let c = GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 8, innerSize: 16, contextLength: 8, vocabularySize: 300)
        let block = try GPT2ParameterBlock(configuration: c, untiedHead: false)
        var vocab = (0..<256).map { String(UnicodeScalar(UInt8($0))) }
        vocab[66] = vocab[65]  // a duplicate token (and byte 66 missing)
        var meta = G2WMetadata()
        meta["tokenizer.model"] = .string("gpt2-bpe")
        meta["tokenizer.vocab"] = .stringArray(G2WStringArray(vocab))
        meta["tokenizer.merges"] = .stringArray(G2WStringArray([String]()))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("badtok-\(UUID().uuidString).g2w").path
        defer { unlink(path) }
        try GPT2ModelWriter.write(block, to: path, tokenizer: meta, writer: "test")
        let m = try GPT2Model(path: path)
        XCTAssertTrue(m.hasTokenizer)
        XCTAssertThrowsError(try m.generate(prompt: [1, 2], options: GenerationOptions()) { _ in true }) { e in
            XCTAssertTrue("\(e)".contains("tokenizer.vocab"), "\(e)")
        }
    }
}

/// A tokenizer with fewer entries than vocab_size (spec 12.2 allows it): ids it cannot decode are
/// never sampled, so generation never fails halfway on them (issue 17 item 9).
final class ShortTokenizerTests: XCTestCase {
    func testIdsWithoutTextAreNeverSampled() throws {
        let c = GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 8, innerSize: 16, contextLength: 64, vocabularySize: 300)
        let block = try GPT2ParameterBlock(configuration: c, untiedHead: false)
        // Logits favour the ids the tokenizer lacks (256...299): wte rows of those ids get a large bias.
        var rng = SeededGenerator(seed: 9)
        for i in 0..<block.count { block.storage.base[i] = Float(Double(rng.next() >> 11) * 0x1.0p-53 - 0.5) * 0.1 }
        let wte = block.tensor(named: "wte.weight")!
        for id in 256..<300 { for k in 0..<8 { wte[id * 8 + k] = 3 } }
        for name in ["h.0.ln_1.weight", "h.0.ln_2.weight"] { for j in block.tensor(named: name)!.indices { block.tensor(named: name)![j] = 1 } }
        // Final LayerNorm: weight 0, bias 1, so h = (1, ..., 1) and logit[id] = sum of wte[id].
        for j in 0..<8 { block.tensor(named: "ln_f.weight")![j] = 0; block.tensor(named: "ln_f.bias")![j] = 1 }
        var meta = G2WMetadata()
        let vocab = (0..<256).map { ByteLevelNames.name(UInt8($0)) }
        meta["tokenizer.model"] = .string("gpt2-bpe")
        meta["tokenizer.vocab"] = .stringArray(G2WStringArray(vocab))
        meta["tokenizer.merges"] = .stringArray(G2WStringArray([String]()))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("short-\(UUID().uuidString).g2w").path
        defer { unlink(path) }
        try GPT2ModelWriter.write(block, to: path, tokenizer: meta, writer: "test")
        let m = try GPT2Model(path: path)
        XCTAssertEqual(try m.tokenizer?.vocabularySize, 256)
        // The unmasked model would pick an id >= 256 (its logits are the largest).
        let raw = try m.logits(for: [1, 2])
        XCTAssertGreaterThanOrEqual(raw.indices.max(by: { raw[$0] < raw[$1] })!, 256)
        for temperature in [0.0, 1.0] {
            var o = GenerationOptions()
            o.maxTokens = 30
            o.sampling.temperature = temperature
            o.sampling.seed = 4
            let r = try m.generate(prompt: [1, 2], options: o) { _ in true }
            XCTAssertEqual(r.tokens.count, 30)
            XCTAssertTrue(r.tokens.allSatisfy { $0 < 256 }, "\(r.tokens)")
        }
    }
}

/// GPT-2's byte-to-unicode map (for building test vocabularies).
enum ByteLevelNames {
    static func name(_ b: UInt8) -> String {
        var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for x in 0..<256 where !bs.contains(x) { bs.append(x); cs.append(256 + n); n += 1 }
        return String(UnicodeScalar(UInt32(cs[bs.firstIndex(of: Int(b))!]))!)
    }
}

/// A hyperparameter stored as a u64 above Int.max: the message says it is over the limit (it
/// said "expected u64, found u64"); a wrong type still says what was expected.
final class ConfigurationMetadataTests: XCTestCase {
    func testCountsOverTheLimitAndWrongTypes() throws {
        var m: G2WMetadata = ["g2w.architecture": .string("gpt2")]
        GPT2Configuration(layerCount: 1, headCount: 1, embeddingSize: 8, innerSize: 16, contextLength: 8, vocabularySize: 300).write(to: &m)
        XCTAssertNoThrow(try GPT2Configuration(metadata: m))
        m["gpt2.n_layer"] = .uint(UInt64.max)
        XCTAssertThrowsError(try GPT2Configuration(metadata: m)) {
            XCTAssertEqual("\($0)", "metadata key 'gpt2.n_layer': is 18446744073709551615, over the limit of 9223372036854775807")
        }
        m["gpt2.n_layer"] = .string("2")
        XCTAssertThrowsError(try GPT2Configuration(metadata: m)) {
            XCTAssertEqual("\($0)", "metadata key 'gpt2.n_layer': expected u64, found string")
        }
    }
}
