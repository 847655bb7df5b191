import Foundation
import G2W
import XCTest

/// The shared tiny GPT-2 saved by transformers 5.23, and the logits transformers computed.
final class TinyReferenceParityTests: XCTestCase {
    let dir = Fixtures.path("tiny-f32")

    func testLastPositionLogitsMatchTransformers() throws {
        let model = try GPT2Model(path: try Fixtures.convert(dir + "/model.safetensors", dtype: .f32))
        let ref = try Fixtures.json(dir + "/ref.json")
        let prompts = ref["prompts"] as! [[Int]]
        let expected = try Fixtures.floats(dir + "/logits_last.f32")
        let v = model.configuration.vocabularySize
        for (i, p) in prompts.enumerated() {
            let logits = try model.logits(for: p)
            let d = maxAbsDiff(logits, expected[(i * v)..<((i + 1) * v)])
            XCTAssertLessThan(d, 1e-4, "prompt \(i): max |diff| \(d)")
        }
    }

    /// All positions of the first prompt. The 800 KB reference stays in ../shared (fixture budget);
    /// every other parity case checks all positions from the repository's own fixtures.
    func testAllPositionLogitsMatchTransformers() throws {
        guard let shared = Fixtures.shared else { throw XCTSkip("../shared/reference/tiny-f32 not present") }
        let model = try GPT2Model(path: try Fixtures.convert(dir + "/model.safetensors", dtype: .f32))
        let ref = try Fixtures.json(dir + "/ref.json")
        let prompt = (ref["prompts"] as! [[Int]])[0]
        let expected = try Fixtures.floats(shared.appendingPathComponent("reference/tiny-f32/logits_first_prompt.f32").path)
        let all = try model.allLogits(for: prompt)
        XCTAssertEqual(all.count * model.configuration.vocabularySize, expected.count)
        let d = maxAbsDiff(all.flatMap { $0 }, expected)
        XCTAssertLessThan(d, 1e-4, "max |diff| \(d)")
        // The reference path agrees too.
        let r = try GPT2Reference.logits(model: model, tokens: prompt)
        XCTAssertLessThan(maxAbsDiff(r.flatMap { $0 }, expected), 1e-4)
    }
}
