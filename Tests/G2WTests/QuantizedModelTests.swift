import CG2W
import Foundation
import G2W
import G2WFormat
import XCTest

/// Whole quantized models: the converter's re-encoding of a `.g2w`, the batched (prompt) path
/// against the plain reference on the dequantized weights, and decoding (int8 activations)
/// against the batched path.
final class QuantizedModelTests: XCTestCase {
    static let lock = NSLock()
    nonisolated(unsafe) static var cache: [String: String] = [:]

    /// The demo model (f16) re-encoded as `dtype` with the embeddings / head as `head`.
    func quantizedDemo(_ dtype: G2WDType, head: G2WDType) throws -> String {
        Self.lock.lock(); defer { Self.lock.unlock() }
        let key = "\(dtype)-\(head)"
        if let p = Self.cache[key] { return p }
        var o = HuggingFaceConverter.Options()
        o.dtype = dtype
        o.headDType = head
        o.output = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-demo-\(key)-\(UUID().uuidString).g2w").path
        let s = try HuggingFaceConverter(input: Fixtures.path("shakespeare.g2w"), options: o).run()
        Self.cache[key] = s.output
        return s.output
    }

    func tokens(_ model: GPT2Model, _ n: Int) throws -> [Int] {
        let text = "ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.\nJULIET:\nO Romeo, Romeo, wherefore art thou Romeo? Deny thy father and refuse thy name."
        return Array(try model.encode(text).prefix(n))
    }

    func testReEncodingKeepsEverythingButTheTypes() throws {
        let src = try GPT2Model(path: Fixtures.path("shakespeare.g2w"))
        let q = try GPT2Model(path: try quantizedDemo(.q4_0, head: .q8_0))
        XCTAssertEqual(q.file.header.versionMinor, 1)
        XCTAssertEqual(q.configuration, src.configuration)
        XCTAssertEqual(q.weightDType, .q4_0)
        XCTAssertEqual(q.parameters.head.dtype, .q8_0)
        XCTAssertEqual(q.weightTypesDescription, "q4_0 (wte q8_0)")
        XCTAssertEqual(q.file.info(named: "h.0.ln_1.weight")?.dtype, .f32)
        XCTAssertEqual(q.file.metadata["tokenizer.vocab"], src.file.metadata["tokenizer.vocab"])
        XCTAssertEqual(try q.encode("Hello there"), try src.encode("Hello there"))
        try q.file.verify()
        // Re-encoding a quantized file again is refused (it would add a second rounding).
        var o = HuggingFaceConverter.Options()
        o.dtype = .q8_0
        o.output = FileManager.default.temporaryDirectory.appendingPathComponent("never-\(UUID().uuidString).g2w").path
        XCTAssertThrowsError(try HuggingFaceConverter(input: q.file.path, options: o).run()) { e in
            XCTAssertTrue("\(e)".contains("is already q8_0") || "\(e)".contains("is already q4_0"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output!))
    }

    /// The prompt path on quantized weights computes with the dequantized weights in f32: it
    /// matches the Double reference on the same dequantized weights as tightly as f16 does.
    func testBatchedPathAgainstReference() throws {
        for (t, h) in [(G2WDType.q8_0, G2WDType.q8_0), (.q4_0, .q4_0)] {
            let m = try GPT2Model(path: try quantizedDemo(t, head: h))
            let ids = try tokens(m, 12)
            let ref = try GPT2Reference.logits(model: m, tokens: ids)
            let fast = try m.allLogits(for: ids)
            for p in 0..<ids.count {
                let scale = ref[p].map { abs($0) }.max()!
                XCTAssertLessThan(maxAbsDiff(fast[p], ref[p]) / scale, 2e-5, "\(t) position \(p)")
            }
        }
    }

    /// Decoding quantizes each product's input to int8 per block; against the batched path's
    /// logits (dequantized weights, f32 inputs) the next-token distributions stay close: mean KL
    /// < 2e-4 (measured 2.1e-5 and 2.3e-5) and the same top token at >= 95 % of positions.
    func testDecodingAgainstBatchedPath() throws {
        for (t, h, maxKL) in [(G2WDType.q8_0, G2WDType.q8_0, 2e-4), (.q4_0, .q8_0, 2e-4)] {
            let m = try GPT2Model(path: try quantizedDemo(t, head: h))
            let ids = try tokens(m, 48)
            let batched = try m.allLogits(for: ids)
            let s = try GPT2Session(model: m, threads: 2)
            var kl = 0.0, same = 0
            for (p, id) in ids.enumerated() {
                let step = try s.append([id])
                let a = logSoftmax(batched[p]), b = logSoftmax(step)
                kl += zip(a, b).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
                if a.indices.max(by: { a[$0] < a[$1] }) == b.indices.max(by: { b[$0] < b[$1] }) { same += 1 }
            }
            let meanKL = kl / Double(ids.count)
            XCTAssertLessThan(meanKL, maxKL, "\(t): mean KL of decoding vs batched")
            XCTAssertGreaterThan(meanKL, 0, "\(t): decoding should round its inputs")
            XCTAssertGreaterThanOrEqual(Double(same) / Double(ids.count), 0.95, "\(t): same top token")
        }
    }

    func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    /// --dtype values that do not exist and shapes a block type cannot hold are refused before
    /// anything is written.
    func testConverterRefusesWhatItCannotEncode() throws {
        // The tiny reference model's matrices are 64 wide: q8_0 fits. A 48-wide model does not.
        var o = HuggingFaceConverter.Options()
        o.dtype = .q4_0
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("q-\(UUID().uuidString).g2w").path
        o.output = out
        let s = try HuggingFaceConverter(input: Fixtures.path("tiny-f32"), options: o).run()
        XCTAssertEqual(try GPT2Model(path: s.output).weightTypesDescription, "q4_0 (wte q8_0)")
        XCTAssertNil(G2WDType(name: "q5_1"))
    }
}
