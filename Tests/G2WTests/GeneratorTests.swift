import Foundation
import G2W
import XCTest

/// The step-wise generator, log-probabilities, sessions that continue, the shared worker pool.
final class GeneratorTests: XCTestCase {
    lazy var tiny: GPT2Model = try! GPT2Model(path: try! Fixtures.convert(Fixtures.path("tiny-f32/model.safetensors"), dtype: .f32))
    lazy var shakespeare: GPT2Model = try! GPT2Model(path: Fixtures.path("shakespeare.g2w"))

    func sampled(_ n: Int, seed: UInt64) -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = n
        o.sampling.temperature = 1.2
        o.sampling.seed = seed
        o.stopAtEndOfText = false
        return o
    }

    /// Log-probabilities against transformers: the first greedy token's log-softmax and the top 5
    /// from the reference logits (tools/make tiny-f32 reference, float32, 50,257 entries).
    func testLogProbabilitiesMatchTransformersLogits() throws {
        let ref = try Fixtures.json(Fixtures.path("tiny-f32/ref.json"))
        let prompts = ref["prompts"] as! [[Int]]
        let refLogits = try Fixtures.floats(Fixtures.path("tiny-f32/logits_last.f32"))
        let V = 50257
        for (i, p) in prompts.enumerated() where p.count < 64 {
            let row = refLogits[(i * V)..<((i + 1) * V)].map(Double.init)
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            var o = GenerationOptions()
            o.sampling = .greedy
            o.maxTokens = 1
            o.logProbabilities = 5
            var pieces: [GeneratedPiece] = []
            let r = try tiny.generate(prompt: p, options: o) { pieces.append($0); return true }
            XCTAssertEqual(pieces.count, 1)
            let chosen = pieces[0].token
            XCTAssertEqual(chosen, (ref["greedy"] as! [[Int]])[i].first)
            XCTAssertEqual(pieces[0].logProbability!, row[chosen] - lse, accuracy: 2e-4, "prompt \(i)")
            XCTAssertEqual(r.logProbabilities.count, 1)
            XCTAssertEqual(r.logProbabilities[0], pieces[0].logProbability!)
            let expectedTop = row.indices.sorted { row[$0] > row[$1] }.prefix(5)
            XCTAssertEqual(pieces[0].topLogProbabilities.map(\.token), Array(expectedTop), "prompt \(i)")
            for t in pieces[0].topLogProbabilities { XCTAssertEqual(t.logProbability, row[t.token] - lse, accuracy: 2e-4) }
            XCTAssertEqual(pieces[0].topLogProbabilities[0].token, chosen, "greedy picks the most likely")
        }
    }

    /// Sampled generation: log-probabilities describe the model's distribution (they sum to 1
    /// over the vocabulary), the chosen token's is among the alternatives when ranked high enough.
    func testSampledLogProbabilitiesAreTheModelDistribution() throws {
        var o = sampled(6, seed: 3)
        o.logProbabilities = 0
        var history = [464]
        let r = try tiny.generate(prompt: [464], options: o)
        XCTAssertEqual(r.logProbabilities.count, 6)
        for (t, lp) in zip(r.tokens, r.logProbabilities) {
            let logits = try tiny.logits(for: history).map(Double.init)
            let mx = logits.max()!
            let lse = mx + log(logits.reduce(0) { $0 + exp($1 - mx) })
            XCTAssertEqual(lp, logits[t] - lse, accuracy: 1e-4)
            XCTAssertLessThanOrEqual(lp, 0)
            history.append(t)
        }
        o.logProbabilities = GenerationState.maxTopLogProbabilities + 1
        XCTAssertThrowsError(try tiny.generate(prompt: [464], options: o))
    }

    /// The generator step by step gives what generate() gives; a session continued by a second
    /// generator gives what one generation over the whole text gives.
    func testStepwiseAndContinuedSessions() throws {
        let prompt = try shakespeare.encode("ROMEO:\nWhat light")
        let whole = try shakespeare.generate(prompt: prompt, options: sampled(12, seed: 9))
        let g = try GPT2Generator(model: shakespeare, prompt: prompt, options: sampled(12, seed: 9))
        var tokens: [Int] = [], text = ""
        while let p = try g.next() { if p.token >= 0 { tokens.append(p.token) }; text += p.text }
        XCTAssertEqual(tokens, whole.tokens)
        XCTAssertEqual(text, whole.text)
        XCTAssertEqual(g.result.seed, 9)
        XCTAssertEqual(g.state.stopReason, .maxTokens)
        XCTAssertEqual(g.session.tokens, prompt + tokens.dropLast(), "the last token is not evaluated")

        // Greedy: 5 tokens, then 5 more continuing the same session, equal 10 in one go.
        var greedy = GenerationOptions()
        greedy.sampling = .greedy
        greedy.maxTokens = 10
        let ten = try shakespeare.generate(prompt: prompt, options: greedy).tokens
        greedy.maxTokens = 5
        let first = try GPT2Generator(model: shakespeare, prompt: prompt, options: greedy)
        while try first.next() != nil {}
        let five = first.result.tokens
        XCTAssertEqual(five, Array(ten.prefix(5)))
        let second = try GPT2Generator(model: shakespeare, prompt: [five.last!], options: greedy, session: first.session)
        while try second.next() != nil {}
        XCTAssertEqual(five + second.result.tokens, ten)
        XCTAssertEqual(second.result.promptTokens, [five.last!])
    }

    /// An empty prompt starts from <|endoftext|>, as transformers and llama.cpp do.
    func testEmptyPromptStartsFromEndOfText() throws {
        var o = GenerationOptions()
        o.sampling = .greedy
        o.maxTokens = 8
        o.stopAtEndOfText = false
        let empty = try shakespeare.generate(prompt: [], options: o)
        let eos = try shakespeare.generate(prompt: [50256], options: o)
        XCTAssertEqual(empty.tokens, eos.tokens)
        XCTAssertEqual(empty.tokens.count, 8)
        XCTAssertEqual(empty.promptTokens, [])
    }

    /// Cancelling: onPiece returning false ends with .cancelled; isCancelled before the first
    /// step ends the generation without running the prompt.
    func testCancellation() throws {
        let o = sampled(20, seed: 1)
        var n = 0
        let r = try shakespeare.generate(prompt: [50256], options: o) { _ in n += 1; return n < 3 }
        XCTAssertEqual(r.stopReason, .cancelled)
        XCTAssertEqual(r.tokens.count, 3)
        let g = try GPT2Generator(model: shakespeare, prompt: Array(repeating: 13, count: 200), options: o)
        g.isCancelled = { true }
        XCTAssertNil(try g.next())
        XCTAssertEqual(g.state.stopReason, .cancelled)
        XCTAssertEqual(g.session.count, 0)
        // Cancelled between prompt chunks: the first chunk ran, the rest did not.
        let h = try GPT2Generator(model: shakespeare, prompt: Array(repeating: 13, count: 200), options: o)
        h.promptChunk = 64
        var checks = 0
        h.isCancelled = { checks += 1; return checks > 1 }
        XCTAssertNil(try h.next())
        XCTAssertEqual(h.state.stopReason, .cancelled)
        XCTAssertEqual(h.session.count, 64)
        // Chunked prompts give the same greedy continuation as one pass.
        var greedy = GenerationOptions()
        greedy.sampling = .greedy
        greedy.maxTokens = 6
        let prompt = try shakespeare.encode(String(repeating: "To be, or not to be, that is the question. ", count: 12))
        let one = try shakespeare.generate(prompt: prompt, options: greedy).tokens
        let chunked = try GPT2Generator(model: shakespeare, prompt: prompt, options: greedy)
        chunked.promptChunk = 50
        while try chunked.next() != nil {}
        XCTAssertEqual(chunked.result.tokens, one)
    }

    /// The default seed is random (two option values differ), and reported with the result.
    func testDefaultSeedIsRandomAndReported() throws {
        let a = SamplingOptions(), b = SamplingOptions(), c = SamplingOptions()
        XCTAssertFalse(a.seed == b.seed && b.seed == c.seed)
        var o = GenerationOptions()
        o.maxTokens = 2
        XCTAssertEqual(try tiny.generate(prompt: [464], options: o).seed, o.sampling.seed)
    }

    /// Sessions share one pool per thread count; used from two threads at once they take turns
    /// and compute exactly what they compute alone.
    func testSharedPoolConcurrentSessions() throws {
        let s1 = try GPT2Session(model: shakespeare, threads: 2), s2 = try GPT2Session(model: shakespeare, threads: 2)
        XCTAssertTrue(s1.compute === s2.compute)
        XCTAssertTrue(ComputeContext.shared(threads: 2) === s1.compute)
        let a = try shakespeare.encode("First Citizen:\nBefore we proceed any further, hear me speak.")
        let b = try shakespeare.encode("KING RICHARD III:\nNow is the winter of our discontent")
        let alone = try [a, b].map { try shakespeare.logits(for: $0 + [11, 13, 198], threads: 2) }
        var results: [[Float]] = [[], []]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let s = i == 0 ? s1 : s2
            var l = try! s.append(i == 0 ? a : b)
            for t in [11, 13, 198] { l = try! s.append([t]) }
            lock.lock(); results[i] = l; lock.unlock()
        }
        XCTAssertEqual(maxAbsDiff(results[0], alone[0]), 0, accuracy: 1e-4)
        XCTAssertEqual(maxAbsDiff(results[1], alone[1]), 0, accuracy: 1e-4)
    }

    /// Errors print their message through localizedDescription too.
    func testLocalizedDescriptions() {
        let e: Error = ModelError.tokenOutOfRange(id: 9, vocabularySize: 4)
        XCTAssertEqual(e.localizedDescription, "token id 9 is out of range (vocabulary size 4)")
        let g: Error = GenerationError.emptyPrompt
        XCTAssertEqual(g.localizedDescription, "\(g)")
    }
}
