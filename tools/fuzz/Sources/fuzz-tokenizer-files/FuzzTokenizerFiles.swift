// fuzz-tokenizer-files: building a GPT2Tokenizer from untrusted files.
//
// The first byte picks the source format; the rest is split at the first NUL byte where two
// files are needed:
//   0: GPT2Tokenizer(encoderJSON:vocabBPE:)   encoder.json NUL vocab.bpe
//   1: GPT2Tokenizer(tokenizerJSON:)          tokenizer.json
//   2: GPT2Tokenizer(vocabulary:merges:)      vocabulary lines NUL merge lines (as in .g2w metadata);
//      the same lines as raw bytes also go to GPT2Tokenizer(vocabularyUTF8:...), which must agree
// Building must throw TokenizerError or give a tokenizer that works: every id decodes, token
// strings map back to their ids, rebuilding from vocabularyInIDOrder + mergeStrings gives the same
// encodings, and decode(encode(text)) == text for a text taken from the input.
import Foundation
import FuzzSupport
import G2WTokenizer

@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard let mode = bytes.first else { return 0 }
    let rest = bytes.dropFirst()
    let nul = rest.firstIndex(of: 0) ?? rest.endIndex
    let first = rest[..<nul], second = nul < rest.endIndex ? rest[(nul + 1)...] : []
    if mode % 3 == 2 { checkUTF8Initializer(first, second) }
    let tokenizer: GPT2Tokenizer
    do {
        switch mode % 3 {
        case 0: tokenizer = try GPT2Tokenizer(encoderJSON: Data(first), vocabBPE: Data(second))
        case 1: tokenizer = try GPT2Tokenizer(tokenizerJSON: Data(rest))
        default: tokenizer = try GPT2Tokenizer(vocabulary: lines(first), merges: lines(second))
        }
    } catch let e as TokenizerError {
        fuzzNote("mode \(mode % 3): \(e.description)")
        return 0
    } catch {
        fuzzCheck(false, "building threw a non-TokenizerError: \(error)")
        return 0
    }
    fuzzNote("mode \(mode % 3): \(tokenizer.vocabularySize) tokens, \(tokenizer.mergeStrings.count) merges, specials \(tokenizer.specialTokens)")
    exercise(tokenizer, text: String(decoding: second.isEmpty ? rest.prefix(256) : second.prefix(256), as: UTF8.self))
    return 0
}

/// The .g2w path, GPT2Tokenizer(vocabularyUTF8:...), on the raw lines (not repaired): it throws
/// only TokenizerError, and on valid UTF-8 agrees with the String initializer.
func checkUTF8Initializer(_ first: ArraySlice<UInt8>, _ second: ArraySlice<UInt8>) {
    func raw(_ b: ArraySlice<UInt8>) -> (bytes: [UInt8], ends: [Int]) {
        var bytes: [UInt8] = [], ends: [Int] = []
        if !b.isEmpty {
            for line in b.split(separator: 0x0A, omittingEmptySubsequences: false) { bytes += line; ends.append(bytes.count) }
        }
        return (bytes, ends)
    }
    let v = raw(first), m = raw(second)
    var viaBytes: GPT2Tokenizer?
    do {
        viaBytes = try GPT2Tokenizer(vocabularyUTF8: v.bytes, vocabularyEnds: v.ends, mergesUTF8: m.bytes, mergesEnds: m.ends)
    } catch is TokenizerError {
    } catch {
        fuzzCheck(false, "the UTF-8 initializer threw a non-TokenizerError: \(error)")
    }
    guard String(validating: Array(first), as: UTF8.self) != nil, String(validating: Array(second), as: UTF8.self) != nil else { return }
    let viaStrings = try? GPT2Tokenizer(vocabulary: lines(first), merges: lines(second))
    fuzzCheck((viaBytes == nil) == (viaStrings == nil), "the UTF-8 and String initializers disagree on whether the input is valid")
    if let a = viaBytes, let b = viaStrings {
        fuzzCheck(a.vocabularyInIDOrder == b.vocabularyInIDOrder && a.mergeStrings == b.mergeStrings, "the UTF-8 and String initializers build different tokenizers")
    }
}

func lines(_ b: ArraySlice<UInt8>) -> [String] {
    b.isEmpty ? [] : b.split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
}

func exercise(_ t: GPT2Tokenizer, text: String) {
    let n = t.vocabularySize
    fuzzCheck(n >= 256, "a tokenizer without the 256 byte tokens was built")
    let vocabulary = t.vocabularyInIDOrder
    fuzzCheck(vocabulary.count == n, "vocabularyInIDOrder.count")
    for id in 0..<n {
        let raw: [UInt8]
        do { raw = try t.tokenBytes(id) } catch { fuzzCheck(false, "tokenBytes(\(id)) threw \(error)"); continue }
        fuzzCheck(!raw.isEmpty, "token \(id) is empty")
        fuzzCheck(t.tokenString(id).map { Array($0.utf8) } == Array(vocabulary[id].utf8), "tokenString(\(id)) disagrees with vocabularyInIDOrder")
        fuzzCheck(t.id(forToken: vocabulary[id]) == id, "id(forToken:) of token \(id)")
    }
    for bad in [-1, n, Int.min, Int.max] {
        fuzzCheck(t.tokenString(bad) == nil, "tokenString(\(bad)) is not nil")
        do { _ = try t.tokenBytes(bad); fuzzCheck(false, "tokenBytes(\(bad)) did not throw") } catch {}
    }
    for (s, id) in t.specialTokens { fuzzCheck(t.tokenString(id).map { Array($0.utf8) } == Array(s.utf8), "special token \(id)") }

    let rebuilt: GPT2Tokenizer
    do { rebuilt = try GPT2Tokenizer(vocabulary: vocabulary, merges: t.mergeStrings) } catch {
        fuzzCheck(false, "rebuilding from vocabularyInIDOrder + mergeStrings threw \(error)")
        return
    }
    fuzzCheck(rebuilt.vocabularySize == n && rebuilt.mergeStrings == t.mergeStrings, "rebuilt tokenizer differs")

    let samples = [text, " the cat's 123 <|endoftext|>\n\n héllo 👋 世界"] + t.specialTokens.keys.sorted().prefix(4).map { "a" + $0 + " " + $0 }
    for s in samples {
        for special in [false, true] {
            let ids = t.encode(s, allowSpecialTokens: special)
            fuzzCheck(ids.allSatisfy { $0 >= 0 && $0 < n }, "encode produced an id out of range")
            fuzzCheck(rebuilt.encode(s, allowSpecialTokens: special) == ids, "rebuilt tokenizer encodes differently")
            do {
                let decoded = try t.decode(ids)
                fuzzCheck(decoded == Array(s.utf8), "decode(encode(s)) != s for \(s.debugDescription) (special: \(special))")
            } catch {
                fuzzCheck(false, "decoding encoded ids threw \(error)")
            }
        }
        fuzzCheck(Array(t.preTokenize(s).joined().utf8) == Array(s.utf8), "pre-tokens do not concatenate to the text")
    }
}
