import Foundation
import G2WTokenizer
import XCTest

/// `GPT2Tokenizer.gpt2()`, built from the merges compiled into the binary, against the tokenizer
/// loaded from the committed vocab.json + merges.txt (`gpt2` in Support.swift).
final class BuiltInGPT2Tests: XCTestCase {
    /// Built once for the tests that only compare encodings.
    private static let builtIn: GPT2Tokenizer = {
        do { return try GPT2Tokenizer.gpt2() } catch { fatalError("GPT2Tokenizer.gpt2(): \(error)") }
    }()

    func testSameVocabularyMergesAndSpecialTokens() throws {
        let builtIn = Self.builtIn
        XCTAssertEqual(builtIn.vocabularySize, 50_257)
        XCTAssertEqual(builtIn.vocabularySize, gpt2.vocabularySize)
        XCTAssertEqual(builtIn.endOfTextID, 50_256)
        XCTAssertEqual(builtIn.endOfTextID, gpt2.endOfTextID)
        XCTAssertEqual(builtIn.specialTokens, gpt2.specialTokens)
        let vocabulary = builtIn.vocabularyInIDOrder
        let expectedVocabulary = gpt2.vocabularyInIDOrder
        XCTAssertEqual(vocabulary.count, expectedVocabulary.count)
        if let i = zip(vocabulary, expectedVocabulary).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            XCTFail("vocabulary differs first at id \(i): \(vocabulary[i]) vs \(expectedVocabulary[i])")
        }
        let merges = builtIn.mergeStrings
        let expectedMerges = gpt2.mergeStrings
        XCTAssertEqual(merges.count, 50_000)
        XCTAssertEqual(merges.count, expectedMerges.count)
        if let i = zip(merges, expectedMerges).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            XCTFail("merges differ first at rank \(i): \(merges[i]) vs \(expectedMerges[i])")
        }
        // The embedded merges are merges.txt itself, line for line.
        let file = try String(contentsOf: Fixtures.mergesTXT, encoding: .utf8)
        let lines = file.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.first, "#version: 0.2")
        XCTAssertEqual(lines.last, "")
        XCTAssertEqual(Array(lines.dropFirst().dropLast()).map(String.init), merges)
        // A few landmarks of the derived vocabulary.
        XCTAssertEqual(builtIn.tokenString(0), "!")
        XCTAssertEqual(builtIn.tokenString(187), "ÿ")
        XCTAssertEqual(builtIn.tokenString(188), "Ā")  // byte 0x00
        XCTAssertEqual(builtIn.tokenString(220), "Ġ")  // byte 0x20
        XCTAssertEqual(builtIn.tokenString(256), "Ġt")  // merge 0, "Ġ t"
        XCTAssertEqual(builtIn.tokenString(50_255), "Ġgazed")  // the last merge
        XCTAssertEqual(builtIn.tokenString(50_256), "<|endoftext|>")
        for id in 0..<256 { XCTAssertEqual(try builtIn.tokenBytes(id).count, 1, "id \(id)") }
    }

    func testSameIDsOnSampleText() throws {
        let builtIn = Self.builtIn
        let samples = [
            "Hello world",
            "The quick brown fox jumps over the lazy dog. It's 2024; we'll see, they've gone, I'd say.",
            "  leading and trailing spaces  \n\n\ttabs\r\nwindows line ends\u{0B}\u{0C}",
            "Ünïcödé: naïve café, Straße, Æsir, œuvre, ĳ — “quotes” ‘single’ … €100 ¥200 £3",
            "中文测试：你好，世界。日本語のテキスト、カタカナ。한국어 텍스트.",
            "Русский текст, Ελληνικά, עברית, العربية, हिन्दी, ไทย",
            "Emoji 😀👍🏽👨‍👩‍👧‍👦🇫🇷 and combining e\u{0301} a\u{0308}, zero width\u{200B}joiner, BOM\u{FEFF}.",
            "Numbers 3.14159 1,000,000 0x1F 1e-9 ½ ² ١٢٣ and symbols @#$%^&*()_+-=[]{}|;':\",./<>?`~",
            "code: func f(x: Int) -> Int { return x * 2 } // comment\n    indented()\n",
            "<|endoftext|> as text, and again<|endoftext|>",
            "\u{0}\u{1}\u{7F}\u{80}\u{85}\u{A0}\u{AD}\u{FFFD}\u{10FFFF}",
            String(repeating: "a", count: 300) + " " + String(repeating: "!?", count: 100),
        ]
        for text in samples {
            XCTAssertEqual(builtIn.encode(text), gpt2.encode(text), String(reflecting: text))
            XCTAssertEqual(builtIn.encode(text, allowSpecialTokens: true), gpt2.encode(text, allowSpecialTokens: true),
                           String(reflecting: text))
            XCTAssertEqual(try builtIn.decodeText(builtIn.encode(text)), text)
        }
        XCTAssertEqual(builtIn.encode("Hello world"), [15496, 995])
        XCTAssertEqual(builtIn.encode("<|endoftext|>", allowSpecialTokens: true), [50_256])
        // tiktoken's ids for every edge case.
        for c in try EdgeCases.load().cases {
            XCTAssertEqual(builtIn.encode(c.text), c.ids, String(reflecting: c.text))
        }
    }

    /// The first 8 KB of each corpus whose ids are committed (the text is the decoded ids).
    func testSameIDsOnCorpusPrefixes() throws {
        let builtIn = Self.builtIn
        let corpora = try Fixtures.manifest()["corpora"] as! [String: Any]
        XCTAssertFalse(corpora.isEmpty)
        for (name, value) in corpora.sorted(by: { $0.key < $1.key }) {
            let entry = value as! [String: Any]
            let ids = readU16(try Fixtures.data(entry["ids"] as! String))
            var bytes = try gpt2.decode(ids.prefix(4_000))
            XCTAssertGreaterThan(bytes.count, 8_192, name)
            bytes.removeSubrange(8_192...)
            while let last = bytes.last, last & 0xC0 == 0x80 || last >= 0xC0 { bytes.removeLast() }  // whole characters
            let text = String(decoding: bytes, as: UTF8.self)
            let expected = gpt2.encode(text)
            if let mismatch = firstMismatch(builtIn.encode(text), expected) { XCTFail("\(name): \(mismatch)") }
            // Away from the cut the ids are the committed (tiktoken) ones.
            XCTAssertEqual(Array(expected.prefix(1_000)), Array(ids.prefix(1_000)), name)
        }
    }

    /// Times building from the embedded data against loading the two files (printed; the
    /// assertion is only a loose sanity bound).
    func testBuildTime() throws {
        func best(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
            var best = Double.infinity
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            return best
        }
        let builtIn = try best(5) { _ = try GPT2Tokenizer.gpt2() }
        let files = try best(5) { _ = try GPT2Tokenizer.load(encoderJSON: Fixtures.vocabJSON.path, vocabBPE: Fixtures.mergesTXT.path) }
        print(String(format: "GPT2Tokenizer.gpt2(): %.1f ms; load(encoderJSON:vocabBPE:): %.1f ms (best of 5)", builtIn, files))
        XCTAssertLessThan(builtIn, max(4 * files, 200))
    }
}
