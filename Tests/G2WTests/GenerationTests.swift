import Foundation
import G2W
import XCTest

final class GenerationTests: XCTestCase {
    lazy var tiny: GPT2Model = try! GPT2Model(path: try! Fixtures.convert(Fixtures.path("tiny-f32/model.safetensors"), dtype: .f32))

    /// Greedy continuations identical, token for token, to transformers' `generate`.
    func testGreedyMatchesTransformers() throws {
        let ref = try Fixtures.json(Fixtures.path("tiny-f32/ref.json"))
        for (p, expected) in zip(ref["prompts"] as! [[Int]], ref["greedy"] as! [[Int]]) {
            var o = GenerationOptions()
            o.sampling = .greedy
            o.maxTokens = expected.count
            o.stopAtEndOfText = false
            let r = try tiny.generate(prompt: p, options: o)
            XCTAssertEqual(r.tokens, expected)
            XCTAssertEqual(r.stopReason, .maxTokens)
        }
    }

    func testSameSeedSameOutputDifferentSeedDifferentOutput() throws {
        var o = GenerationOptions()
        o.maxTokens = 20
        o.sampling.temperature = 1.5
        o.sampling.topK = 0
        o.sampling.topP = 1
        o.sampling.minP = 0
        o.sampling.seed = 42
        let a = try tiny.generate(prompt: [464], options: o)
        let b = try tiny.generate(prompt: [464], options: o)
        XCTAssertEqual(a.tokens, b.tokens)
        o.sampling.seed = 43
        let c = try tiny.generate(prompt: [464], options: o)
        XCTAssertNotEqual(a.tokens, c.tokens)
    }

    func testTopKOneIsGreedy() throws {
        var o = GenerationOptions()
        o.maxTokens = 10
        o.sampling.topK = 1
        var g = GenerationOptions()
        g.maxTokens = 10
        g.sampling = .greedy
        XCTAssertEqual(try tiny.generate(prompt: [15496, 11], options: o).tokens, try tiny.generate(prompt: [15496, 11], options: g).tokens)
    }

    func testSamplerFilters() {
        // Logits for 5 tokens; probabilities proportional to exp.
        let logits: [Float] = [2, 1, 0, -1, 3]
        var o = SamplingOptions()
        o.topP = 1; o.minP = 0; o.topK = 2; o.temperature = 1
        var s = Sampler(options: o)
        var seen = Set<Int>()
        for _ in 0..<500 { seen.insert(s.sample(logits: logits, history: [])) }
        XCTAssertEqual(seen, [4, 0], "top-k 2 keeps the two best")
        o.topK = 0; o.topP = 0.5
        s = Sampler(options: o)
        seen = []
        for _ in 0..<500 { seen.insert(s.sample(logits: logits, history: [])) }
        XCTAssertEqual(seen, [4], "top-p 0.5: the best token alone has p = 0.64")
        o.topP = 1; o.minP = 0.3
        s = Sampler(options: o)
        seen = []
        for _ in 0..<1000 { seen.insert(s.sample(logits: logits, history: [])) }
        XCTAssertEqual(seen, [4, 0, 1].reduce(into: Set<Int>()) { $0.insert($1) }.filter { exp(Double(logits[$0]) - 3) >= 0.3 }, "min-p 0.3 keeps tokens with p >= 0.3 p_max")
        // Repetition penalty turns the greedy choice away from a repeated token.
        var r = SamplingOptions.greedy
        r.repetitionPenalty = 2
        s = Sampler(options: r)
        XCTAssertEqual(s.sample(logits: logits, history: [4]), 0)  // 3 / 2 = 1.5 < 2
        XCTAssertEqual(Sampler.argmax([1, 5, 5, 2]), 1)
    }

    func testOptionValidation() {
        var o = SamplingOptions()
        o.topP = 1.5
        XCTAssertThrowsError(try o.validate())
        o = SamplingOptions(); o.temperature = .nan
        XCTAssertThrowsError(try o.validate())
        o = SamplingOptions(); o.repetitionPenalty = 0
        XCTAssertThrowsError(try o.validate())
        var g = GenerationOptions()
        g.maxTokens = 61
        XCTAssertThrowsError(try tiny.generate(prompt: [1, 2, 3, 4], options: g)) {
            XCTAssertEqual($0 as? GenerationError, .promptTooLong(promptTokens: 4, maxTokens: 61, contextLength: 64))
            XCTAssertEqual($0.localizedDescription, "the prompt (4 tokens) plus 61 new tokens exceeds the model's context of 64 tokens: at most 60 can be generated after this prompt")
        }
        g.maxTokens = nil
        XCTAssertEqual(try g.tokenBudget(promptCount: 60, contextLength: 64), 4, "the default stops at the context")
        XCTAssertThrowsError(try g.tokenBudget(promptCount: 64, contextLength: 64))
    }

    func testStopStringsAreNotPrintedAndStopGeneration() throws {
        // Greedy tiny-f32 repeats " DM"; stop at "DM DM".
        var o = GenerationOptions()
        o.sampling = .greedy
        o.maxTokens = 20
        o.stopStrings = ["DM DM"]
        var streamed = ""
        let r = try tiny.generate(prompt: [15496, 11, 995, 0], options: o) { streamed += $0.text; return true }
        XCTAssertEqual(r.stopReason, .stopString("DM DM"))
        XCTAssertEqual(r.text, " ")
        XCTAssertEqual(streamed, r.text)
        XCTAssertEqual(r.tokens.count, 2)
    }

    func testAsyncSequenceAPI() async throws {
        var o = GenerationOptions()
        o.sampling = .greedy
        o.maxTokens = 5
        var text = ""
        for try await piece in tiny.pieces(for: "Hello, world!", options: o) { text += piece.text }
        XCTAssertEqual(text, String(repeating: " DM", count: 5))
    }
}
