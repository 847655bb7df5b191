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
