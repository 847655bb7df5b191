// fuzz-tokenizer-roundtrip: GPT-2's real tokenizer (Tests/Fixtures/tiny-f32/vocab.json +
// merges.txt) on arbitrary text and arbitrary id sequences.
//
// Text: the input as a String (invalid UTF-8 repaired with U+FFFD); decode(encode(s)) must be
// exactly s's UTF-8, with and without special tokens, and the streaming decoder fed the ids one by
// one must produce s exactly.
// Ids: the input read as little-endian u16s (values >= 0xFF00 pick edge values such as -1 and
// Int.max); decode must throw tokenIDOutOfRange exactly when an id is out of range, and the
// streaming decoder must agree with decode on the valid ids and be left unchanged by invalid ones.
import Foundation
import FuzzSupport
import G2WTokenizer

/// The repository root: G2W_FUZZ_ROOT, or four levels above this source file.
let root: String = ProcessInfo.processInfo.environment["G2W_FUZZ_ROOT"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

let tokenizer: GPT2Tokenizer = {
    let dir = URL(fileURLWithPath: root).appendingPathComponent("Tests/Fixtures/tiny-f32")
    do {
        return try GPT2Tokenizer.load(encoderJSON: dir.appendingPathComponent("vocab.json").path, vocabBPE: dir.appendingPathComponent("merges.txt").path)
    } catch {
        fatalError("fuzz harness: cannot load GPT-2's tokenizer from \(dir.path) (set G2W_FUZZ_ROOT): \(error)")
    }
}()

let edgeIDs = [-1, Int.min, Int.max, 50257, 50256, -50257, 1 << 32, 0]

@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    checkText(String(decoding: bytes, as: UTF8.self))
    var ids: [Int] = []
    var i = 0
    while i + 1 < bytes.count {
        let v = Int(bytes[i]) | Int(bytes[i + 1]) << 8
        ids.append(v < 0xFF00 ? v : edgeIDs[v & 7])
        i += 2
    }
    checkIDs(ids)
    return 0
}

func checkText(_ s: String) {
    let utf8 = Array(s.utf8)
    let n = tokenizer.vocabularySize
    for special in [false, true] {
        let ids = tokenizer.encode(s, allowSpecialTokens: special)
        fuzzCheck(ids.allSatisfy { $0 >= 0 && $0 < n }, "encode produced an id out of range")
        fuzzCheck(utf8.isEmpty == ids.isEmpty, "empty text <-> no ids")
        do {
            let decoded = try tokenizer.decode(ids), text = try tokenizer.decodeText(ids)
            fuzzCheck(decoded == utf8, "decode(encode(s)) != s for \(s.debugDescription) (special: \(special))")
            fuzzCheck(Array(text.utf8) == utf8, "decodeText(encode(s)) != s")
        } catch {
            fuzzCheck(false, "decoding encoded ids threw \(error)")
        }
        var stream = tokenizer.makeStreamingDecoder()
        var out = ""
        do { for id in ids { out += try stream.append(id) } } catch { fuzzCheck(false, "streaming decoder threw \(error)") }
        fuzzCheck(stream.pendingByteCount <= 3, "streaming decoder holds \(stream.pendingByteCount) bytes")
        out += stream.finish()
        fuzzCheck(Array(out.utf8) == utf8, "streaming decode of encode(s) != s for \(s.debugDescription)")
        if !special {
            fuzzCheck(Array(tokenizer.preTokenize(s).joined().utf8) == utf8, "pre-tokens do not concatenate to the text")
        } else if !containsBytes(utf8, Array("<|endoftext|>".utf8)) {
            fuzzCheck(ids == tokenizer.encode(s), "allowSpecialTokens changed the ids of a text without special tokens")
        }
    }
}

func checkIDs(_ ids: [Int]) {
    let n = tokenizer.vocabularySize
    let firstBad = ids.firstIndex { $0 < 0 || $0 >= n }
    var expected: [UInt8] = []
    for id in ids where id >= 0 && id < n {
        do { expected += try tokenizer.tokenBytes(id) } catch { fuzzCheck(false, "tokenBytes(\(id)) threw \(error)") }
    }
    do {
        let bytes = try tokenizer.decode(ids)
        fuzzCheck(firstBad == nil, "decode accepted id \(ids[firstBad ?? 0])")
        fuzzCheck(bytes == expected, "decode != concatenated tokenBytes")
        let text = try tokenizer.decodeText(ids)
        fuzzCheck(Array(text.utf8) == Array(String(decoding: bytes, as: UTF8.self).utf8), "decodeText")
    } catch let TokenizerError.tokenIDOutOfRange(id, size) {
        fuzzCheck(firstBad != nil && id == ids[firstBad!] && size == n, "decode threw for id \(id) but the first bad id is \(firstBad.map { ids[$0] } as Any)")
    } catch {
        fuzzCheck(false, "decode threw \(error)")
    }
    // One by one: an invalid id throws and leaves the decoder as it was.
    var stream = tokenizer.makeStreamingDecoder()
    var out = ""
    for id in ids {
        let pending = stream.pendingByteCount
        do {
            out += try stream.append(id)
            fuzzCheck(id >= 0 && id < n, "streaming decoder accepted id \(id)")
        } catch TokenizerError.tokenIDOutOfRange {
            fuzzCheck(id < 0 || id >= n, "streaming decoder rejected id \(id)")
            fuzzCheck(stream.pendingByteCount == pending, "a rejected id changed the streaming decoder")
        } catch {
            fuzzCheck(false, "streaming decoder threw \(error)")
        }
        fuzzCheck(stream.pendingByteCount <= 3, "streaming decoder holds \(stream.pendingByteCount) bytes")
    }
    out += stream.finish()
    fuzzCheck(Array(out.utf8) == Array(String(decoding: expected, as: UTF8.self).utf8),
              "streaming decode of valid ids differs from decoding them at once: \(out.debugDescription) vs \(String(decoding: expected, as: UTF8.self).debugDescription)")
    // In chunks: tokens before a bad one are kept.
    var chunked = tokenizer.makeStreamingDecoder()
    var chunkedOut = ""
    var valid: [Int] = []
    for chunk in stride(from: 0, to: ids.count, by: 5).map({ ids[$0..<min($0 + 5, ids.count)] }) {
        do {
            chunkedOut += try chunked.append(contentsOf: chunk)
            valid += chunk
        } catch {
            let good = chunk.prefix { $0 >= 0 && $0 < n }
            valid += good
            // The kept tokens come out with the next successful append or at finish.
        }
    }
    chunkedOut += chunked.finish()
    let validBytes = (try? tokenizer.decode(valid)) ?? []
    fuzzCheck(Array(chunkedOut.utf8) == Array(String(decoding: validBytes, as: UTF8.self).utf8), "append(contentsOf:) lost or duplicated bytes around an invalid id")
}
