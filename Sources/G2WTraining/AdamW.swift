import CG2W
import Foundation
import G2W

/// AdamW with PyTorch's semantics (`torch.optim.AdamW`, decoupled weight decay), over the flat
/// blocks of a ``GPT2ParameterBlock``:
///
///     p -= lr * wd * p
///     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
///     p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
///
/// Weight decay applies to tensors of rank >= 2 (wte, wpe, every weight matrix, an untied head)
/// and not to biases and LayerNorm parameters (nanoGPT's grouping).
public final class AdamW {
    /// The optimizer's constants (the learning rate is an argument of each update).
    public struct Hyperparameters: Sendable, Equatable {
        /// Decay rate of the first moment (b1). Default 0.9.
        public var beta1: Float = 0.9
        /// Decay rate of the second moment (b2). Default 0.95 (GPT-2/nanoGPT; PyTorch's is 0.999).
        public var beta2: Float = 0.95
        /// Added to the denominator's square root for stability (eps). Default 1e-8.
        public var epsilon: Float = 1e-8
        /// Decoupled weight decay (wd), applied to tensors of rank >= 2 only. Default 0.1.
        public var weightDecay: Float = 0.1
        /// Hyperparameters with the given values (the defaults: 0.9, 0.95, 1e-8, 0.1).
        public init(beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8, weightDecay: Float = 0.1) {
            self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        }
    }

    /// The constants the next update uses (they may change between updates).
    public var hyperparameters: Hyperparameters
    /// First moments (m), laid out as the parameters.
    public let firstMoment: GPT2ParameterBlock
    /// Second moments (v), laid out as the parameters.
    public let secondMoment: GPT2ParameterBlock
    /// Updates done so far (t in the bias corrections of the next update is `step + 1`).
    public var step = 0

    /// An optimizer for blocks laid out as `parameters`, with zero moments and ``step`` 0.
    /// - Throws: ``AllocationError`` if the two moment blocks cannot be allocated.
    public init(layoutOf parameters: GPT2ParameterBlock, hyperparameters: Hyperparameters = Hyperparameters()) throws {
        self.hyperparameters = hyperparameters
        firstMoment = try GPT2ParameterBlock(sameLayoutAs: parameters, purpose: "AdamW first moments")
        secondMoment = try GPT2ParameterBlock(sameLayoutAs: parameters, purpose: "AdamW second moments")
    }

    /// Whether a tensor of this shape is decayed.
    public static func decays(shape: [Int]) -> Bool { shape.count >= 2 }

    /// One update of `parameters` with `gradientScale` x `gradients` (the clipping coefficient,
    /// or 1). Increments ``step`` first.
    /// - Throws: ``TrainingError/layoutMismatch(_:)`` if the parameters, gradients and moments
    ///   do not share a layout (nothing is changed then).
    public func update(parameters: GPT2ParameterBlock, gradients: GPT2ParameterBlock, learningRate: Float, gradientScale: Float = 1,
                       context: ComputeContext) throws {
        guard parameters.entries == firstMoment.entries, gradients.entries == firstMoment.entries else {
            throw TrainingError.layoutMismatch("the parameters, gradients and optimizer state have different layouts")
        }
        step += 1
        let h = hyperparameters
        let bias1 = 1 - pow(Double(h.beta1), Double(step)), bias2Sqrt = (1 - pow(Double(h.beta2), Double(step))).squareRoot()
        for e in parameters.entries {
            let wd = Self.decays(shape: e.shape) ? h.weightDecay : 0
            g2w_adamw(context.pool, parameters.storage.base + e.offset, gradients.storage.base + e.offset, firstMoment.storage.base + e.offset,
                      secondMoment.storage.base + e.offset, e.count, learningRate, h.beta1, h.beta2, h.epsilon, wd, gradientScale, bias1, bias2Sqrt)
        }
    }
}

/// Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`: the L2 norm of all
/// gradients, and the factor to scale them by, `max_norm / (norm + 1e-6)` when that is below 1.
public enum GradientClipping {
    /// The L2 norm of every gradient together (summed in double, in a fixed order).
    public static func norm(of gradients: GPT2ParameterBlock, context: ComputeContext) -> Double {
        g2w_sum_squares(context.pool, gradients.storage.base, gradients.count).squareRoot()
    }

    /// The scale for `norm` under `maxNorm` (nil: no clipping): min(1, maxNorm / (norm + 1e-6)).
    public static func scale(norm: Double, maxNorm: Double?) -> Float {
        guard let maxNorm else { return 1 }
        let coef = maxNorm / (norm + 1e-6)
        return coef < 1 ? Float(coef) : 1
    }
}
