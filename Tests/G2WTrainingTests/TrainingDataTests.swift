import Foundation
import G2WTokenizer
import G2WTraining
import XCTest

/// Training data: text loading and the validation split, llm.c token files, windows, the batcher,
/// validation batches, the learning-rate schedule. Expected values marked "Python" were computed
/// with python3 (slicing, `range`, `bytes.decode`, nanoGPT's `get_lr`).
final class TrainingDataTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-training-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    private func assertThrows<T>(_ expected: TrainingDataError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? TrainingDataError, expected, file: file, line: line)
        }
    }

    /// `[i for i in range(0, n - N, S)]`.
    private func pythonStarts(_ n: Int, _ N: Int, _ S: Int) -> [Int] {
        var out: [Int] = []
        var i = 0
        while i < n - N { out.append(i); i += S }
        return out
    }

    // MARK: Windows

    func testWindowStartsAgainstPython() throws {
        // (len, N, S) -> starts, from Python.
        let cases: [(Int, Int, Int, [Int])] = [
            (5, 4, 4, [0]), (6, 4, 4, [0]), (8, 4, 4, [0]), (9, 4, 4, [0, 4]), (12, 4, 4, [0, 4]), (13, 4, 4, [0, 4, 8]),
            (10, 3, 2, [0, 2, 4, 6]), (11, 3, 2, [0, 2, 4, 6]), (10, 4, 3, [0, 3]), (20, 5, 1, Array(0...14)),
        ]
        for (n, N, S, starts) in cases {
            let w = try TokenWindows(tokens: Array(0..<n), context: N, stride: S, vocabularySize: 100)
            XCTAssertEqual(w.count, starts.count, "len \(n), N \(N), S \(S)")
            XCTAssertEqual((0..<w.count).map { w.start(ofWindow: $0) }, starts)
        }
        // Exhaustively against the formula, contents included.
        for n in 0...30 {
            for N in 1...6 {
                for S in [nil, 1, 2, 3, 5, 7] {
                    let tokens = (0..<n).map { Int32($0 * 7 % 50) }
                    let starts = pythonStarts(n, N, S ?? N)
                    XCTAssertEqual(TokenWindows.count(tokenCount: n, context: N, stride: S ?? N), starts.count)
                    guard !starts.isEmpty else {
                        assertThrows(.tooFewTokens(source: "the token sequence", count: n, needed: N + 1)) {
                            try TokenWindows(tokens: tokens, context: N, stride: S, vocabularySize: 50)
                        }
                        continue
                    }
                    let w = try TokenWindows(tokens: tokens, context: N, stride: S, vocabularySize: 50)
                    XCTAssertEqual(w.count, starts.count)
                    for (k, i) in starts.enumerated() {
                        XCTAssertEqual(Array(w.window(k).inputs), Array(tokens[i ..< i + N]))
                        XCTAssertEqual(Array(w.window(k).targets), Array(tokens[i + 1 ..< i + N + 1]))
                    }
                }
            }
        }
    }

    func testWindowsAtTheEdges() throws {
        // len == N + 1: one window, all tokens.
        let one = try TokenWindows(tokens: [1, 2, 3, 4, 5], context: 4, vocabularySize: 10)
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(Array(one.window(0).inputs), [1, 2, 3, 4])
        XCTAssertEqual(Array(one.window(0).targets), [2, 3, 4, 5])
        // len == N + 2: still one window with S = N (range(0, 2, 4) = [0]), two with S = 1.
        XCTAssertEqual(try TokenWindows(tokens: Array(0..<6), context: 4, vocabularySize: 10).count, 1)
        XCTAssertEqual(try TokenWindows(tokens: Array(0..<6), context: 4, stride: 1, vocabularySize: 10).count, 2)
        // An exact multiple, len == 3N: range(0, 2N, N) = [0, N], the last N tokens only as targets' tail.
        let multiple = try TokenWindows(tokens: Array(0..<12), context: 4, vocabularySize: 20)
        XCTAssertEqual(multiple.count, 2)
        XCTAssertEqual(Array(multiple.window(1).targets), [5, 6, 7, 8])
        // len == N: no window; the error says how many there are and how many are needed.
        assertThrows(.tooFewTokens(source: "val", count: 4, needed: 5)) {
            try TokenWindows(tokens: [1, 2, 3, 4], context: 4, vocabularySize: 10, source: "val")
        }
        XCTAssertEqual(TrainingDataError.tooFewTokens(source: "val", count: 4, needed: 5).description,
                       "val: 4 tokens; one window needs 5 (the context plus one target)")
        assertThrows(.invalidParameter("the context is 0 tokens; it must be at least 1")) {
            try TokenWindows(tokens: [1, 2], context: 0, vocabularySize: 10)
        }
        assertThrows(.invalidParameter("the window stride is 0; it must be at least 1")) {
            try TokenWindows(tokens: [1, 2, 3], context: 1, stride: 0, vocabularySize: 10)
        }
        assertThrows(.tokenOutOfRange(source: "t", index: 2, id: 10, vocabularySize: 10)) {
            try TokenWindows(tokens: [1, 2, 10, 3], context: 1, vocabularySize: 10, source: "t")
        }
        assertThrows(.tokenOutOfRange(source: "t", index: 1, id: -1, vocabularySize: 10)) {
            try TokenWindows(tokens: [Int32(1), -1, 3], context: 1, vocabularySize: 10, source: "t")
        }
    }

    // MARK: Batcher

    /// Windows of N = 2 over 0, 1, 2, ... (stride 2), so window k's first input is 2k.
    private func numbered(_ windows: Int, context: Int = 2) throws -> TokenWindows {
        try TokenWindows(tokens: Array(0 ..< windows * context + 1), context: context, vocabularySize: 1 << 20)
    }

    private func windowIndices(_ batch: TokenBatch, context: Int = 2) -> [Int] {
        stride(from: 0, to: batch.inputs.count, by: context).map { Int(batch.inputs[$0]) / context }
    }

    func testShuffleFollowsTheDocumentedAlgorithm() throws {
        let w = try numbered(23)
        var batcher = try TrainingBatcher(windows: w, batchSize: 4, seed: 1234)
        var rng = SplitMix64(seed: 1234)
        for epoch in 0..<3 {
            var order = Array(0..<23)
            for i in stride(from: 22, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
            XCTAssertEqual(batcher.epoch, epoch)
            XCTAssertEqual(batcher.order, order)
            var seen: [Int] = []
            for j in 0..<batcher.batchesPerEpoch {
                let batch = batcher.nextBatch()
                XCTAssertEqual(batch.inputs.count, 8)
                XCTAssertEqual(batch.targets, batch.inputs.map { $0 + 1 })
                XCTAssertEqual(windowIndices(batch), Array(order[4 * j ..< 4 * j + 4]))
                seen += windowIndices(batch)
            }
            XCTAssertEqual(seen, Array(order[0..<20]), "the last 23 % 4 windows of the order are dropped")
            XCTAssertEqual(Set(order), Set(0..<23), "every window once per epoch")
        }
    }

    func testShuffleReproducibility() throws {
        let w = try numbered(40)
        func run(seed: UInt64) throws -> [[Int32]] {
            var b = try TrainingBatcher(windows: w, batchSize: 5, seed: seed)
            return (0..<24).map { _ in b.nextBatch().inputs }  // three epochs
        }
        XCTAssertEqual(try run(seed: 7), try run(seed: 7))
        XCTAssertNotEqual(try run(seed: 7), try run(seed: 8))
        // Every window exactly once per epoch (40 = 8 x 5, nothing dropped), different orders in different epochs.
        let batches = try run(seed: 7)
        var epochs: [[Int]] = []
        for e in 0..<3 {
            let indices = batches[8 * e ..< 8 * e + 8].flatMap { windowIndices(($0, [])) }
            XCTAssertEqual(indices.sorted(), Array(0..<40))
            epochs.append(indices)
        }
        XCTAssertNotEqual(epochs[0], epochs[1])
        XCTAssertNotEqual(epochs[0], Array(0..<40))
    }

    func testInOrderWithoutShuffle() throws {
        var b = try TrainingBatcher(windows: try numbered(7), batchSize: 3, shuffle: false)
        XCTAssertEqual(b.batchesPerEpoch, 2)
        XCTAssertEqual(b.tokensPerBatch, 6)
        var got: [[Int]] = []
        for _ in 0..<5 { got.append(windowIndices(b.nextBatch())) }
        // Window 6 (the incomplete third batch) is dropped every epoch.
        XCTAssertEqual(got, [[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5], [0, 1, 2]])
        XCTAssertEqual(b.epoch, 2)
        XCTAssertEqual(b.batchInEpoch, 1)
    }

    func testEpochCounting() throws {
        var b = try TrainingBatcher(windows: try numbered(10), batchSize: 3, seed: 3)
        XCTAssertEqual(b.batchesPerEpoch, 3)
        XCTAssertEqual(b.tokensPerBatch, 6)
        for step in 0..<10 {
            XCTAssertEqual(b.epoch, step / 3)
            XCTAssertEqual(b.batchInEpoch, step % 3)
            _ = b.nextBatch()
        }
    }

    func testResumeGivesTheSameBatches() throws {
        let w = try numbered(11, context: 3)
        for shuffle in [true, false] {
            var original = try TrainingBatcher(windows: w, batchSize: 3, shuffle: shuffle, seed: 99)
            XCTAssertEqual(original.batchesPerEpoch, 3)
            var states: [TrainingBatcher.State] = []
            var batches: [TokenBatch] = []
            for _ in 0..<14 {
                states.append(original.state)
                batches.append(original.nextBatch())
            }
            // From every captured position (mid-epoch, at a boundary), through the following epoch boundaries.
            for (k, state) in states.enumerated() {
                let json = try JSONEncoder().encode(state)
                let decoded = try JSONDecoder().decode(TrainingBatcher.State.self, from: json)
                XCTAssertEqual(decoded, state)
                var resumed = try TrainingBatcher(windows: w, restoring: decoded)
                XCTAssertEqual(resumed.epoch, state.epoch)
                for j in k..<batches.count {
                    let b = resumed.nextBatch()
                    XCTAssertEqual(b.inputs, batches[j].inputs, "shuffle \(shuffle), resumed at \(k), batch \(j)")
                    XCTAssertEqual(b.targets, batches[j].targets)
                }
                XCTAssertEqual(resumed.state, original.state)
            }
        }
    }

    func testBatcherErrors() throws {
        let w = try numbered(5)
        assertThrows(.fewerWindowsThanBatch(source: "the token sequence", windows: 5, batchSize: 6)) {
            try TrainingBatcher(windows: w, batchSize: 6)
        }
        assertThrows(.invalidParameter("the batch size is 0; it must be at least 1")) { try TrainingBatcher(windows: w, batchSize: 0) }
        let exact = try TrainingBatcher(windows: w, batchSize: 5)
        XCTAssertEqual(exact.batchesPerEpoch, 1)
        var state = exact.state
        state.windowCount = 6
        assertThrows(.stateMismatch("the state was taken over 6 windows; these data have 5")) { try TrainingBatcher(windows: w, restoring: state) }
        state = exact.state
        state.batchInEpoch = 1
        assertThrows(.stateMismatch("epoch 0, batch 1 is not a position (1 batches per epoch)")) {
            try TrainingBatcher(windows: w, restoring: state)
        }
    }

    // MARK: Validation batches

    func testValidationBatches() throws {
        let w = try numbered(11)
        let all = try ValidationBatches(windows: w, batchSize: 3, evaluationBatches: 0)
        XCTAssertEqual(all.count, 3, "11 windows: 3 full batches of 3, window 9 and 10 dropped")
        XCTAssertEqual(all.map { windowIndices($0) }, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
        XCTAssertEqual(all[1].targets, all[1].inputs.map { $0 + 1 })
        XCTAssertEqual(try ValidationBatches(windows: w, batchSize: 3, evaluationBatches: 2).map { windowIndices($0) }, [[0, 1, 2], [3, 4, 5]])
        XCTAssertEqual(try ValidationBatches(windows: w, batchSize: 3, evaluationBatches: 50).count, 3)
        XCTAssertEqual(try ValidationBatches(windows: w, batchSize: 11, evaluationBatches: 0).count, 1)
        assertThrows(.fewerWindowsThanBatch(source: "the token sequence", windows: 11, batchSize: 12)) {
            try ValidationBatches(windows: w, batchSize: 12, evaluationBatches: 0)
        }
        assertThrows(.invalidParameter("the number of evaluation batches is -1; it must be at least 0 (0: all)")) {
            try ValidationBatches(windows: w, batchSize: 1, evaluationBatches: -1)
        }
    }

    // MARK: llm.c token files

    private func llmcHeader(magic: Int32 = 20240520, version: Int32 = 1, count: Int32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 1024)
        for (w, v) in [magic, version, count].enumerated() {
            for k in 0..<4 { h[4 * w + k] = UInt8(truncatingIfNeeded: UInt32(bitPattern: v) >> (8 * UInt32(k))) }
        }
        return h
    }

    func testLlmcRoundTrip() throws {
        let ids = [0, 1, 255, 256, 50256, 65535, 42]
        let path = directory.appendingPathComponent("round.bin").path
        try writeLlmcTokens(ids, to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes.count, 1024 + 14)
        XCTAssertEqual(Array(bytes[0..<12]), [0x88, 0xD8, 0x34, 0x01, 1, 0, 0, 0, 7, 0, 0, 0])  // 20240520 = 0x0134D888
        XCTAssertEqual(Array(bytes[1024 + 8 ..< 1024 + 10]), [0x50, 0xC4])  // 50256 = 0xC450, little-endian
        XCTAssertEqual(try readLlmcTokens(from: path, vocabularySize: 65536), ids.map { Int32($0) })
        // An empty token list is a valid file (too short for windows later).
        let empty = directory.appendingPathComponent("empty.bin").path
        try writeLlmcTokens([], to: empty)
        XCTAssertEqual(try readLlmcTokens(from: empty, vocabularySize: 10), [])
        assertThrows(.tokenOutOfRange(source: "writeLlmcTokens(\(path))", index: 1, id: 65536, vocabularySize: 65536)) {
            try writeLlmcTokens([1, 65536], to: path)
        }
    }

    func testLlmcBadFiles() throws {
        let short = try file("short.bin", Array(llmcHeader(count: 0)[0..<1023]))
        assertThrows(.llmcFileTooShort(path: short, size: 1023)) { try readLlmcTokens(from: short, vocabularySize: 10) }

        let magic = try file("magic.bin", llmcHeader(magic: 20240521, count: 0))
        assertThrows(.llmcBadMagic(path: magic, found: 20240521)) { try readLlmcTokens(from: magic, vocabularySize: 10) }
        XCTAssertEqual(TrainingDataError.llmcBadMagic(path: magic, found: 20240521).description,
                       "\(magic): not an llm.c token file: the magic number (header word 0) is 20240521, expected 20240520")

        let version = try file("version.bin", llmcHeader(version: 2, count: 0))
        assertThrows(.llmcUnsupportedVersion(path: version, found: 2)) { try readLlmcTokens(from: version, vocabularySize: 10) }

        let negative = try file("negative.bin", llmcHeader(count: -3))
        assertThrows(.llmcNegativeTokenCount(path: negative, count: -3)) { try readLlmcTokens(from: negative, vocabularySize: 10) }

        let odd = try file("odd.bin", llmcHeader(count: 2) + [1, 0, 2])
        assertThrows(.llmcSizeMismatch(path: odd, tokenCount: 2, expected: 1028, found: 1027)) { try readLlmcTokens(from: odd, vocabularySize: 10) }
        XCTAssertEqual(TrainingDataError.llmcSizeMismatch(path: odd, tokenCount: 2, expected: 1028, found: 1027).description,
                       "\(odd): truncated: the header declares 2 tokens, 1024 + 2 x 2 = 1028 bytes, but the file has 1027 (an odd number of token bytes, 3)")

        let truncated = try file("truncated.bin", llmcHeader(count: 3) + [1, 0, 2, 0])
        assertThrows(.llmcSizeMismatch(path: truncated, tokenCount: 3, expected: 1030, found: 1028)) {
            try readLlmcTokens(from: truncated, vocabularySize: 10)
        }

        let trailing = try file("trailing.bin", llmcHeader(count: 1) + [1, 0, 2, 0, 3])
        assertThrows(.llmcSizeMismatch(path: trailing, tokenCount: 1, expected: 1026, found: 1029)) {
            try readLlmcTokens(from: trailing, vocabularySize: 10)
        }
        XCTAssertEqual(TrainingDataError.llmcSizeMismatch(path: trailing, tokenCount: 1, expected: 1026, found: 1029).description,
                       "\(trailing): 3 trailing bytes after the 1 tokens the header declares (expected 1026 bytes, found 1029, an odd number of token bytes)")

        let large = try file("large.bin", llmcHeader(count: 3) + [1, 0, 0x10, 0x27, 2, 0])  // 0x2710 = 10000
        assertThrows(.llmcTokenOutOfRange(path: large, index: 1, id: 10000, vocabularySize: 10000)) {
            try readLlmcTokens(from: large, vocabularySize: 10000)
        }
        XCTAssertEqual(TrainingDataError.llmcTokenOutOfRange(path: large, index: 1, id: 10000, vocabularySize: 10000).description,
                       "\(large): token 1 (byte offset 1026) is 10000, not below the model's vocabulary size 10000")
        XCTAssertEqual(try readLlmcTokens(from: large, vocabularySize: 10001), [1, 10000, 2])

        let missing = directory.appendingPathComponent("missing.bin").path
        XCTAssertThrowsError(try readLlmcTokens(from: missing, vocabularySize: 10)) { error in
            guard case let .unreadableFile(path, _)? = error as? TrainingDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, missing)
        }
    }

    // MARK: Text

    func testInvalidUTF8Offsets() throws {
        // (bytes, offset): Python's UnicodeDecodeError.start.
        let cases: [([UInt8], Int)] = [
            (Array("abc".utf8) + [0xFF] + Array("def".utf8), 3),
            ([0x61, 0x62, 0xE2, 0x82], 2),              // cut short at the end
            ([0xE2, 0x28, 0xA1], 0),                    // bad continuation
            ([0x6F, 0x6B, 0xED, 0xA0, 0x80], 2),        // surrogate
            ([0x78, 0xF4, 0x90, 0x80, 0x80], 1),        // above U+10FFFF
            ([0xC0, 0xAF], 0),                          // overlong
            ([0x61, 0xF0, 0x9F, 0x98, 0x80, 0x80], 5),  // a stray continuation after a good sequence
        ]
        for (k, (bytes, offset)) in cases.enumerated() {
            // Long valid prefixes move the error past the C validator's 32-byte blocks.
            for prefix in [0, 31, 1000] {
                let path = try file("bad\(k)-\(prefix).txt", [UInt8](repeating: 0x41, count: prefix) + bytes)
                assertThrows(.invalidUTF8(path: path, offset: prefix + offset, byte: bytes[offset])) {
                    try TrainingText(files: [path], validationFraction: 0.1)
                }
            }
        }
        XCTAssertEqual(TrainingDataError.invalidUTF8(path: "x.txt", offset: 3, byte: 0xFF).description,
                       "x.txt: not valid UTF-8: byte 0xFF at offset 3 does not start or continue a well-formed sequence")
    }

    func testFilesAreConcatenatedRaw() throws {
        let a = try file("a.txt", Array("one\r\n".utf8))
        let b = try file("b.txt", [0xEF, 0xBB, 0xBF] + Array("two".utf8))
        let text = try TrainingText(files: [a, b], validationFraction: 0)
        XCTAssertEqual(Array(text.training.utf8), Array("one\r\n".utf8) + [0xEF, 0xBB, 0xBF] + Array("two".utf8))
        XCTAssertEqual(text.validation, "")
        // An error in the second file names it, with the offset within it.
        let bad = try file("bad.txt", [0x41, 0x80])
        assertThrows(.invalidUTF8(path: bad, offset: 1, byte: 0x80)) { try TrainingText(files: [a, bad], validationFraction: 0) }
        let empty = try file("empty.txt", [])
        assertThrows(.emptyFile(path: empty)) { try TrainingText(files: [a, empty], validationFraction: 0.1) }
        assertThrows(.invalidParameter("no training text files were given")) { try TrainingText(files: [], validationFraction: 0.1) }
        assertThrows(.invalidParameter("the validation fraction is 1.0; it must be in [0, 1)")) {
            try TrainingText(files: [a], validationFraction: 1)
        }
        assertThrows(.invalidParameter("the validation fraction is -0.1; it must be in [0, 1)")) {
            try TrainingText(text: "abc", validationFraction: -0.1)
        }
        let missing = directory.appendingPathComponent("missing.txt").path
        XCTAssertThrowsError(try TrainingText(files: [missing], validationFraction: 0.1)) { error in
            guard case let .unreadableFile(path, _)? = error as? TrainingDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, missing)
        }
    }

    func testValidationSplitByUnicodeScalarsAsPython() throws {
        // Python: s = "héllo wörld 😀 €uro\n日本語テキスト👍🏽 done" (33 code points); k = int((1 - F) * len(s)).
        let s = "héllo wörld 😀 €uro\n日本語テキスト👍🏽 done"
        let cases: [(Double, String, String)] = [
            (0.1, "héllo wörld 😀 €uro\n日本語テキスト👍🏽 ", "done"),
            (0.25, "héllo wörld 😀 €uro\n日本語テキ", "スト👍🏽 done"),
            (0.5, "héllo wörld 😀 €u", "ro\n日本語テキスト👍🏽 done"),
            (0.0, s, ""),
            (0.9, "hél", "lo wörld 😀 €uro\n日本語テキスト👍🏽 done"),
        ]
        for (f, training, validation) in cases {
            let t = try TrainingText(text: s, validationFraction: f)
            XCTAssertEqual(t.training, training, "F = \(f)")
            XCTAssertEqual(t.validation, validation, "F = \(f)")
            let fromFile = try TrainingText(files: [try file("s.txt", Array(s.utf8))], validationFraction: f)
            XCTAssertEqual(fromFile, t)
        }
        // Scalars, not Characters: a split inside a grapheme cluster (e + U+0301; 👍 + U+1F3FD).
        // Python: int(0.5 * 4) = 2 -> "ae" | "\u0301b".
        let combining = try TrainingText(text: "ae\u{301}b", validationFraction: 0.5)
        XCTAssertEqual(Array(combining.training.unicodeScalars), Array("ae".unicodeScalars))
        XCTAssertEqual(Array(combining.validation.unicodeScalars), Array("\u{301}b".unicodeScalars))
        // Python: "x👍🏽y", len 4, int(0.5 * 4) = 2 -> "x👍" | "🏽y".
        let emoji = try TrainingText(text: "x\u{1F44D}\u{1F3FD}y", validationFraction: 0.5)
        XCTAssertEqual(Array(emoji.training.unicodeScalars), Array("x\u{1F44D}".unicodeScalars))
        XCTAssertEqual(Array(emoji.validation.unicodeScalars), Array("\u{1F3FD}y".unicodeScalars))
    }

    func testTextTokenizedSeparatelyIntoWindows() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/tiny-f32")
        let tokenizer = try GPT2Tokenizer.load(encoderJSON: fixtures.appendingPathComponent("vocab.json").path,
                                               vocabBPE: fixtures.appendingPathComponent("merges.txt").path)
        let text = String(repeating: "First Citizen:\nBefore we proceed any further, hear me speak.\n\n", count: 20)
        let path = try file("input.txt", Array(text.utf8))
        let split = try TrainingText(files: [path], validationFraction: 0.1)
        let ids = split.tokenized(with: tokenizer)
        XCTAssertEqual(ids.training, tokenizer.encode(split.training))
        XCTAssertEqual(ids.validation, tokenizer.encode(split.validation))
        XCTAssertEqual(split.training + split.validation, text)
        let windows = try TokenWindows(tokens: ids.training, context: 16, vocabularySize: tokenizer.vocabularySize, source: "training")
        XCTAssertEqual(windows.count, (ids.training.count - 17) / 16 + 1)
        // A model with a smaller vocabulary than the tokenizer's is reported with the token's index.
        XCTAssertThrowsError(try TokenWindows(tokens: ids.training, context: 16, vocabularySize: 100, source: "training")) { error in
            guard case let .tokenOutOfRange(source, index, id, v)? = error as? TrainingDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "training")
            XCTAssertEqual(id, ids.training[index])
            XCTAssertEqual(v, 100)
            XCTAssertTrue(ids.training[..<index].allSatisfy { $0 < 100 })
        }
        // Too short for one window.
        let tiny = try TrainingText(text: "Hi there", validationFraction: 0)
        let tinyIDs = tiny.tokenized(with: tokenizer).training
        assertThrows(.tooFewTokens(source: "training", count: tinyIDs.count, needed: 65)) {
            try TokenWindows(tokens: tinyIDs, context: 64, vocabularySize: tokenizer.vocabularySize, source: "training")
        }
    }

    // MARK: Learning rate

    func testLearningRateScheduleAsNanoGPT() {
        // Python, nanoGPT's get_lr with learning_rate 6e-4, min_lr 6e-5, warmup 10, decay 100.
        let s = LearningRateSchedule.warmupCosine(rate: 6e-4, minRate: 6e-5, warmupSteps: 10, decaySteps: 100)
        let expected: [(Int, Double)] = [
            (0, 5.454545454545454e-05), (1, 0.00010909090909090908), (9, 0.0005454545454545454), (10, 0.0006),
            (11, 0.0005998355232951559), (55, 0.00032999999999999994), (100, 6e-05), (101, 6e-05), (5000, 6e-05),
        ]
        for (step, rate) in expected {
            XCTAssertEqual(s.rate(atStep: step), rate, "step \(step)")  // bit for bit
        }
        XCTAssertEqual(LearningRateSchedule.constant(3e-4).rate(atStep: 0), 3e-4)
        XCTAssertEqual(LearningRateSchedule.constant(3e-4).rate(atStep: 12345), 3e-4)
        // No cosine phase when decay <= warmup: warmup, then the minimum.
        let flat = LearningRateSchedule.warmupCosine(rate: 1, minRate: 0.1, warmupSteps: 4, decaySteps: 4)
        XCTAssertEqual((0..<7).map { flat.rate(atStep: $0) }, [0.2, 0.4, 0.6, 0.8, 0.1, 0.1, 0.1])
        let noWarmup = LearningRateSchedule.warmupCosine(rate: 1, minRate: 0, warmupSteps: 0, decaySteps: 2)
        XCTAssertEqual(noWarmup.rate(atStep: 0), 1)
        XCTAssertEqual(noWarmup.rate(atStep: 1), 0.5, accuracy: 1e-15)
        XCTAssertEqual(noWarmup.rate(atStep: 2), 0)
    }
}
