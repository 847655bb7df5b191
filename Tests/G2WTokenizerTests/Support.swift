import Foundation
import G2WTokenizer
import XCTest

/// Locations of the test fixtures and the shared corpora.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let tokenizerDir = root.appendingPathComponent("tokenizer")
    static let vocabJSON = root.appendingPathComponent("tiny-f32/vocab.json")
    static let mergesTXT = root.appendingPathComponent("tiny-f32/merges.txt")
    /// ../shared/corpus next to the repository (absent on other machines).
    static let corpusDir = root.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/corpus")

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: tokenizerDir.appendingPathComponent(name))
    }

    static func manifest() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: data("manifest.json")) as! [String: Any]
    }
}

/// The GPT-2 tokenizer from the committed fixture files, loaded once.
let gpt2: GPT2Tokenizer = {
    do {
        return try GPT2Tokenizer.load(encoderJSON: Fixtures.vocabJSON.path, vocabBPE: Fixtures.mergesTXT.path)
    } catch {
        fatalError("cannot load the GPT-2 tokenizer fixture: \(error)")
    }
}()

/// edge_cases.json. Read with JSONDecoder: corelibs JSONSerialization drops a raw U+FEFF at the
/// start of a string, which the texts_sha256 check caught.
struct EdgeCases: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            text = try c.decode(String.self)
            ids = try c.decode([Int].self)
        }
    }
    let texts_sha256: String
    let cases: [Case]
    let special_allowed: [Case]

    static func load() throws -> EdgeCases {
        try JSONDecoder().decode(EdgeCases.self, from: Fixtures.data("edge_cases.json"))
    }
}

/// Little-endian uint16 ids.
func readU16(_ data: Data) -> [Int] {
    data.withUnsafeBytes { raw in
        (0..<(raw.count / 2)).map { Int(raw.load(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian) }
    }
}

/// splitmix64, the same generator as tools/tokenizer_reference.py.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Rebuilds a pathological string from its manifest recipe.
func pathologicalText(_ recipe: [String: Any]) -> String {
    let count = recipe["count"] as! Int
    var scalars = String.UnicodeScalarView()
    switch recipe["kind"] as! String {
    case "repeat":
        let c = (recipe["char"] as! String).unicodeScalars.first!
        scalars.append(contentsOf: repeatElement(c, count: count))
    case "random":
        var rng = SplitMix64(state: UInt64(recipe["seed"] as! Int))
        if let alphabet = recipe["alphabet"] as? String {
            let chars = Array(alphabet.unicodeScalars)
            for _ in 0..<count { scalars.append(chars[Int(rng.next() % UInt64(chars.count))]) }
        } else {
            let range = recipe["alphabet_range"] as! [Int]
            let n = UInt64(range[1] - range[0] + 1)
            for _ in 0..<count { scalars.append(Unicode.Scalar(UInt32(range[0]) + UInt32(rng.next() % n))!) }
        }
    default:
        fatalError("unknown recipe \(recipe)")
    }
    return String(scalars)
}

/// Bytes of ids as little-endian uint32, the form whose SHA-256 the manifest records.
func u32Bytes(_ ids: [Int]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(ids.count * 4)
    for id in ids {
        let v = UInt32(id)
        out += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
    }
    return out
}

/// First position where two id sequences differ, with readable context; nil if equal.
func firstMismatch(_ actual: [Int], _ expected: [Int], tokenizer: GPT2Tokenizer = gpt2) -> String? {
    if actual == expected { return nil }
    let n = min(actual.count, expected.count)
    var i = 0
    while i < n && actual[i] == expected[i] { i += 1 }
    func show(_ ids: [Int]) -> String {
        let lo = max(0, i - 8)
        let hi = min(ids.count, i + 8)
        let parts = ids[lo..<hi].map { id -> String in
            let text = (try? tokenizer.decodeText([id])) ?? "?"
            return "\(id)\(String(reflecting: text))"
        }
        return parts.joined(separator: " ")
    }
    let prefix = (try? tokenizer.decode(expected[..<i]).count) ?? 0
    return "first mismatch at token \(i) (byte \(prefix)) of \(expected.count) expected / \(actual.count) actual\n"
        + "  expected: \(show(expected))\n  actual:   \(show(actual))"
}

/// Minimal SHA-256 (FIPS 180-4), to prove fixture texts are the real corpora.
struct SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    mutating func update(_ bytes: some Collection<UInt8>) {
        length += UInt64(bytes.count)
        buffer.append(contentsOf: bytes)
        let blocks = buffer.count / 64
        if blocks > 0 {
            buffer.withUnsafeBufferPointer { b in
                for k in 0..<blocks { compress(UnsafeBufferPointer(rebasing: b[(k * 64)..<(k * 64 + 64)])) }
            }
            buffer.removeFirst(blocks * 64)
        }
    }

    private mutating func compress(_ block: UnsafeBufferPointer<UInt8>) {
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for t in 0..<16 {
            w[t] = UInt32(block[t * 4]) << 24 | UInt32(block[t * 4 + 1]) << 16 | UInt32(block[t * 4 + 2]) << 8 | UInt32(block[t * 4 + 3])
        }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ SHA256.k[t] &+ w[t]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
    }

    mutating func finalize() -> String {
        let bitLength = length * 8
        var tail: [UInt8] = [0x80]
        while (buffer.count + tail.count) % 64 != 56 { tail.append(0) }
        for k in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(k) * 8))) }
        let saved = length
        update(tail)
        length = saved
        return h.map { v in
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }

    static func hex(_ bytes: some Collection<UInt8>) -> String {
        var s = SHA256()
        s.update(bytes)
        return s.finalize()
    }
}

/// SHA-256 over length-prefixed (uint32 LE) UTF-8 texts, as tools/tokenizer_reference.py computes it.
func textsDigest(_ texts: [String]) -> String {
    var s = SHA256()
    for t in texts {
        let n = UInt32(t.utf8.count)
        s.update([UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)])
        s.update(Array(t.utf8))
    }
    return s.finalize()
}
