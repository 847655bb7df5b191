import Foundation
import G2W
import G2WFormat
import XCTest

/// A small file whose metadata claims a huge model (fuzz-model found it: opening built the whole
/// tensor schema, 12 names per claimed layer, before looking up the first tensor, and ran out of
/// memory). Opening must fail at the first missing tensor, in bounded time and memory.
final class HugeClaimTests: XCTestCase {
    func testMillionLayerClaimFailsAtTheFirstMissingTensor() throws {
        let c = GPT2Configuration(layerCount: 1 << 20, headCount: 1, embeddingSize: 4, contextLength: 4, vocabularySize: 8)
        var meta = G2WMetadata()
        meta["g2w.architecture"] = .string("gpt2")
        c.write(to: &meta)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-huge-\(UUID().uuidString).g2w").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try G2WWriter(path: path, metadata: meta, tensors: [G2WTensorDescriptor(name: "wte.weight", dtype: .f32, shape: [8, 4]),
                                                                     G2WTensorDescriptor(name: "wpe.weight", dtype: .f32, shape: [4, 4])])
        try w.write([Float](repeating: 0.5, count: 48))
        try w.finish()
        let start = Date()
        XCTAssertThrowsError(try GPT2Model(path: path)) { XCTAssertEqual($0 as? ModelError, .missingTensor("h.0.ln_1.weight")) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, "opening a file that claims 2^20 layers")
    }
}
