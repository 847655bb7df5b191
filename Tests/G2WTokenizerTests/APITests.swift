import Foundation
import G2WTokenizer
import XCTest

/// The 256 single-byte tokens in byte order.
private func byteTokens() -> [String] { (0..<256).map { ByteLevel.string(forBytes: [UInt8($0)]) } }

private let temporaryDirectory = FileManager.default.temporaryDirectory
    .appendingPathComponent("g2w-tokenizer-tests-\(ProcessInfo.processInfo.processIdentifier)")

/// The path a file named `name` gets from `temporaryFile` (messages name the path as given).
private func tmp(_ name: String) -> String { temporaryDirectory.appendingPathComponent(name).path }

private func temporaryFile(_ name: String, _ contents: String) throws -> String {
    try temporaryFile(name, Data(contents.utf8))
}

private func temporaryFile(_ name: String, _ contents: Data) throws -> String {
    try FileManager.default.createDirectory(at: temporaryDirectory, withIntermediateDirectories: true)
    let url = temporaryDirectory.appendingPathComponent(name)
    try contents.write(to: url)
    return url.path
}

private func expectError(_ expected: TokenizerError, file: StaticString = #filePath, line: UInt = #line,
                         _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected \(expected)", file: file, line: line)
    } catch let error as TokenizerError {
        XCTAssertEqual(error, expected, file: file, line: line)
        XCTAssertFalse(error.description.isEmpty)
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

final class VocabularyTests: XCTestCase {
    override class func tearDown() {
        try? FileManager.default.removeItem(at: temporaryDirectory)
        super.tearDown()
    }

    func testAccessors() throws {
        XCTAssertEqual(gpt2.vocabularySize, 50257)
        XCTAssertEqual(gpt2.endOfTextID, 50256)
        XCTAssertEqual(gpt2.specialTokens, ["<|endoftext|>": 50256])
        XCTAssertEqual(gpt2.vocabularyInIDOrder.count, 50257)
        XCTAssertEqual(gpt2.vocabularyInIDOrder[262], "Ġthe")
        XCTAssertEqual(gpt2.mergeStrings.count, 50000)
        XCTAssertEqual(gpt2.mergeStrings[0], "Ġ t")
        XCTAssertEqual(gpt2.tokenString(262), "Ġthe")
        XCTAssertNil(gpt2.tokenString(50257))
        XCTAssertEqual(gpt2.id(forToken: "Ġthe"), 262)
        XCTAssertNil(gpt2.id(forToken: "no such token"))
        XCTAssertEqual(try gpt2.tokenBytes(262), Array(" the".utf8))
        XCTAssertEqual(ByteLevel.string(forBytes: [0x20, 0x0A, 0x41]), "ĠĊA")
        XCTAssertEqual(ByteLevel.bytes(forString: "ĠĊA"), [0x20, 0x0A, 0x41])
        XCTAssertNil(ByteLevel.bytes(forString: " "))
    }

    /// Rebuilding from the exported arrays (what a .g2w file stores) gives the same tokenizer.
    func testRebuildFromArrays() throws {
        let rebuilt = try GPT2Tokenizer(vocabulary: gpt2.vocabularyInIDOrder, merges: gpt2.mergeStrings)
        let text = "Rebuilt from arrays: it's 2024, 東京 🚀\n\n  done"
        XCTAssertEqual(rebuilt.encode(text), gpt2.encode(text))
        XCTAssertEqual(rebuilt.endOfTextID, 50256)
    }

    /// The UTF-8 buffer initializer (how GPT2Model builds the tokenizer embedded in a .g2w file)
    /// gives the same tokenizer, and rejects bad bounds and invalid UTF-8 with an error.
    func testRebuildFromUTF8Buffers() throws {
        func packed(_ strings: [String]) -> ([UInt8], [Int]) {
            var bytes: [UInt8] = [], ends: [Int] = []
            for s in strings { bytes += Array(s.utf8); ends.append(bytes.count) }
            return (bytes, ends)
        }
        let (v, ve) = packed(gpt2.vocabularyInIDOrder), (m, me) = packed(gpt2.mergeStrings)
        let rebuilt = try GPT2Tokenizer(vocabularyUTF8: v, vocabularyEnds: ve, mergesUTF8: m, mergesEnds: me)
        let text = "Rebuilt from buffers: it's 2024, 東京 🚀\n\n  done"
        XCTAssertEqual(rebuilt.encode(text), gpt2.encode(text))
        XCTAssertEqual(rebuilt.vocabularyInIDOrder, gpt2.vocabularyInIDOrder)
        XCTAssertEqual(rebuilt.mergeStrings, gpt2.mergeStrings)

        let bytes = byteTokens()
        let (bv, bve) = packed(bytes + ["ab"])
        XCTAssertNoThrow(try GPT2Tokenizer(vocabularyUTF8: bv, vocabularyEnds: bve, mergesUTF8: Array("a b".utf8), mergesEnds: [3]))
        // "Ġ" (C4 A0) cut in two: entry 256 ends inside it, 257 starts with a continuation byte.
        let (cv, cve) = packed(bytes + ["Ġ"])
        expectError(.invalidVocabulary(source: "vocabulary", reason: "entry 257 is not valid UTF-8")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: cv, vocabularyEnds: cve.dropLast() + [cve.last! - 1, cve.last!], mergesUTF8: [], mergesEnds: [])
        }
        // A truncated sequence at the very end, and bytes that are never valid UTF-8.
        expectError(.invalidVocabulary(source: "vocabulary", reason: "entry 256 is not valid UTF-8")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: cv.dropLast(), vocabularyEnds: cve.dropLast() + [cve.last! - 1], mergesUTF8: [], mergesEnds: [])
        }
        expectError(.malformedMerge(location: "merges[1]", text: "", reason: "is not valid UTF-8")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: bv, vocabularyEnds: bve, mergesUTF8: Array("a b".utf8) + [0xFF, 0x20, 0x61], mergesEnds: [3, 6])
        }
        expectError(.invalidVocabulary(source: "vocabulary", reason: "entry 1 ends at 0, outside 1...2")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: [0x61, 0x62], vocabularyEnds: [1, 0], mergesUTF8: [], mergesEnds: [])
        }
        expectError(.invalidVocabulary(source: "vocabulary", reason: "entry 0 ends at 3, outside 0...2")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: [0x61, 0x62], vocabularyEnds: [3], mergesUTF8: [], mergesEnds: [])
        }
        // With a bad token and a bad merge line, the token is reported; with good tokens, the merge.
        expectError(.emptyToken(id: 257)) {
            _ = try GPT2Tokenizer(vocabularyUTF8: bv, vocabularyEnds: bve + [bve.last!], mergesUTF8: Array("a b".utf8) + Array("ab".utf8), mergesEnds: [3, 5])
        }
        expectError(.malformedMerge(location: "merges[1]", text: "ab", reason: "no space between the two tokens")) {
            _ = try GPT2Tokenizer(vocabularyUTF8: bv, vocabularyEnds: bve, mergesUTF8: Array("a b".utf8) + Array("ab".utf8), mergesEnds: [3, 5])
        }
    }

    /// Inputs that crashed tools/fuzz's fuzz-tokenizer-files target (mode 2: vocabulary lines NUL
    /// merge lines, given raw to the UTF-8 initializer) now throw TokenizerError.
    func testFuzzRegressions() throws {
        let dir = Fixtures.root.appendingPathComponent("fuzz-regressions/fuzz-tokenizer-files")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertFalse(names.isEmpty)
        for name in names {
            let input = try [UInt8](Data(contentsOf: dir.appendingPathComponent(name))).dropFirst()
            let nul = input.firstIndex(of: 0) ?? input.endIndex
            func raw(_ b: ArraySlice<UInt8>) -> ([UInt8], [Int]) {
                var bytes: [UInt8] = [], ends: [Int] = []
                if !b.isEmpty { for line in b.split(separator: 0x0A, omittingEmptySubsequences: false) { bytes += line; ends.append(bytes.count) } }
                return (bytes, ends)
            }
            let (v, ve) = raw(input[..<nul]), (m, me) = raw(nul < input.endIndex ? input[(nul + 1)...] : [])
            XCTAssertThrowsError(try GPT2Tokenizer(vocabularyUTF8: v, vocabularyEnds: ve, mergesUTF8: m, mergesEnds: me), name) {
                XCTAssertTrue($0 is TokenizerError, "\(name): \($0)")
            }
        }
    }

    /// Hugging Face tokenizer.json, with merges as "a b" strings and as ["a", "b"] pairs.
    func testLoadTokenizerJSON() throws {
        let vocab = try String(contentsOf: Fixtures.vocabJSON, encoding: .utf8)
        let merges = gpt2.mergeStrings
        func json(_ mergesJSON: String) -> String {
            """
            {"version": "1.0", "truncation": null, "padding": null,
             "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": true, "special": true}],
             "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
             "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                       "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                       "vocab": \(vocab), "merges": \(mergesJSON)}}
            """
        }
        func escape(_ s: String) -> String {
            let data = try! JSONSerialization.data(withJSONObject: [s], options: [])
            return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
        }
        let strings = "[" + merges.map(escape).joined(separator: ",") + "]"
        let pairs = "[" + merges.map { m -> String in
            let parts = m.split(separator: " ").map(String.init)
            return "[\(escape(parts[0])),\(escape(parts[1]))]"
        }.joined(separator: ",") + "]"
        let text = "tokenizer.json: it's <|endoftext|> 👋🏽 ok"
        for (label, mergesJSON) in [("strings", strings), ("pairs", pairs)] {
            let url = try temporaryFile("tokenizer-\(label).json", json(mergesJSON))
            let t = try GPT2Tokenizer.load(tokenizerJSON: url)
            XCTAssertEqual(t.vocabularySize, 50257, label)
            XCTAssertEqual(t.mergeStrings, merges, label)
            XCTAssertEqual(t.vocabularyInIDOrder, gpt2.vocabularyInIDOrder, label)
            XCTAssertEqual(t.encode(text), gpt2.encode(text), label)
            XCTAssertEqual(t.encode(text, allowSpecialTokens: true), gpt2.encode(text, allowSpecialTokens: true), label)
        }
    }

    func testLoadErrorsFromFiles() throws {
        let merges = try temporaryFile("ok.bpe", "#version: 0.2\n")
        let vocabObject = "{" + byteTokens().enumerated().map { "\"\(escapeJSON($0.element))\": \($0.offset)" }.joined(separator: ", ")

        let badJSON = try temporaryFile("bad.json", "{\n  \"a\": 1,\n}")
        expectError(.invalidJSON(source: badJSON, line: 3, column: 1, reason: "unexpected character '}', expected a string key")) {
            _ = try GPT2Tokenizer.load(encoderJSON: badJSON, vocabBPE: merges)
        }
        let gap = try temporaryFile("gap.json", vocabObject + ", \"ab\": 300}")
        expectError(.invalidVocabulary(source: gap, reason: "line 1, column \(vocabObject.utf8.count + 3): token \"ab\" has id 300, outside 0..<257 (ids must be 0...count-1 without gaps)")) {
            _ = try GPT2Tokenizer.load(encoderJSON: gap, vocabBPE: merges)
        }
        let notInt = try temporaryFile("float.json", vocabObject + ", \"ab\": 1.5}")
        XCTAssertThrowsError(try GPT2Tokenizer.load(encoderJSON: notInt, vocabBPE: merges)) { error in
            XCTAssertTrue("\(error)".contains("has a number as id, expected an integer"), "\(error)")
        }
        let dupKey = try temporaryFile("dup.json", vocabObject + ", \"ab\": 256, \"ab\": 257}")
        expectError(.duplicateToken(token: "ab", firstID: 256, secondID: 257)) {
            _ = try GPT2Tokenizer.load(encoderJSON: dupKey, vocabBPE: merges)
        }
        let good = try temporaryFile("good.json", vocabObject + ", \"ab\": 256}")
        let badMerges = try temporaryFile("bad.bpe", "#version: 0.2\na b\nab\n")
        expectError(.malformedMerge(location: "\(badMerges) line 3", text: "ab", reason: "no space between the two tokens")) {
            _ = try GPT2Tokenizer.load(encoderJSON: good, vocabBPE: badMerges)
        }
        let unknown = try temporaryFile("unknown.bpe", "#version: 0.2\na b\nab zz\n")
        expectError(.unknownMergeToken(location: "\(unknown) line 3", merge: "ab zz", token: "zz")) {
            _ = try GPT2Tokenizer.load(encoderJSON: good, vocabBPE: unknown)
        }
        let t = try GPT2Tokenizer.load(encoderJSON: good, vocabBPE: try temporaryFile("one.bpe", "#version: 0.2\na b\n"))
        XCTAssertEqual(t.encode("abab xab"), [256, 256, 0x20, 0x78, 256])  // byte tokens have id = byte here
        let missing = "/nonexistent/encoder.json"
        XCTAssertThrowsError(try GPT2Tokenizer.load(encoderJSON: missing, vocabBPE: merges)) { error in
            guard case TokenizerError.unreadableFile(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/encoder.json")
        }
        let notObject = try temporaryFile("array.json", "[1, 2]")
        XCTAssertThrowsError(try GPT2Tokenizer.load(encoderJSON: notObject, vocabBPE: merges))
        let truncated = try temporaryFile("trunc.json", "{\"a\": \"b")
        XCTAssertThrowsError(try GPT2Tokenizer.load(encoderJSON: truncated, vocabBPE: merges)) { error in
            XCTAssertTrue("\(error)".contains("unterminated string"), "\(error)")
        }
        let noModel = try temporaryFile("nomodel.json", "{\"version\": \"1.0\"}")
        expectError(.invalidVocabulary(source: noModel, reason: "missing \"model\" object")) {
            _ = try GPT2Tokenizer.load(tokenizerJSON: noModel)
        }
    }

    func testMergesFileVariants() throws {
        let vocabObject = "{" + byteTokens().enumerated().map { "\"\(escapeJSON($0.element))\": \($0.offset)" }.joined(separator: ", ")
        let vocab = try temporaryFile("v.json", vocabObject + ", \"ab\": 256, \"abc\": 257}")
        // CRLF line ends, no #version header, trailing blank lines: accepted.
        let crlf = try temporaryFile("crlf.bpe", "a b\r\nab c\r\n\r\n\n")
        let t = try GPT2Tokenizer.load(encoderJSON: vocab, vocabBPE: crlf)
        XCTAssertEqual(t.mergeStrings, ["a b", "ab c"])
        XCTAssertEqual(t.encode("abc"), [257])
        let blank = try temporaryFile("blank.bpe", "#version: 0.2\na b\n\nab c\n")
        expectError(.malformedMerge(location: tmp("blank.bpe") + " line 3", text: "", reason: "empty line")) {
            _ = try GPT2Tokenizer.load(encoderJSON: vocab, vocabBPE: blank)
        }
        let badUTF8 = try temporaryFile("bad-utf8.bpe", Data([0x61, 0x20, 0x62, 0x0A, 0x61, 0x62, 0xFF, 0x20, 0x63, 0x0A]))
        expectError(.invalidVocabulary(source: tmp("bad-utf8.bpe"), reason: "line 2, column 3: invalid UTF-8")) {
            _ = try GPT2Tokenizer.load(encoderJSON: vocab, vocabBPE: badUTF8)
        }
        let surrogate = try temporaryFile("surrogate.json", "{\"\\ud800\": 0}")
        expectError(.invalidJSON(source: tmp("surrogate.json"), line: 1, column: 3, reason: "lone surrogate \\uD800 in a string")) {
            _ = try GPT2Tokenizer.load(encoderJSON: surrogate, vocabBPE: crlf)
        }
    }

    func testTokenizerJSONErrors() throws {
        let vocabObject = "{" + byteTokens().enumerated().map { "\"\(escapeJSON($0.element))\": \($0.offset)" }.joined(separator: ", ") + "}"
        func load(_ name: String, _ json: String) throws -> GPT2Tokenizer {
            try GPT2Tokenizer.load(tokenizerJSON: try temporaryFile(name, json))
        }
        let ok = try load("ok.json", "{\"added_tokens\": [{\"id\": 256, \"content\": \"<|endoftext|>\"}], \"model\": {\"type\": \"BPE\", \"vocab\": \(vocabObject), \"merges\": []}}")
        XCTAssertEqual(ok.endOfTextID, 256)
        XCTAssertEqual(ok.vocabularySize, 256 + 1)
        expectError(.mergeResultNotInVocabulary(location: tmp("bad-merge.json") + " model.merges[0]", merge: "a b", result: "ab")) {
            _ = try load("bad-merge.json", "{\"model\": {\"vocab\": \(vocabObject), \"merges\": [\"a b\"]}}")
        }
        expectError(.invalidVocabulary(source: tmp("conflict.json"), reason: "added token \"<|x|>\" has id 36, which model.vocab gives to \"$\"")) {
            _ = try load("conflict.json", "{\"added_tokens\": [{\"id\": 36, \"content\": \"<|x|>\"}], \"model\": {\"vocab\": \(vocabObject), \"merges\": []}}")
        }
        expectError(.invalidVocabulary(source: tmp("type.json"), reason: "model.type is not \"BPE\"")) {
            _ = try load("type.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": \(vocabObject), \"merges\": []}}")
        }
        expectError(.invalidVocabulary(source: tmp("pair.json"), reason: "model.merges[0] is not a string pair [\"left\", \"right\"]")) {
            _ = try load("pair.json", "{\"model\": {\"vocab\": \(vocabObject), \"merges\": [[\"a\"]]}}")
        }
    }

    func testArrayBuildErrors() {
        let bytes = byteTokens()
        expectError(.duplicateToken(token: "a", firstID: bytes.firstIndex(of: "a")!, secondID: 256)) {
            _ = try GPT2Tokenizer(vocabulary: bytes + ["a"], merges: [])
        }
        expectError(.missingByteToken(byte: 0x20, token: "Ġ")) {
            _ = try GPT2Tokenizer(vocabulary: bytes.filter { $0 != "Ġ" }, merges: [])
        }
        expectError(.invalidTokenCharacter(id: 256, token: "a b", scalar: 0x20)) {
            _ = try GPT2Tokenizer(vocabulary: bytes + ["a b"], merges: [])
        }
        expectError(.emptyToken(id: 256)) {
            _ = try GPT2Tokenizer(vocabulary: bytes + [""], merges: [])
        }
        let vocab = bytes + ["ab", "abc"]
        expectError(.malformedMerge(location: "merges[1]", text: "ab", reason: "no space between the two tokens")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a b", "ab"])
        }
        expectError(.malformedMerge(location: "merges[0]", text: "a b c", reason: "more than one space")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a b c"])
        }
        expectError(.malformedMerge(location: "merges[0]", text: "a ", reason: "empty token")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a "])
        }
        expectError(.unknownMergeToken(location: "merges[1]", merge: "ab cd", token: "cd")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a b", "ab cd"])
        }
        expectError(.mergeResultNotInVocabulary(location: "merges[1]", merge: "b c", result: "bc")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a b", "b c"])
        }
        expectError(.duplicateMerge(location: "merges[1]", merge: "a b", result: "ab", firstLocation: "merges[0]")) {
            _ = try GPT2Tokenizer(vocabulary: vocab, merges: ["a b", "a b"])
        }
        XCTAssertNoThrow(try GPT2Tokenizer(vocabulary: vocab, merges: ["a b", "ab c"]))
    }

    func testSmallVocabularyMergeOrder() throws {
        // "abc" via "b c" (rank 0) then "a bc" (rank 2); "ab" (rank 1) never forms in "abc".
        let vocab = byteTokens() + ["bc", "ab", "abc"]
        let t = try GPT2Tokenizer(vocabulary: vocab, merges: ["b c", "a b", "a bc"])
        XCTAssertEqual(t.encode("abc"), [258])
        XCTAssertEqual(t.encode("abab"), [257, 257])
        XCTAssertEqual(t.encode("ab" + String(repeating: "bc", count: 40)), [257] + Array(repeating: 256, count: 40))
        XCTAssertEqual(t.specialTokens, [:])
        XCTAssertNil(t.endOfTextID)
    }

    /// A merge that creates a pair of *lower* rank must be applied before the remaining pairs of
    /// the current rank. Checked at lengths that take each of the three merge paths (short scan,
    /// heap, rank buckets).
    func testLowerRankPairCreatedByMerge() throws {
        // rank 0: "cd c" -> "cdc" (id 257); rank 1: "c d" -> "cd" (id 256).
        // "cdcd": c d c d -> cd c d (rank 1 at 0) -> cdc d (rank 0 appears and goes first);
        // finishing rank 1 first would give cd cd instead.
        let t = try GPT2Tokenizer(vocabulary: byteTokens() + ["cd", "cdc"], merges: ["cd c", "c d"])
        for repeats in [1, 2, 30, 300, 3000] {
            let text = String(repeating: "cdcd", count: repeats)
            if let mismatch = firstMismatch(t.encode(text), [257, Int(UInt8(ascii: "d"))].repeated(repeats), tokenizer: t) {
                XCTFail("\(repeats) repeats: \(mismatch)")
            }
        }
    }
}

final class DecodingTests: XCTestCase {
    func testOutOfRangeIDsThrow() {
        for bad in [-1, 50257, Int.max, Int.min] {
            expectError(.tokenIDOutOfRange(id: bad, vocabularySize: 50257)) { _ = try gpt2.decode([15496, bad]) }
            expectError(.tokenIDOutOfRange(id: bad, vocabularySize: 50257)) { _ = try gpt2.decodeText([bad]) }
            expectError(.tokenIDOutOfRange(id: bad, vocabularySize: 50257)) { _ = try gpt2.tokenBytes(bad) }
            var stream = gpt2.makeStreamingDecoder()
            expectError(.tokenIDOutOfRange(id: bad, vocabularySize: 50257)) { _ = try stream.append(bad) }
        }
        XCTAssertEqual(try gpt2.decodeText([50256]), "<|endoftext|>")
    }

    func testDecodeKeepsPartialBytes() throws {
        let ids = gpt2.encode("🚀")
        XCTAssertGreaterThan(ids.count, 1)
        XCTAssertEqual(try gpt2.decode(ids), Array("🚀".utf8))
        XCTAssertEqual(try gpt2.decodeText(Array(ids.dropLast())), String(decoding: try gpt2.decode(Array(ids.dropLast())), as: UTF8.self))
    }

    func testStreamingHoldsSplitCharacters() throws {
        let text = "A rocket 🚀, a family 👨‍👩‍👧‍👦, waving 👋🏽, flags 🇯🇵🇫🇷, 東京 and Ελλάδα, done."
        let ids = gpt2.encode(text)
        var stream = gpt2.makeStreamingDecoder()
        var out = ""
        var heldSomething = false
        for id in ids {
            let piece = try stream.append(id)
            XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"), "printed U+FFFD after token \(id)")
            if stream.pendingByteCount > 0 { heldSomething = true }
            out += piece
        }
        XCTAssertTrue(heldSomething, "the test text should split a character across tokens")
        out += stream.finish()
        XCTAssertEqual(out, text)
        XCTAssertEqual(stream.pendingByteCount, 0)

        // The first byte tokens of a 4-byte emoji print nothing until it completes.
        var emoji = gpt2.makeStreamingDecoder()
        let rocket = gpt2.encode("🚀")
        XCTAssertEqual(try emoji.append(rocket[0]), "")
        XCTAssertEqual(try emoji.append(contentsOf: rocket.dropFirst()), "🚀")
    }

    func testStreamingEveryEdgeCase() throws {
        for text in try EdgeCases.load().cases.map(\.text) {
            var stream = gpt2.makeStreamingDecoder()
            var out = ""
            for id in gpt2.encode(text) { out += try stream.append(id) }
            out += stream.finish()
            XCTAssertEqual(out, text)
        }
    }

    func testStreamingInvalidLeftoversBecomeReplacementOnFinish() throws {
        // Token for the single byte 0xF0 (start of a 4-byte sequence) never completed.
        let f0 = gpt2.id(forToken: ByteLevel.string(forBytes: [0xF0]))!
        var stream = gpt2.makeStreamingDecoder()
        XCTAssertEqual(try stream.append(gpt2.encode("ok ")[0]), "ok")
        XCTAssertEqual(try stream.append(gpt2.encode(" ")[0]), " ")
        XCTAssertEqual(try stream.append(f0), "")
        XCTAssertEqual(stream.pendingByteCount, 1)
        XCTAssertEqual(stream.finish(), "\u{FFFD}")
        // A stray continuation byte is invalid at once: emitted as U+FFFD, not held.
        let x80 = gpt2.id(forToken: ByteLevel.string(forBytes: [0x80]))!
        XCTAssertEqual(try stream.append(x80), "\u{FFFD}")
        // An impossible second byte (E0 80) is not held either.
        let e0 = gpt2.id(forToken: ByteLevel.string(forBytes: [0xE0]))!
        XCTAssertEqual(try stream.append(e0), "")
        XCTAssertEqual(try stream.append(x80), "\u{FFFD}\u{FFFD}")
    }
}

private extension Array {
    func repeated(_ count: Int) -> [Element] { Array(repeatElement(self, count: count).joined()) }
}

/// The content of a JSON string literal for `s` (for writing test vocabularies).
func escapeJSON(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [])
    return String(decoding: data.dropFirst(2).dropLast(2), as: UTF8.self)
}
