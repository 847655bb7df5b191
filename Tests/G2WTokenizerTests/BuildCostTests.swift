import Foundation
import G2WTokenizer
import XCTest

/// Building a tokenizer costs time linear in its bytes, whatever the tokens (issue 17 item 2): a
/// hostile vocabulary of a few very long tokens must not turn a small file into minutes of CPU.
final class BuildCostTests: XCTestCase {
    private static let byteTokens = (0..<256).map { ByteLevel.string(forBytes: [UInt8($0)]) }

    /// For each letter, tokens of 2, 4, ..., `longest` letters, each the merge of two halves.
    private static func doublingVocabulary(letters: String, longest: Int) -> (vocabulary: [String], merges: [String]) {
        var vocabulary = byteTokens, merges: [String] = []
        for letter in letters {
            var k = 1
            while k < longest {
                let half = String(repeating: letter, count: k)
                merges.append(half + " " + half)
                vocabulary.append(half + half)
                k *= 2
            }
        }
        return (vocabulary, merges)
    }

    private func seconds<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let value = try body()
        return (value, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    /// Four tokens of 256 KB (and their halves, quarters, ...): 2 MB of tokens. The quadratic
    /// build hashed every prefix and suffix of every token: 40 s for these (2.5 s at 64 KB, 9.8 s
    /// at 128 KB: x4 per doubling). Now every source builds in well under a second, the work
    /// counter is a small multiple of the bytes, and encoding gives the long tokens.
    func testVeryLongTokensBuildInLinearTime() throws {
        let longest = 1 << 18
        let (vocabulary, merges) = Self.doublingVocabulary(letters: "abcd", longest: longest)
        let tokenBytes = vocabulary.reduce(0) { $0 + $1.utf8.count }
        XCTAssertEqual(vocabulary.count, 256 + 4 * 18)
        XCTAssertGreaterThan(tokenBytes, 2_000_000)

        let (fromArrays, arraySeconds) = try seconds { try GPT2Tokenizer(vocabulary: vocabulary, merges: merges) }
        // The .g2w path (`--tokens`, `g2w-run`): UTF-8 buffers as the file stores them.
        let v = vocabulary.map { Array($0.utf8) }, m = merges.map { Array($0.utf8) }
        let (fromBuffers, bufferSeconds) = try seconds {
            try GPT2Tokenizer(vocabularyUTF8: v.flatMap { $0 }, vocabularyEnds: v.map(\.count).runningSum,
                              mergesUTF8: m.flatMap { $0 }, mergesEnds: m.map(\.count).runningSum)
        }
        // g2w-convert's path: vocab.json + merges.txt.
        let json = "{" + vocabulary.enumerated().map { "\"\(escapeJSON($1))\": \($0)" }.joined(separator: ", ") + "}"
        let text = "#version: 0.2\n" + merges.joined(separator: "\n") + "\n"
        let (fromFiles, fileSeconds) = try seconds {
            try GPT2Tokenizer(encoderJSON: Data(json.utf8), vocabBPE: Data(text.utf8))
        }
        print(String(format: "%d bytes of tokens: arrays %.3f s, buffers %.3f s, files %.3f s; work %d",
                     tokenBytes, arraySeconds, bufferSeconds, fileSeconds, fromArrays.buildWork))
        for (name, t, s) in [("arrays", fromArrays, arraySeconds), ("buffers", fromBuffers, bufferSeconds), ("files", fromFiles, fileSeconds)] {
            XCTAssertLessThan(s, 2, "\(name): building took \(s) s")
            // Two passes (prefixes, suffixes) of one hash step and at most one compared byte per
            // token byte, plus the candidates looked at.
            XCTAssertLessThanOrEqual(t.buildWork, 8 * tokenBytes, name)
            XCTAssertEqual(t.vocabularySize, vocabulary.count, name)
            XCTAssertEqual(t.mergeStrings, merges, name)
        }

        // Encoding is unchanged: the longest token is one id, 1.5 of it is two.
        let a = fromArrays.id(forToken: String(repeating: "a", count: longest))!
        let aHalf = fromArrays.id(forToken: String(repeating: "a", count: longest / 2))!
        XCTAssertEqual(fromArrays.encode(String(repeating: "a", count: longest)), [a])
        XCTAssertEqual(fromArrays.encode(String(repeating: "a", count: longest + longest / 2)), [a, aHalf])
        // " ddd...d" is one pre-token: the space, then three d^(2^18); then " b": two bytes.
        let mixed = " " + String(repeating: "d", count: 3 * longest) + " b"
        let ids = fromFiles.encode(mixed)
        let space = fromFiles.id(forToken: "Ġ")!, d = fromFiles.id(forToken: String(repeating: "d", count: longest))!
        XCTAssertEqual(ids, [space, d, d, d, space, fromFiles.id(forToken: "b")!])
        XCTAssertEqual(fromBuffers.encode(mixed), ids)
        XCTAssertEqual(try fromFiles.decodeText(ids), mixed)
    }

    /// The work stays linear when tokens share long prefixes and suffixes with many others:
    /// every token of a^2 ... a^2000 is a prefix and a suffix of all the longer ones (2 MB of
    /// tokens, 2 million splits), and every split of a^k is a pair of the table.
    func testChainsOfNestedTokensStayLinear() throws {
        var vocabulary = Self.byteTokens, merges: [String] = []
        var rank: [String: Int] = [:]
        for k in 2...2000 {
            let token = String(repeating: "a", count: k)
            rank[token] = merges.count
            merges.append(String(repeating: "a", count: k - 1) + " a")
            vocabulary.append(token)
        }
        let tokenBytes = vocabulary.reduce(0) { $0 + $1.utf8.count }
        let (t, s) = try seconds { try GPT2Tokenizer(vocabulary: vocabulary, merges: merges) }
        XCTAssertLessThan(s, 2)
        XCTAssertLessThanOrEqual(t.buildWork, 8 * tokenBytes)
        for length in [1, 2, 3, 7, 64, 300] {
            let text = String(repeating: "a", count: length)
            XCTAssertEqual(t.encode(text), Self.referenceMerge(text, rank: rank).map { t.id(forToken: $0)! }, "\(length)")
        }
    }

    /// The pair table lists every split of a merge result into two mergeable tokens, not only the
    /// listed pair: on random small vocabularies over three letters, encoding agrees with a
    /// direct implementation of tiktoken's rule (merge the adjacent pair whose concatenation is
    /// the mergeable token of lowest rank, leftmost first).
    func testRandomVocabulariesMatchTheReferenceMerge() throws {
        var rng = SplitMix64(state: 12345)
        for round in 0..<40 {
            var tokens = Self.byteTokens
            var merges: [String] = []
            var mergeable = ["a", "b", "c"]
            var rank: [String: Int] = [:]
            while merges.count < 60 {
                let left = mergeable[Int(rng.next() % UInt64(mergeable.count))]
                let right = mergeable[Int(rng.next() % UInt64(mergeable.count))]
                let result = left + right
                guard rank[result] == nil, result.count <= 12 else { continue }
                rank[result] = merges.count
                merges.append(left + " " + right)
                tokens.append(result)
                mergeable.append(result)
            }
            let t = try GPT2Tokenizer(vocabulary: tokens, merges: merges)
            for _ in 0..<30 {
                let length = 1 + Int(rng.next() % 80)
                let text = String((0..<length).map { _ in "abc".randomElement(using: &rng)! })
                let expected = Self.referenceMerge(text, rank: rank).map { t.id(forToken: $0)! }
                XCTAssertEqual(t.encode(text), expected, "round \(round): \(text)")
            }
        }
    }

    /// The byte-string hash of the token table mixes each 8-byte word with invertible steps; with
    /// its former fixed seed, anyone could compute 100,000 16-byte tokens of one hash (below), and
    /// the table took quadratic time to fill: 2.6 s CPU for 50,000 such tokens (a 4 MB
    /// vocab.json), 10 s for these 100,000. With a random seed per table they spread out.
    func testTokensCraftedToCollideDoNotSlowTheBuild() throws {
        func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
            let x = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
            return x ^ (x >> 29)
        }
        let formerSeed: UInt64 = 0x243F_6A88_85A3_08D3
        let h0 = formerSeed ^ (16 &* 0x9E37_79B9_7F4A_7C15)
        var vocabulary = Self.byteTokens
        for i in 0..<100_000 {
            // Any first word; the second brings the state to the same value for every token.
            let w0 = UInt64(i) &* 0x1_0000_01B3 &+ 0xAB_CDEF
            let w1 = mix(h0, w0) ^ 0x1234_5678_90AB_CDEF
            let raw = withUnsafeBytes(of: w0.littleEndian) { Array($0) } + withUnsafeBytes(of: w1.littleEndian) { Array($0) }
            vocabulary.append(ByteLevel.string(forBytes: raw))
        }
        let (t, s) = try seconds { try GPT2Tokenizer(vocabulary: vocabulary, merges: []) }
        print(String(format: "100,000 crafted tokens: %.3f s", s))
        XCTAssertLessThan(s, 2)
        XCTAssertEqual(t.specialTokens.count, 100_000)
        XCTAssertEqual(t.id(forToken: vocabulary[300]), 300)
        XCTAssertEqual(t.id(forToken: vocabulary.last!), vocabulary.count - 1)
    }

    /// tiktoken's `_byte_pair_merge` on one pre-token, with strings.
    private static func referenceMerge(_ text: String, rank: [String: Int]) -> [String] {
        var parts = text.map { String($0) }
        while parts.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(parts.count - 1) {
                if let r = rank[parts[i] + parts[i + 1]], best == nil || r < best!.rank { best = (r, i) }
            }
            guard let b = best else { break }
            parts[b.index] += parts[b.index + 1]
            parts.remove(at: b.index + 1)
        }
        return parts
    }
}

extension SplitMix64: RandomNumberGenerator {}

private extension Array where Element == Int {
    var runningSum: [Int] {
        var total = 0
        return map { total += $0; return total }
    }
}
