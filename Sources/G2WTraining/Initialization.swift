import Foundation
import G2W

/// GPT-2's initialisation (as in OpenAI's code, nanoGPT and llm.c): weight matrices and both
/// embeddings N(0, 0.02); the output projections of the residual branches (`attn.c_proj.weight`,
/// `mlp.c_proj.weight`) N(0, 0.02 / sqrt(2 n_layer)); LayerNorm weights 1, biases 0. Seeded and
/// reproducible: the same seed gives the same bits on every machine.
public enum GPT2Initialization {
    /// Overwrites every tensor of `block` with GPT-2's initial values, drawn from a
    /// ``SplitMix64`` seeded with `seed` in layout order.
    public static func initialize(_ block: GPT2ParameterBlock, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let residualScale = 1 / (2 * Double(block.configuration.layerCount)).squareRoot()
        for e in block.entries {
            let t = block.tensor(named: e.name)!
            if e.shape.count == 2 {
                let std = 0.02 * (e.name.hasSuffix("c_proj.weight") ? residualScale : 1)
                for i in 0..<t.count { t[i] = Float(rng.normal() * std) }
            } else {
                let isNormWeight = e.name.hasSuffix("ln_1.weight") || e.name.hasSuffix("ln_2.weight") || e.name == GPT2Tensors.finalNormWeight
                for i in 0..<t.count { t[i] = isNormWeight ? 1 : 0 }
            }
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator whose whole state is
/// one UInt64 (easy to checkpoint).
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    /// The whole state: save it to resume the sequence exactly where it was.
    public var state: UInt64
    /// A generator starting from `seed` (any value, 0 included).
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits (advances ``state``).
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    /// Standard normal (Box-Muller, one value per call).
    public mutating func normal() -> Double {
        let u1 = max(unit(), .leastNonzeroMagnitude), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
