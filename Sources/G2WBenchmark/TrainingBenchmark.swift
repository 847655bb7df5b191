import CG2W
import Dispatch
import Foundation
import G2W
import G2WTraining

/// Training speed on a given shape, measured in one run with the machine's peak FMA rate:
/// ms per step (forward + backward + clipping + AdamW), tokens/s, FLOP/s and its share of peak,
/// resident memory.
public enum TrainingBenchmark {
    /// A model shape and batch to measure.
    public struct Shape: Sendable, Equatable {
        /// A label for reports ("gpt2-124M").
        public var name: String
        /// The model's hyperparameters (trained with a tied head).
        public var configuration: GPT2Configuration
        /// Sequences per step (B).
        public var batchSize: Int
        /// Tokens per sequence (T), at most n_ctx.
        public var sequenceLength: Int
        /// A shape from its parts.
        public init(name: String, configuration: GPT2Configuration, batchSize: Int, sequenceLength: Int) {
            self.name = name; self.configuration = configuration; self.batchSize = batchSize; self.sequenceLength = sequenceLength
        }
        /// GPT-2 124M at B = 4, T = 64 (llm.c's CPU default).
        public static let gpt2 = Shape(name: "gpt2-124M", configuration: GPT2Configuration(layerCount: 12, headCount: 12, embeddingSize: 768,
                                       contextLength: 1024, vocabularySize: 50257), batchSize: 4, sequenceLength: 64)
        /// The Shakespeare model of ../shared/models/shakespeare (4 layers, 4 heads, 256 wide) at B = 16, T = 128.
        public static let shakespeare = Shape(name: "shakespeare-4L256", configuration: GPT2Configuration(layerCount: 4, headCount: 4, embeddingSize: 256,
                                              contextLength: 256, vocabularySize: 50257), batchSize: 16, sequenceLength: 128)
    }

    /// What ``run(_:steps:context:peakFLOPS:)`` measured, and the figures derived from it.
    public struct Result: Sendable {
        /// The shape measured.
        public var shape: Shape
        /// Parameters of the model (floats in its block).
        public var parameterCount: Int
        /// Threads the steps ran on (the context's, the caller included).
        public var threads: Int
        /// Seconds per step, each measured step.
        public var stepSeconds: [Double]
        /// FLOPs of one step: 6 x (matrix parameters, LM head included) x tokens + attention
        /// (6 x L x B x T x (T + 1) x E: the causal products, forward and backward).
        public var flopsPerStep: Double
        /// The machine's peak FMA rate given to ``run(_:steps:context:peakFLOPS:)``, in FLOP/s.
        public var peakFLOPS: Double
        /// The process's resident memory (VmRSS) after the steps, in bytes (0 where /proc is unavailable).
        public var residentBytes: Int
        /// Milliseconds of the forward pass in one extra step timed by part.
        public var forwardMilliseconds: Double
        /// Milliseconds of the backward pass in that step.
        public var backwardMilliseconds: Double
        /// Milliseconds of gradient clipping and the AdamW update in that step.
        public var optimizerMilliseconds: Double

        /// Tokens trained on per step: B x T.
        public var tokensPerStep: Int { shape.batchSize * shape.sequenceLength }
        /// Mean seconds per measured step (0 with no step).
        public var meanSeconds: Double { stepSeconds.reduce(0, +) / Double(max(1, stepSeconds.count)) }
        /// Sample standard deviation of the step times, in seconds (0 with fewer than two steps).
        public var sdSeconds: Double {
            let m = meanSeconds
            return stepSeconds.count > 1 ? (stepSeconds.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(stepSeconds.count - 1)).squareRoot() : 0
        }
        /// Training throughput: tokens per second at the mean step time.
        public var tokensPerSecond: Double { Double(tokensPerStep) / meanSeconds }
        /// Achieved FLOP/s: ``flopsPerStep`` / ``meanSeconds``.
        public var flops: Double { flopsPerStep / meanSeconds }
        /// ``flops`` as a fraction of ``peakFLOPS`` (normally below 1).
        public var peakFraction: Double { flops / peakFLOPS }
    }

    /// FLOPs of one training step of `s`: 6 x (matrix parameters, LM head included) x tokens +
    /// 6 x L x B x T x (T + 1) x E for attention.
    public static func flopsPerStep(_ s: Shape) -> Double {
        let c = s.configuration, E = Double(c.embeddingSize), I = Double(c.innerSize), L = Double(c.layerCount)
        let matrix = L * (4 * E * E + 2 * E * I) + Double(c.vocabularySize) * E
        let B = Double(s.batchSize), T = Double(s.sequenceLength)
        return 6 * matrix * B * T + 6 * L * B * T * (T + 1) * E
    }

    /// Initialises the shape (GPT-2 init, seed 1), runs one warm-up step, then `steps` timed steps
    /// on random tokens, then one step timed by part.
    public static func run(_ shape: Shape, steps: Int, context: ComputeContext, peakFLOPS: Double) throws -> Result {
        let block = try GPT2ParameterBlock(configuration: shape.configuration, untiedHead: false)
        GPT2Initialization.initialize(block, seed: 1)
        let model = try GPT2TrainingModel(parameters: block, batchSize: shape.batchSize, sequenceLength: shape.sequenceLength, context: context)
        let optimizer = try AdamW(layoutOf: block)
        var rng = SplitMix64(seed: 2)
        let n = shape.batchSize * shape.sequenceLength, V = UInt64(shape.configuration.vocabularySize)
        func batch() -> (inputs: [Int32], targets: [Int32]) {
            ((0..<n).map { _ in Int32(rng.next() % V) }, (0..<n).map { _ in Int32(rng.next() % V) })
        }
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
        var times: [Double] = []
        for i in 0...steps {
            let b = batch()
            let t0 = now()
            _ = try TrainingStep.run(model: model, optimizer: optimizer, batches: [b], learningRate: 1e-4, maxGradientNorm: 1, index: i)
            if i > 0 { times.append(now() - t0) }
        }
        // One more step, timed by part.
        let b = batch()
        let t0 = now()
        _ = try model.forward(inputs: b.inputs, targets: b.targets)
        let t1 = now()
        model.backward(accumulate: false)
        let t2 = now()
        let norm = GradientClipping.norm(of: model.gradients, context: context)
        try optimizer.update(parameters: block, gradients: model.gradients, learningRate: 1e-4,
                             gradientScale: GradientClipping.scale(norm: norm, maxNorm: 1), context: context)
        let t3 = now()
        return Result(shape: shape, parameterCount: block.count, threads: context.threads, stepSeconds: times, flopsPerStep: flopsPerStep(shape),
                      peakFLOPS: peakFLOPS, residentBytes: Benchmark.residentMemory().0, forwardMilliseconds: (t1 - t0) * 1e3,
                      backwardMilliseconds: (t2 - t1) * 1e3, optimizerMilliseconds: (t3 - t2) * 1e3)
    }
}
