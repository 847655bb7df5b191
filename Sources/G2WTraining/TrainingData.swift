import CG2W
import Foundation
import G2WTokenizer

// Training data: text files (validated UTF-8, split for validation by Unicode scalars, then
// tokenized), llm.c token files, and the windows of N + 1 tokens a model trains on. The batcher,
// the validation batches and the learning-rate schedule are in TrainingBatches.swift.

/// An error in training data or in the parameters that cut it into batches, with what is wrong
/// and where (file path, byte offset, token index).
public enum TrainingDataError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A file could not be read.
    case unreadableFile(path: String, reason: String)
    /// A file could not be written.
    case unwritableFile(path: String, reason: String)
    /// A text file has no bytes.
    case emptyFile(path: String)
    /// A text file is not well-formed UTF-8: `byte` at the 0-based `offset` is the first one that
    /// does not start or continue a well-formed sequence (Python's `UnicodeDecodeError.start`).
    case invalidUTF8(path: String, offset: Int, byte: UInt8)
    /// An llm.c token file is shorter than its 1024-byte header.
    case llmcFileTooShort(path: String, size: Int)
    /// The first header word of an llm.c token file is not 20240520.
    case llmcBadMagic(path: String, found: Int32)
    /// The second header word of an llm.c token file is not 1 (uint16 GPT-2 tokens).
    case llmcUnsupportedVersion(path: String, found: Int32)
    /// The third header word (the token count) of an llm.c token file is negative.
    case llmcNegativeTokenCount(path: String, count: Int32)
    /// The size of an llm.c token file is not 1024 + 2 x the token count of its header.
    case llmcSizeMismatch(path: String, tokenCount: Int, expected: Int, found: Int)
    /// A token of an llm.c file is not below the model's vocabulary size (index 0-based; its bytes
    /// are at offset 1024 + 2 x index).
    case llmcTokenOutOfRange(path: String, index: Int, id: Int, vocabularySize: Int)
    /// A token of an in-memory sequence is outside `0..<vocabularySize`.
    case tokenOutOfRange(source: String, index: Int, id: Int, vocabularySize: Int)
    /// A token sequence is too short for even one window of `context` + 1 tokens.
    case tooFewTokens(source: String, count: Int, needed: Int)
    /// There are fewer windows than one batch needs.
    case fewerWindowsThanBatch(source: String, windows: Int, batchSize: Int)
    /// A parameter out of its range (what, and why).
    case invalidParameter(String)
    /// A captured batcher state that does not belong to the data or settings it is restored on.
    case stateMismatch(String)

    /// The message.
    public var description: String {
        switch self {
        case let .unreadableFile(path, reason):
            return "cannot read \(path): \(reason)"
        case let .unwritableFile(path, reason):
            return "cannot write \(path): \(reason)"
        case let .emptyFile(path):
            return "\(path): the file is empty"
        case let .invalidUTF8(path, offset, byte):
            return "\(path): not valid UTF-8: byte 0x\(hex2(byte)) at offset \(offset) does not start or continue a well-formed sequence"
        case let .llmcFileTooShort(path, size):
            return "\(path): \(size) bytes, too short for the 1024-byte header of an llm.c token file"
        case let .llmcBadMagic(path, found):
            return "\(path): not an llm.c token file: the magic number (header word 0) is \(found), expected 20240520"
        case let .llmcUnsupportedVersion(path, found):
            return "\(path): llm.c token file version \(found) is not supported (only version 1, uint16 GPT-2 tokens)"
        case let .llmcNegativeTokenCount(path, count):
            return "\(path): the header's token count (header word 2) is \(count)"
        case let .llmcSizeMismatch(path, count, expected, found):
            let dataBytes = found - LlmcTokenFile.headerSize
            if found < expected {
                let odd = dataBytes % 2 != 0 ? " (an odd number of token bytes, \(dataBytes))" : ""
                return "\(path): truncated: the header declares \(count) tokens, 1024 + 2 x \(count) = \(expected) bytes, but the file has \(found)\(odd)"
            }
            let odd = dataBytes % 2 != 0 ? ", an odd number of token bytes" : ""
            return "\(path): \(found - expected) trailing bytes after the \(count) tokens the header declares (expected \(expected) bytes, found \(found)\(odd))"
        case let .llmcTokenOutOfRange(path, index, id, v):
            return "\(path): token \(index) (byte offset \(LlmcTokenFile.headerSize + 2 * index)) is \(id), not below the model's vocabulary size \(v)"
        case let .tokenOutOfRange(source, index, id, v):
            return "\(source): token \(index) is \(id), outside 0..<\(v) (the model's vocabulary size)"
        case let .tooFewTokens(source, count, needed):
            return "\(source): \(count) tokens; one window needs \(needed) (the context plus one target)"
        case let .fewerWindowsThanBatch(source, windows, batchSize):
            return "\(source): \(windows) windows, fewer than the batch size \(batchSize); not one full batch"
        case let .invalidParameter(s):
            return s
        case let .stateMismatch(s):
            return "cannot restore the batcher: \(s)"
        }
    }
}

private func hex2(_ b: UInt8) -> String {
    let s = String(b, radix: 16, uppercase: true)
    return s.count == 1 ? "0" + s : s
}

func readWholeFile(_ path: String) throws -> Data {
    do {
        return try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw TrainingDataError.unreadableFile(path: path, reason: (error as NSError).localizedDescription)
    }
}

// MARK: - Text

/// Training text split into a training part and a validation part.
///
/// Rules (they mimic the PyTorch project's `text[:n]` / `text[n:]` in Python):
/// - Files are read as raw bytes: no newline translation (Python must open with `newline=""` to
///   agree), a byte-order mark is kept as U+FEFF. Each file must be non-empty, well-formed UTF-8.
/// - Several files are concatenated in the order given, with nothing between them.
/// - With `n` Unicode scalars (Python's code points) in the whole text and validation fraction `F`
///   in [0, 1), the first `Int((1 - F) * Double(n))` scalars are training (Python:
///   `int((1 - F) * len(text))`, truncation toward zero) and the rest validation. The split is
///   made before tokenizing, and each part is tokenized on its own (``tokenized(with:)``).
public struct TrainingText: Sendable, Equatable {
    /// The first part of the text.
    public var training: String
    /// The last part of the text (empty when the fraction is 0 or the text is very short).
    public var validation: String

    /// Splits `text` by the rules above.
    /// - Throws: ``TrainingDataError/invalidParameter(_:)`` when `validationFraction` is not in [0, 1).
    public init(text: String, validationFraction: Double) throws {
        var text = text
        (training, validation) = try text.withUTF8 { try Self.split(utf8: $0, validationFraction: validationFraction) }
    }

    /// Reads `files` (concatenated in order) and splits them by the rules above.
    /// - Throws: ``TrainingDataError/unreadableFile(path:reason:)``, ``TrainingDataError/emptyFile(path:)``,
    ///   ``TrainingDataError/invalidUTF8(path:offset:byte:)`` (the offset within that file), or
    ///   ``TrainingDataError/invalidParameter(_:)`` for no files or a fraction outside [0, 1).
    public init(files: [String], validationFraction: Double) throws {
        try Self.checkFraction(validationFraction)
        let bytes = try Self.readUTF8(files: files)
        (training, validation) = try bytes.withUnsafeBufferPointer { try Self.split(utf8: $0, validationFraction: validationFraction) }
    }

    /// The bytes of `files`, concatenated in order, each checked to be non-empty, well-formed UTF-8.
    public static func readUTF8(files: [String]) throws -> [UInt8] {
        guard !files.isEmpty else { throw TrainingDataError.invalidParameter("no training text files were given") }
        var out: [UInt8] = []
        for path in files {
            let data = try readWholeFile(path)
            guard !data.isEmpty else { throw TrainingDataError.emptyFile(path: path) }
            try data.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                if let offset = firstInvalidUTF8Offset(bytes) {
                    throw TrainingDataError.invalidUTF8(path: path, offset: offset, byte: bytes[offset])
                }
                out.append(contentsOf: bytes)
            }
        }
        return out
    }

    /// Both parts tokenized separately with `tokenizer` (ordinary text: `<|endoftext|>` in the
    /// text is not the special token, as tiktoken's `encode_ordinary`).
    public func tokenized(with tokenizer: GPT2Tokenizer) -> (training: [Int], validation: [Int]) {
        (tokenizer.encode(training), tokenizer.encode(validation))
    }

    static func checkFraction(_ f: Double) throws {
        guard f >= 0, f < 1 else {
            throw TrainingDataError.invalidParameter("the validation fraction is \(f); it must be in [0, 1)")
        }
    }

    /// Splits well-formed UTF-8 at scalar `Int((1 - F) * n)`.
    static func split(utf8 p: UnsafeBufferPointer<UInt8>, validationFraction f: Double) throws -> (String, String) {
        try checkFraction(f)
        var scalars = 0
        for b in p where b & 0xC0 != 0x80 { scalars += 1 }
        let trainingScalars = Int((1 - f) * Double(scalars))
        // The byte offset of scalar number `trainingScalars` (p.count when it is the end).
        var offset = p.count, seen = 0
        for (i, b) in p.enumerated() where b & 0xC0 != 0x80 {
            if seen == trainingScalars { offset = i; break }
            seen += 1
        }
        return (String(decoding: UnsafeBufferPointer(rebasing: p[..<offset]), as: UTF8.self),
                String(decoding: UnsafeBufferPointer(rebasing: p[offset...]), as: UTF8.self))
    }
}

/// The 0-based offset of the first byte of `p` that does not start or continue a well-formed UTF-8
/// sequence (Unicode Table 3-7), or nil when all of `p` is well-formed. For a sequence cut short
/// (a lead byte, then a wrong byte or the end), the offset is the lead byte's, as Python's
/// `UnicodeDecodeError.start`. One pass with the C validator; a second, plain one (this scan,
/// which decides) only on failure.
func firstInvalidUTF8Offset(_ p: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = p.baseAddress, p.count > 0 else { return nil }
    let i = g2w_utf8_first_invalid(base, p.count)  // the one validator (CG2W)
    return i < p.count ? i : nil
}

// MARK: - llm.c token files

/// llm.c's token file (`dev/data/*.bin`): a header of 256 little-endian int32 words — [0] the
/// magic 20240520, [1] the version 1, [2] the token count; the other 253 are ignored (llm.c writes
/// zeros) — then `count` little-endian uint16 tokens. The file is exactly 1024 + 2 x count bytes.
public enum LlmcTokenFile {
    /// The magic number, header word 0: 20240520.
    public static let magic: Int32 = 20240520
    /// The only version read, header word 1: 1 (uint16 GPT-2 tokens).
    public static let version: Int32 = 1
    /// The header's size in bytes (256 int32 words).
    public static let headerSize = 1024
}

/// The tokens of an llm.c token file (see ``LlmcTokenFile``), each checked to be below
/// `vocabularySize`.
/// - Throws: ``TrainingDataError/unreadableFile(path:reason:)``, ``TrainingDataError/llmcFileTooShort(path:size:)``,
///   ``TrainingDataError/llmcBadMagic(path:found:)``, ``TrainingDataError/llmcUnsupportedVersion(path:found:)``,
///   ``TrainingDataError/llmcNegativeTokenCount(path:count:)``, ``TrainingDataError/llmcSizeMismatch(path:tokenCount:expected:found:)``,
///   ``TrainingDataError/llmcTokenOutOfRange(path:index:id:vocabularySize:)`` (the first such token).
public func readLlmcTokens(from path: String, vocabularySize: Int) throws -> [Int32] {
    let data = try readWholeFile(path)
    return try data.withUnsafeBytes { raw in
        let size = raw.count
        guard size >= LlmcTokenFile.headerSize else { throw TrainingDataError.llmcFileTooShort(path: path, size: size) }
        func word(_ i: Int) -> Int32 { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        let magic = word(0), version = word(1), declared = word(2)
        guard magic == LlmcTokenFile.magic else { throw TrainingDataError.llmcBadMagic(path: path, found: magic) }
        guard version == LlmcTokenFile.version else { throw TrainingDataError.llmcUnsupportedVersion(path: path, found: version) }
        guard declared >= 0 else { throw TrainingDataError.llmcNegativeTokenCount(path: path, count: declared) }
        let count = Int(declared)
        let (dataBytes, o1) = count.multipliedReportingOverflow(by: 2)
        let (expected, o2) = LlmcTokenFile.headerSize.addingReportingOverflow(dataBytes)
        guard !o1, !o2, size == expected else {
            throw TrainingDataError.llmcSizeMismatch(path: path, tokenCount: count, expected: o1 || o2 ? Int.max : expected, found: size)
        }
        var tokens = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let id = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: LlmcTokenFile.headerSize + 2 * i, as: UInt16.self)))
            guard id < vocabularySize else {
                throw TrainingDataError.llmcTokenOutOfRange(path: path, index: i, id: id, vocabularySize: vocabularySize)
            }
            tokens[i] = Int32(id)
        }
        return tokens
    }
}

/// Writes `ids` as an llm.c token file (see ``LlmcTokenFile``; header words 3...255 zero).
/// - Throws: ``TrainingDataError/tokenOutOfRange(source:index:id:vocabularySize:)`` for an id outside
///   0...65535, ``TrainingDataError/invalidParameter(_:)`` for more than Int32.max ids,
///   ``TrainingDataError/unwritableFile(path:reason:)``.
public func writeLlmcTokens(_ ids: [Int], to path: String) throws {
    guard ids.count <= Int(Int32.max) else {
        throw TrainingDataError.invalidParameter("\(ids.count) tokens do not fit an llm.c token file (at most \(Int32.max))")
    }
    var bytes = [UInt8](repeating: 0, count: LlmcTokenFile.headerSize + 2 * ids.count)
    func put32(_ v: Int32, at offset: Int) {
        for k in 0..<4 { bytes[offset + k] = UInt8(truncatingIfNeeded: UInt32(bitPattern: v) >> (8 * UInt32(k))) }
    }
    put32(LlmcTokenFile.magic, at: 0)
    put32(LlmcTokenFile.version, at: 4)
    put32(Int32(ids.count), at: 8)
    for (i, id) in ids.enumerated() {
        guard id >= 0, id <= Int(UInt16.max) else {
            throw TrainingDataError.tokenOutOfRange(source: "writeLlmcTokens(\(path))", index: i, id: id, vocabularySize: 65536)
        }
        bytes[LlmcTokenFile.headerSize + 2 * i] = UInt8(id & 0xFF)
        bytes[LlmcTokenFile.headerSize + 2 * i + 1] = UInt8(id >> 8)
    }
    do {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    } catch {
        throw TrainingDataError.unwritableFile(path: path, reason: (error as NSError).localizedDescription)
    }
}

// MARK: - Windows

/// The windows a model trains on: for context N and stride S, window k starts at token i = k S,
/// its inputs are `tokens[i ..< i+N]` and its targets `tokens[i+1 ..< i+N+1]`, for every i of
/// Python's `range(0, len(tokens) - N, S)`. So there are `(len - N - 1) / S + 1` windows when
/// len > N (the last start is the largest k S < len - N) and none otherwise, which is an error.
public struct TokenWindows: Sendable, Equatable {
    /// The whole sequence, every id in `0..<vocabularySize`.
    public let tokens: [Int32]
    /// N: the tokens per window (the model's sequence length).
    public let context: Int
    /// S: the distance between the starts of consecutive windows.
    public let stride: Int
    /// What the tokens are (for errors), e.g. "the training split of input.txt".
    public let source: String

    /// The windows of `tokens` for N = `context`, checked against `vocabularySize`.
    /// - Parameters:
    ///   - stride: S; nil (the default) is S = N, windows that do not overlap.
    /// - Throws: ``TrainingDataError/invalidParameter(_:)`` for N or S below 1,
    ///   ``TrainingDataError/tokenOutOfRange(source:index:id:vocabularySize:)`` for an id outside
    ///   `0..<vocabularySize`, ``TrainingDataError/tooFewTokens(source:count:needed:)`` for fewer
    ///   than N + 1 tokens.
    public init(tokens: [Int32], context: Int, stride: Int? = nil, vocabularySize: Int, source: String = "the token sequence") throws {
        let stride = stride ?? context
        guard context >= 1 else { throw TrainingDataError.invalidParameter("the context is \(context) tokens; it must be at least 1") }
        guard stride >= 1 else { throw TrainingDataError.invalidParameter("the window stride is \(stride); it must be at least 1") }
        for (i, t) in tokens.enumerated() where t < 0 || Int(t) >= vocabularySize {
            throw TrainingDataError.tokenOutOfRange(source: source, index: i, id: Int(t), vocabularySize: vocabularySize)
        }
        guard tokens.count > context else {
            throw TrainingDataError.tooFewTokens(source: source, count: tokens.count, needed: context + 1)
        }
        self.tokens = tokens
        self.context = context
        self.stride = stride
        self.source = source
    }

    /// The same from `Int` ids (as the tokenizer gives them).
    public init(tokens: [Int], context: Int, stride: Int? = nil, vocabularySize: Int, source: String = "the token sequence") throws {
        var narrow = [Int32](repeating: 0, count: tokens.count)
        for (i, t) in tokens.enumerated() {
            guard t >= 0, t < vocabularySize, let v = Int32(exactly: t) else {
                throw TrainingDataError.tokenOutOfRange(source: source, index: i, id: t, vocabularySize: vocabularySize)
            }
            narrow[i] = v
        }
        try self.init(tokens: narrow, context: context, stride: stride, vocabularySize: vocabularySize, source: source)
    }

    /// The number of windows: `len(range(0, len(tokens) - N, S))`.
    public var count: Int { Self.count(tokenCount: tokens.count, context: context, stride: stride) }

    /// `len(range(0, tokenCount - context, stride))`.
    public static func count(tokenCount: Int, context: Int, stride: Int) -> Int {
        tokenCount > context ? (tokenCount - context - 1) / stride + 1 : 0
    }

    /// The first token of window `k`: k S.
    public func start(ofWindow k: Int) -> Int { k * stride }

    /// Window `k`'s inputs (N ids) and targets (the same shifted by one).
    public func window(_ k: Int) -> (inputs: ArraySlice<Int32>, targets: ArraySlice<Int32>) {
        precondition(k >= 0 && k < count, "window \(k) of \(count)")
        let i = k * stride
        return (tokens[i ..< i + context], tokens[i + 1 ..< i + context + 1])
    }
}
