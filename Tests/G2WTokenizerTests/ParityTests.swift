import Foundation
import G2WTokenizer
import XCTest

/// The tokenizer against tiktoken's ids (fixtures written by tools/tokenizer_reference.py).
final class ParityTests: XCTestCase {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array(String(repeating: "a", count: 1000).utf8)),
                       "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    /// Decodes the committed ids, proves they are the corpus (length + SHA-256), re-encodes.
    private func checkCorpus(_ name: String) throws {
        let manifest = try Fixtures.manifest()
        let entry = (manifest["corpora"] as! [String: Any])[name] as! [String: Any]
        let ids = readU16(try Fixtures.data(entry["ids"] as! String))
        XCTAssertEqual(ids.count, entry["tokens"] as? Int)
        let bytes = try gpt2.decode(ids)
        XCTAssertEqual(bytes.count, entry["bytes"] as? Int, "\(name): decoded length")
        XCTAssertEqual(SHA256.hex(bytes), entry["sha256"] as? String, "\(name): decoded SHA-256")
        guard let text = String(validating: bytes, as: UTF8.self) else { return XCTFail("\(name): not UTF-8") }
        let encoded = gpt2.encode(text)
        if let mismatch = firstMismatch(encoded, ids) { XCTFail("\(name): \(mismatch)") }
    }

    func testTinyShakespeareMatchesTiktoken() throws { try checkCorpus("tinyshakespeare") }

    func testWikiTextMatchesTiktoken() throws { try checkCorpus("wiki.test") }

    private func edgeCases() throws -> (cases: [(String, [Int])], special: [(String, [Int])], digest: String) {
        let json = try EdgeCases.load()
        return (json.cases.map { ($0.text, $0.ids) }, json.special_allowed.map { ($0.text, $0.ids) }, json.texts_sha256)
    }

    func testEdgeCasesMatchTiktoken() throws {
        let (cases, _, digest) = try edgeCases()
        XCTAssertGreaterThan(cases.count, 3000)
        XCTAssertEqual(textsDigest(cases.map(\.0)), digest, "edge case texts were not read back exactly")
        var failures = 0
        for (text, expected) in cases {
            let actual = gpt2.encode(text)
            if actual != expected {
                failures += 1
                if failures <= 10 {
                    XCTFail("\(String(reflecting: text)): \(firstMismatch(actual, expected) ?? "")")
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) edge cases differ from tiktoken")
    }

    func testEdgeCasesRoundTrip() throws {
        let (cases, _, _) = try edgeCases()
        for (text, _) in cases {
            let ids = gpt2.encode(text)
            XCTAssertEqual(try gpt2.decode(ids), Array(text.utf8), String(reflecting: text))
            XCTAssertEqual(try gpt2.decodeText(ids), text)
        }
    }

    func testSpecialTokensAllowedMatchTiktoken() throws {
        let (_, special, _) = try edgeCases()
        XCTAssertFalse(special.isEmpty)
        for (text, expected) in special {
            XCTAssertEqual(gpt2.encode(text, allowSpecialTokens: true), expected, String(reflecting: text))
            XCTAssertEqual(try gpt2.decodeText(expected), text)
        }
        XCTAssertEqual(gpt2.encode("<|endoftext|>", allowSpecialTokens: true), [50256])
        XCTAssertNotEqual(gpt2.encode("<|endoftext|>"), [50256])
        XCTAssertFalse(gpt2.encode("a<|endoftext|>b").contains(50256))
    }

    /// 1 MB strings that make naive BPE quadratic; ids checked by count and SHA-256.
    func testPathologicalStringsMatchTiktoken() throws {
        let manifest = try Fixtures.manifest()
        let entries = manifest["pathological"] as! [String: [String: Any]]
        XCTAssertGreaterThanOrEqual(entries.count, 6)
        for (name, recipe) in entries.sorted(by: { $0.key < $1.key }) {
            let text = pathologicalText(recipe)
            XCTAssertEqual(text.utf8.count, recipe["utf8_bytes"] as? Int, name)
            let ids = gpt2.encode(text)
            XCTAssertEqual(ids.count, recipe["tokens"] as? Int, name)
            XCTAssertEqual(SHA256.hex(u32Bytes(ids)), recipe["ids_sha256"] as? String, name)
            XCTAssertEqual(try gpt2.decode(ids).count, text.utf8.count, name)
        }
    }

    /// One shared tokenizer used from several threads at once gives the same ids.
    func testConcurrentEncoding() throws {
        let (cases, _, _) = try edgeCases()
        let texts = cases.map(\.0)
        let long = texts.joined(separator: "\n")
        let expectedLong = gpt2.encode(long)
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            let t = gpt2
            for (k, (text, expected)) in cases.enumerated() where k % 8 == worker {
                if t.encode(text) != expected { failures.add() }
            }
            if t.encode(long) != expectedLong { failures.add() }
        }
        XCTAssertEqual(failures.count, 0)
    }

    func testKnownIDs() {
        XCTAssertEqual(gpt2.encode("Hello world"), [15496, 995])
        XCTAssertEqual(gpt2.encode(" the"), [262])
        XCTAssertEqual(gpt2.encode(""), [])
        XCTAssertEqual(gpt2.encode("\n"), [198])
        XCTAssertEqual(gpt2.preTokenize("Hello  world's 12!!\n\n x"), ["Hello", " ", " world", "'s", " 12", "!!", "\n\n", " x"])
        XCTAssertEqual(gpt2.preTokenize("IT'S"), ["IT", "'", "S"])
        XCTAssertEqual(gpt2.preTokenize("a \t\nb  "), ["a", " \t", "\n", "b", "  "])
    }
}

private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
}
