import Foundation
import G2WTokenizer
import XCTest

/// Tokenizer files that are wrong in ways a parser accepts: messages say what and where, and
/// never print what the file holds raw (issue 17 item 12).
final class HostileFileTests: XCTestCase {
    private static let byteTokens = (0..<256).map { ByteLevel.string(forBytes: [UInt8($0)]) }

    private func vocabJSON(_ extra: [String]) -> Data {
        let tokens = Self.byteTokens + extra
        let members = tokens.enumerated().map { id, token in "\"\(escapeJSON(token))\": \(id)" }
        return Data(("{" + members.joined(separator: ", ") + "}").utf8)
    }

    /// An empty merges.txt, or one with only its #version line, beside a vocabulary with merged
    /// tokens was accepted without a word (every text then encodes byte by byte). Now it is an
    /// error naming the file, the count and an example; a byte-level vocabulary whose only longer
    /// tokens are special tokens still needs no merges.
    func testEmptyMergesFileIsRefusedUnlessTheVocabularyNeedsNone() throws {
        let vocab = vocabJSON(["Ġthe", "he", "<|endoftext|>"])
        for merges in ["", "#version: 0.2\n", "#version: 0.2\n\n\n"] {
            XCTAssertThrowsError(try GPT2Tokenizer(encoderJSON: vocab, vocabBPE: Data(merges.utf8), encoderName: "vocab.json", mergesName: "merges.txt")) { error in
                XCTAssertEqual(error as? TokenizerError, .invalidVocabulary(
                    source: "merges.txt",
                    reason: "no merges (the file is empty or holds only its #version line), but the vocabulary has 2 multi-byte tokens that only merges can produce, such as \"Ġthe\" (id 256): the merges file is truncated or not the vocabulary's (a vocabulary of the 256 single bytes and special tokens needs none)"))
            }
        }
        // The 256 bytes and special tokens: nothing to merge, accepted.
        let bytesOnly = try GPT2Tokenizer(encoderJSON: vocabJSON(["<|endoftext|>", "[PAD]", "</s>"]), vocabBPE: Data("#version: 0.2\n".utf8))
        XCTAssertEqual(bytesOnly.vocabularySize, 259)
        XCTAssertEqual(bytesOnly.encode("hi"), [104, 105])  // here a byte's id is its value
        // With merges, unmerged extra tokens are special tokens as before.
        XCTAssertNoThrow(try GPT2Tokenizer(encoderJSON: vocabJSON(["he", "Ġthe"]), vocabBPE: Data("#version: 0.2\nh e\n".utf8)))

        // tokenizer.json: tokens declared in added_tokens are special whatever they look like.
        let vocabObject = String(decoding: vocabJSON(["PAD"]), as: UTF8.self)
        let declared = "{\"added_tokens\": [{\"id\": 256, \"content\": \"PAD\"}], \"model\": {\"type\": \"BPE\", \"vocab\": \(vocabObject), \"merges\": []}}"
        XCTAssertEqual(try GPT2Tokenizer(tokenizerJSON: Data(declared.utf8)).specialTokens, ["PAD": 256])
        let undeclared = "{\"model\": {\"type\": \"BPE\", \"vocab\": \(vocabObject), \"merges\": []}}"
        XCTAssertThrowsError(try GPT2Tokenizer(tokenizerJSON: Data(undeclared.utf8), sourceName: "t.json")) { error in
            XCTAssertTrue("\(error)".hasPrefix("t.json model.merges: no merges"), "\(error)")
            XCTAssertTrue("\(error)".contains("1 multi-byte token that only merges can produce, such as \"PAD\" (id 256)"), "\(error)")
        }
    }

    /// Tokens quoted in messages are escaped (control characters, quotes, U+202E) and cut short:
    /// a 100 KB token does not make a 100 KB message (before: printed raw and in full).
    func testTokensInMessagesAreEscapedAndShort() throws {
        let evil = "x\u{1B}[2J\u{202E}\"" + String(repeating: "y", count: 100_000)
        XCTAssertThrowsError(try GPT2Tokenizer(vocabulary: Self.byteTokens + [evil], merges: [])) { error in
            let message = "\(error)"
            XCTAssertFalse(message.unicodeScalars.contains("\u{1B}"), message)
            XCTAssertFalse(message.unicodeScalars.contains("\u{202E}"), message)
            XCTAssertTrue(message.hasPrefix("vocabulary entry 256 \"x\\u{1b}[2J\\u{202e}\\\"yyy"), message)
            XCTAssertTrue(message.hasSuffix("y... (100009 bytes)\" contains U+001B, which is not in GPT-2's byte-level alphabet"), message)
            XCTAssertLessThan(message.utf8.count, 300)
        }
        // A duplicate of a long (valid) token: the same.
        let long = String(repeating: "Ġ", count: 50_000)
        XCTAssertThrowsError(try GPT2Tokenizer(vocabulary: Self.byteTokens + [long, long], merges: [])) { error in
            XCTAssertEqual("\(error)", "token \"" + String(repeating: "Ġ", count: 100) + "... (100000 bytes)\" appears twice in the vocabulary (ids 256 and 257)")
        }
    }

    /// A FIFO or a directory given as a tokenizer file is refused at once, naming it.
    func testTokenizerFilesMustBeRegularFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("fifo.json").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (path, what) in [(fifo, "a FIFO"), (dir.path, "a directory")] {
            XCTAssertThrowsError(try GPT2Tokenizer.load(tokenizerJSON: path)) { error in
                XCTAssertEqual(error as? TokenizerError, .unreadableFile(path: path, reason: "\(what), not a regular file"))
            }
        }
    }
}
