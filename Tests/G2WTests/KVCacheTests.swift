import CG2W
import Foundation
import G2W
import G2WBenchmark
import G2WFormat
import XCTest

/// The f16 KV cache (`--kv-type f16`): the attention kernel on binary16 keys and values against
/// a Double reference on the same (rounded) values at every level, and whole sessions against
/// the f32 cache, through both attention paths (one query at a time, and a batched prompt).
final class KVCacheTests: XCTestCase {
    func testAttendF16AgainstReference() {
        var rng = SeededGenerator(seed: 5)
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Double(rng.next() >> 11) * 0x1.0p-53 * 2 - 1) } }
        for level in Array(0...g2w_force_isa(-1)) {
            _ = g2w_force_isa(level)
            defer { _ = g2w_force_isa(-1) }
            for (n, hd, heads, stride) in [(1, 8, 1, 8), (5, 16, 2, 40), (37, 64, 1, 96), (130, 24, 1, 24), (3, 12, 1, 12), (41, 64, 6, 768)] {
                let q = rand(heads * hd), K = rand(n * stride).map { Float16($0) }, V = rand(n * stride).map { Float16($0) }
                var out = [Float](repeating: .nan, count: heads * hd), scores = [Float](repeating: 0, count: heads * n)
                let kb = K.map(\.bitPattern), vb = V.map(\.bitPattern)
                g2w_attend_f16(q, kb, vb, stride, n, hd, heads, 0.3, &scores, &out)
                // Double reference on the same binary16 values.
                for h in 0..<heads {
                    let s = (0..<n).map { j in 0.3 * (0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * Double(Float(K[j * stride + h * hd + $1])) } }
                    let m = s.max()!, e = s.map { exp($0 - m) }, z = e.reduce(0, +)
                    for i in 0..<hd {
                        let ref = (0..<n).reduce(0.0) { $0 + e[$1] / z * Double(Float(V[$1 * stride + h * hd + i])) }
                        XCTAssertEqual(Double(out[h * hd + i]), ref, accuracy: 2e-6, "level \(level) n \(n) hd \(hd) head \(h) i \(i)")
                    }
                }
            }
        }
    }

    func testSessionsWithF16CacheFollowTheF32Cache() throws {
        let m = try GPT2Model(path: Fixtures.path("shakespeare.g2w"))
        let ids = Array(try m.encode(String(repeating: "ROMEO: But soft, what light through yonder window breaks? ", count: 4)).prefix(60))
        XCTAssertGreaterThanOrEqual(ids.count, 40)
        let full = try GPT2Session(model: m, threads: 2), half = try GPT2Session(model: m, threads: 2, kvType: .f16)
        XCTAssertEqual(half.kvType, .f16)
        // A batched prompt of 40 tokens (the blocked attention path), then one token at a time.
        let a = try full.append(Array(ids[0..<40])), b = try half.append(Array(ids[0..<40]))
        let scale = a.map { abs($0) }.max()!
        XCTAssertLessThan(maxAbsDiff(a, b) / scale, 1e-2)
        XCTAssertGreaterThan(maxAbsDiff(a, b), 0, "keys and values are rounded to binary16")
        for id in ids[40...] {
            let x = try full.append([id]), y = try half.append([id])
            XCTAssertLessThan(maxAbsDiff(x, y) / scale, 1e-2)
            XCTAssertEqual(x.indices.max(by: { x[$0] < x[$1] }), y.indices.max(by: { y[$0] < y[$1] }))
        }
        XCTAssertThrowsError(try GPT2Session(model: m, kvType: .q8_0))
    }
}

/// A model with a long context runs a short prompt in memory for that prompt (issue 17, item 1):
/// the cache and the score buffers grow with the sequence instead of being sized for n_ctx
/// (here 2^20 positions: 41 GB of prompt scores and 128 MB of cache per layer before).
final class LongContextTests: XCTestCase {
    func testShortPromptOnAMillionPositionContext() throws {
        let c = GPT2Configuration(layerCount: 1, headCount: 2, embeddingSize: 16, innerSize: 64, contextLength: 1 << 20, vocabularySize: 300)
        let block = try GPT2ParameterBlock(configuration: c, untiedHead: false)
        var rng = SeededGenerator(seed: 3)
        for i in 0..<block.count { block.storage.base[i] = Float(Double(rng.next() >> 11) * 0x1.0p-53 - 0.5) * 0.1 }
        for name in ["h.0.ln_1.weight", "h.0.ln_2.weight", "ln_f.weight"] { for j in block.tensor(named: name)!.indices { block.tensor(named: name)![j] = 1 } }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("long-\(UUID().uuidString).g2w").path
        defer { unlink(path) }
        try GPT2ModelWriter.write(block, to: path, dtype: .f16, writer: "test")
        let model = try GPT2Model(path: path)
        let before = Benchmark.residentMemory().1
        let session = try GPT2Session(model: model, threads: 2)
        let prompt = (0..<3000).map { _ in Int(rng.next() % 300) }
        let logits = try session.append(prompt)
        XCTAssertEqual(logits.count, 300)
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        for t in 0..<5 { XCTAssertEqual(try session.append([t]).count, 300) }
        XCTAssertEqual(session.count, 3005)
        // Resident memory for this: scores [2, 3000, 3000] floats (72 MB) and a small cache, not GBs.
        XCTAssertLessThan(Benchmark.residentMemory().1 - before, 400 << 20)
        // The same logits as a session that grew its cache token by token from a short start.
        let again = try GPT2Session(model: model, threads: 1)
        _ = try again.append(Array(prompt[0..<10]))
        var last: [Float] = []
        for id in prompt[10...] { last = try again.append([id]) }
        XCTAssertLessThan(maxAbsDiff(last, logits), 1e-4)
    }
}
