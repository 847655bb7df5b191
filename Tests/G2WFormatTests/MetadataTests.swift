import CG2W
import G2WFormat
import Testing

/// Metadata encoding rules, in Swift Testing (the rest of the suite uses XCTest).
@Suite struct MetadataTests {
    @Test(arguments: ["a", "gpt2.n_layer", "tokenizer.vocab", "x-y_z.9", String(repeating: "k", count: 255)])
    func validKeys(_ key: String) {
        #expect(G2WMetadata.isValidKey(key))
    }

    @Test(arguments: ["", "with space", "ünïcode", "tab\t", String(repeating: "k", count: 256), "a/b"])
    func invalidKeys(_ key: String) {
        #expect(!G2WMetadata.isValidKey(key))
    }

    @Test func replacingAndRemovingKeepsOrder() {
        var m: G2WMetadata = ["a": .uint(1), "b": .string("x"), "c": .bool(true)]
        m["b"] = .int(-2)
        #expect(m.entries.map(\.key) == ["a", "b", "c"])
        #expect(m["b"] == .int(-2))
        m["a"] = nil
        #expect(m.entries.map(\.key) == ["b", "c"])
        #expect(m["c"] == .bool(true))
        #expect(m["a"] == nil)
    }

    @Test func crc32cCheckValue() {
        #expect(g2w_crc32c(0, Array("123456789".utf8), 9) == 0xE306_9283)
    }
}
