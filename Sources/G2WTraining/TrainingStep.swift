import G2W

/// One optimizer step over K micro-batches: zero the gradients, forward and backward each
/// micro-batch (its loss weighted 1/K, so the step's loss is the mean over all its targets),
/// check the loss and the gradient norm are finite, clip, update.
public struct TrainingStep {
    /// What a step did.
    public struct Result: Sendable, Equatable {
        /// Mean cross-entropy over every target of the step.
        public var loss: Double
        /// Gradient norm before clipping.
        public var gradientNorm: Double
        /// The factor the gradients were scaled by (1 when not clipped).
        public var clipScale: Float
    }

    /// Runs step number `index` (for errors). `batches` are (inputs, targets) pairs of B x T ids.
    /// `dropoutSeed` draws the step's dropout masks (micro-batch i uses a seed derived from it and i).
    /// - Throws: ``TrainingError/nonFiniteLoss(step:loss:)`` or
    ///   ``TrainingError/nonFiniteGradient(step:norm:)`` before any parameter changes;
    ///   ``TrainingError/invalidShape(_:)`` for no micro-batch; what the model's `forward` throws
    ///   for a malformed batch.
    public static func run(model: GPT2TrainingModel, optimizer: AdamW, batches: [(inputs: [Int32], targets: [Int32])], learningRate: Float,
                           maxGradientNorm: Double?, index: Int, dropoutSeed: UInt64 = 0) throws -> Result {
        guard !batches.isEmpty else { throw TrainingError.invalidShape("a step needs at least one micro-batch") }
        var loss = 0.0
        let k = Float(batches.count)
        for (i, (x, y)) in batches.enumerated() {
            var seeds = SplitMix64(seed: dropoutSeed &+ UInt64(i))
            guard let l = try model.forward(inputs: x, targets: y, dropoutSeed: seeds.next()) else { continue }
            loss += l / Double(batches.count)
            model.backward(lossScale: 1 / k, accumulate: i > 0)  // the first replaces the last step's gradients
        }
        guard loss.isFinite else { throw TrainingError.nonFiniteLoss(step: index, loss: loss) }
        let norm = GradientClipping.norm(of: model.gradients, context: model.context)
        guard norm.isFinite else { throw TrainingError.nonFiniteGradient(step: index, norm: norm) }
        let scale = GradientClipping.scale(norm: norm, maxNorm: maxGradientNorm)
        try optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: learningRate, gradientScale: scale,
                             context: model.context)
        return Result(loss: loss, gradientNorm: norm, clipScale: scale)
    }
}
