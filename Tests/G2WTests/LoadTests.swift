import Foundation
import G2W
import G2WBenchmark
import XCTest

/// Long generations and repeated runs through the library API: identical greedy output every
/// time, and resident memory flat (no leak).
final class LoadTests: XCTestCase {
    func anonymousResidentBytes() -> Int { Benchmark.residentMemory().1 }

    func testRepeatedFullContextGenerationsAreIdenticalAndDoNotLeak() throws {
        let model = try GPT2Model(path: Fixtures.path("shakespeare.g2w"))
        let prompt = try model.encode("ROMEO:")
        var o = GenerationOptions()
        o.sampling = .greedy
        o.stopAtEndOfText = false
        // To the full context (a quarter of it in debug builds, where the kernels are unoptimised).
        o.maxTokens = (model.configuration.contextLength - prompt.count) / (Fixtures.isDebugBuild ? 4 : 1)
        let first = try model.generate(prompt: prompt, options: o)
        XCTAssertEqual(first.tokens.count, o.maxTokens)
        let baseline = anonymousResidentBytes()
        let runs = Fixtures.isDebugBuild ? 3 : 10
        for run in 1..<runs {
            let r = try model.generate(prompt: prompt, options: o)
            XCTAssertEqual(r.tokens, first.tokens, "run \(run)")
            XCTAssertEqual(r.text, first.text)
        }
        let growth = anonymousResidentBytes() - baseline
        print("load: anonymous RSS growth over \(runs - 1) runs of \(o.maxTokens!) tokens: \(growth / 1024) KiB")
        XCTAssertLessThan(growth, 4 << 20, "resident memory grew by \(growth) bytes over \(runs - 1) runs")
        // Sampling with a seed is reproducible across runs too.
        var s = o
        s.sampling = SamplingOptions()
        s.sampling.seed = 7
        s.maxTokens = 50
        XCTAssertEqual(try model.generate(prompt: prompt, options: s).tokens, try model.generate(prompt: prompt, options: s).tokens)
    }

    /// Opening the model copies no weights: the anonymous memory added by opening is a small
    /// fraction of the weight bytes (the rest of the open cost is the tokenizer).
    func testOpeningDoesNotCopyWeights() throws {
        let before = anonymousResidentBytes()
        let model = try GPT2Model(path: Fixtures.path("shakespeare.g2w"))
        let s = try GPT2Session(model: model, threads: 1)
        _ = try s.append([1, 2, 3])
        let added = anonymousResidentBytes() - before
        let weights = Int(model.file.fileSize)
        print("open: anonymous RSS added \(added / 1024) KiB for \(weights / 1024) KiB of file")
        XCTAssertLessThan(added, weights / 2)
    }
}
