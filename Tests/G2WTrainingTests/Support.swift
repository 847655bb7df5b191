import CG2W
import Foundation
import G2W
import G2WTraining
import XCTest

/// SplitMix64: a small seeded generator for test data.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func uniform() -> Float { Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// A block with random values: matrices ~ U(-a, a) with a = 0.1 (larger than GPT-2's 0.02 so
/// the activations are far from trivial), LayerNorm weights around 1, biases small.
func randomBlock(_ c: GPT2Configuration, untied: Bool, seed: UInt64) throws -> GPT2ParameterBlock {
    let block = try GPT2ParameterBlock(configuration: c, untiedHead: untied)
    var r = TestRandom(seed: seed)
    for e in block.entries {
        let t = block.tensor(named: e.name)!
        let isNormWeight = e.name.hasSuffix("ln_1.weight") || e.name.hasSuffix("ln_2.weight") || e.name == "ln_f.weight"
        for i in 0..<t.count {
            t[i] = isNormWeight ? 1 + 0.2 * r.uniform() : e.shape.count == 2 ? 0.1 * r.uniform() : 0.05 * r.uniform()
        }
    }
    return block
}

func randomTokens(_ n: Int, vocabulary: Int, seed: UInt64) -> [Int32] {
    var r = TestRandom(seed: seed)
    return (0..<n).map { _ in Int32(r.int(vocabulary)) }
}

/// max |a - b| / max |b|, the tolerance measure of the issue (0 when b is all zeros and a equals it).
func relativeToMax<A: Collection, B: Collection>(_ a: A, _ b: B) -> Double where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    precondition(a.count == b.count)
    var diff = 0.0, mx = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(Double(x) - Double(y)))
        mx = max(mx, abs(Double(y)))
    }
    return mx == 0 ? diff : diff / mx
}

/// Runs `body` at every kernel level the CPU has (0 portable, 1 AVX2, 2 AVX-512), then restores dispatch.
func atEveryLevel(_ body: (Int) throws -> Void) rethrows {
    defer { _ = g2w_force_isa(-1) }
    var seen = Set<Int>()
    for level in 0...2 {
        let got = Int(g2w_force_isa(Int32(level)))
        guard seen.insert(got).inserted else { continue }
        try body(got)
    }
}
