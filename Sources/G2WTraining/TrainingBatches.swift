import Foundation

/// B windows side by side, as ``GPT2TrainingModel/forward(inputs:targets:dropoutSeed:)`` takes them:
/// B x N ids, sequence after sequence.
public typealias TokenBatch = (inputs: [Int32], targets: [Int32])

/// Micro-batches of B training windows, epoch after epoch.
///
/// Rules:
/// - Each epoch visits the windows in an order: with `shuffle: false` the windows' own order
///   0, 1, ..., n-1; with `shuffle: true` that list shuffled by Fisher-Yates with SplitMix64:
///   ```swift
///   var order = Array(0..<n)
///   for i in stride(from: n - 1, to: 0, by: -1) {
///       let j = Int(rng.next() % UInt64(i + 1))
///       order.swapAt(i, j)
///   }
///   ```
///   (n - 1 draws; the modulo's bias, below 2^-40 for any realistic n, is kept for simplicity.)
///   `rng` is `SplitMix64(seed: seed)` before epoch 0's shuffle and continues from one epoch to
///   the next (epoch e + 1 shuffles the identity again, with the generator as epoch e left it).
/// - Micro-batch j of an epoch holds windows `order[jB], ..., order[jB + B - 1]`, inputs and targets
///   each B x N ids, window after window. There are `n / B` (rounded down) batches per epoch; the
///   last `n % B` windows of each epoch's order are dropped. After the last batch the next epoch
///   starts.
/// - ``state`` is everything needed to continue: a batcher restored from it yields exactly the
///   batches the original would have yielded next.
public struct TrainingBatcher: Sendable {
    /// Where a batcher is, as a small value (for checkpoints; Codable).
    public struct State: Sendable, Equatable, Codable {
        /// The current epoch, from 0.
        public var epoch: Int
        /// The next micro-batch to yield within the epoch, in `0..<batchesPerEpoch`.
        public var batchInEpoch: Int
        /// SplitMix64's state before the current epoch's shuffle (it rebuilds the epoch's order and
        /// the generator after it). Unused, the seed, when not shuffling.
        public var epochRandomState: UInt64
        /// The number of windows the state was taken with (checked on restore).
        public var windowCount: Int
        /// The batch size (B) the state was taken with.
        public var batchSize: Int
        /// Whether the epochs are shuffled.
        public var shuffles: Bool
    }

    /// The windows batched.
    public let windows: TokenWindows
    /// B: windows per micro-batch.
    public let batchSize: Int
    /// Whether each epoch's order is shuffled.
    public let shuffles: Bool
    /// The current epoch, from 0.
    public private(set) var epoch: Int
    /// The index within the epoch of the micro-batch ``nextBatch()`` returns next.
    public private(set) var batchInEpoch: Int
    /// The current epoch's order of the windows.
    public private(set) var order: [Int]
    private var epochRandomState: UInt64
    private var random: SplitMix64  // after the current epoch's shuffle

    /// A batcher at the start of epoch 0 over `windows`, B = `batchSize`, shuffled with `seed`
    /// when `shuffle` is true.
    /// - Throws: ``TrainingDataError/invalidParameter(_:)`` for B below 1,
    ///   ``TrainingDataError/fewerWindowsThanBatch(source:windows:batchSize:)`` when there are fewer windows than B.
    public init(windows: TokenWindows, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0) throws {
        try self.init(windows: windows, restoring: State(epoch: 0, batchInEpoch: 0, epochRandomState: seed, windowCount: windows.count,
                                                         batchSize: batchSize, shuffles: shuffle))
    }

    /// A batcher that continues from `state`, taken from a batcher over the same windows.
    /// - Throws: the errors of ``init(windows:batchSize:shuffle:seed:)``, and
    ///   ``TrainingDataError/stateMismatch(_:)`` when the state's window count differs or its
    ///   position is not within an epoch.
    public init(windows: TokenWindows, restoring state: State) throws {
        guard state.batchSize >= 1 else { throw TrainingDataError.invalidParameter("the batch size is \(state.batchSize); it must be at least 1") }
        let n = windows.count
        guard n >= state.batchSize else {
            throw TrainingDataError.fewerWindowsThanBatch(source: windows.source, windows: n, batchSize: state.batchSize)
        }
        guard state.windowCount == n else {
            throw TrainingDataError.stateMismatch("the state was taken over \(state.windowCount) windows; these data have \(n)")
        }
        let perEpoch = n / state.batchSize
        guard state.epoch >= 0, state.batchInEpoch >= 0, state.batchInEpoch < perEpoch else {
            throw TrainingDataError.stateMismatch("epoch \(state.epoch), batch \(state.batchInEpoch) is not a position (\(perEpoch) batches per epoch)")
        }
        self.windows = windows
        batchSize = state.batchSize
        shuffles = state.shuffles
        epoch = state.epoch
        batchInEpoch = state.batchInEpoch
        epochRandomState = state.epochRandomState
        random = SplitMix64(seed: state.epochRandomState)
        order = Array(0..<n)
        if shuffles { Self.shuffle(&order, with: &random) }
    }

    /// Where the batcher is; ``init(windows:restoring:)`` continues from it.
    public var state: State {
        State(epoch: epoch, batchInEpoch: batchInEpoch, epochRandomState: epochRandomState, windowCount: order.count,
              batchSize: batchSize, shuffles: shuffles)
    }

    /// Full micro-batches per epoch: windows / B, rounded down.
    public var batchesPerEpoch: Int { order.count / batchSize }

    /// Tokens per micro-batch: B x N (inputs; as many targets).
    public var tokensPerBatch: Int { batchSize * windows.context }

    /// The next micro-batch; after an epoch's last, the next epoch begins (reshuffled).
    public mutating func nextBatch() -> TokenBatch {
        let n = windows.context
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(batchSize * n)
        targets.reserveCapacity(batchSize * n)
        for b in 0..<batchSize {
            let w = windows.window(order[batchInEpoch * batchSize + b])
            inputs.append(contentsOf: w.inputs)
            targets.append(contentsOf: w.targets)
        }
        batchInEpoch += 1
        if batchInEpoch == batchesPerEpoch {
            epoch += 1
            batchInEpoch = 0
            if shuffles {
                epochRandomState = random.state
                for i in order.indices { order[i] = i }
                Self.shuffle(&order, with: &random)
            }
        }
        return (inputs, targets)
    }

    /// Fisher-Yates as documented on the type.
    static func shuffle(_ order: inout [Int], with rng: inout SplitMix64) {
        guard order.count > 1 else { return }
        for i in Swift.stride(from: order.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
    }
}

/// The validation micro-batches: windows (built with stride N, the default) in order, never
/// shuffled; batch j holds windows jB ..< jB + B. With `evaluationBatches` K > 0 the first
/// min(K, windows / B) batches; with K = 0 every full batch, windows / B of them. Either way the
/// windows after the last full batch (fewer than B) are dropped: the model runs only full batches.
/// The same batches every time, so successive evaluations compare.
public struct ValidationBatches: RandomAccessCollection, Sendable {
    /// The windows the batches are cut from.
    public let windows: TokenWindows
    /// B: windows per batch.
    public let batchSize: Int
    /// The first batch's index: 0.
    public let startIndex = 0
    /// The number of batches.
    public let endIndex: Int

    /// The batches of `windows` with B = `batchSize` and K = `evaluationBatches` (0: all).
    /// - Throws: ``TrainingDataError/invalidParameter(_:)`` for B below 1 or K below 0,
    ///   ``TrainingDataError/fewerWindowsThanBatch(source:windows:batchSize:)`` when not one full batch exists.
    public init(windows: TokenWindows, batchSize: Int, evaluationBatches: Int) throws {
        guard batchSize >= 1 else { throw TrainingDataError.invalidParameter("the batch size is \(batchSize); it must be at least 1") }
        guard evaluationBatches >= 0 else {
            throw TrainingDataError.invalidParameter("the number of evaluation batches is \(evaluationBatches); it must be at least 0 (0: all)")
        }
        let full = windows.count / batchSize
        guard full >= 1 else { throw TrainingDataError.fewerWindowsThanBatch(source: windows.source, windows: windows.count, batchSize: batchSize) }
        self.windows = windows
        self.batchSize = batchSize
        endIndex = evaluationBatches == 0 ? full : Swift.min(evaluationBatches, full)
    }

    /// Batch `j`: windows jB ..< jB + B, B x N inputs and targets.
    public subscript(j: Int) -> TokenBatch {
        precondition(j >= startIndex && j < endIndex, "validation batch \(j) of \(endIndex)")
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(batchSize * windows.context)
        targets.reserveCapacity(batchSize * windows.context)
        for k in j * batchSize ..< (j + 1) * batchSize {
            let w = windows.window(k)
            inputs.append(contentsOf: w.inputs)
            targets.append(contentsOf: w.targets)
        }
        return (inputs, targets)
    }
}

/// The learning rate of each optimizer step, in Double (convert to Float for the optimizer).
public enum LearningRateSchedule: Sendable, Equatable {
    /// The same rate at every step.
    case constant(Double)
    /// nanoGPT's `get_lr`, for the 0-based step `it`:
    /// ```python
    /// if it < warmup: return rate * (it + 1) / (warmup + 1)
    /// if it > decay: return min_rate
    /// ratio = (it - warmup) / (decay - warmup)
    /// return min_rate + 0.5 * (1 + cos(pi * ratio)) * (rate - min_rate)
    /// ```
    /// When `decaySteps <= warmupSteps` there is no cosine phase: every step from `warmupSteps` on
    /// gets `minRate` (nanoGPT gives the same wherever it is defined; at it = warmup = decay it
    /// divides by zero).
    case warmupCosine(rate: Double, minRate: Double, warmupSteps: Int, decaySteps: Int)

    /// The rate of step `step` (0-based).
    public func rate(atStep step: Int) -> Double {
        switch self {
        case let .constant(r):
            return r
        case let .warmupCosine(rate, minRate, warmup, decay):
            if step < warmup { return rate * Double(step + 1) / Double(warmup + 1) }
            if step > decay || decay <= warmup { return minRate }
            let ratio = Double(step - warmup) / Double(decay - warmup)
            let coefficient = 0.5 * (1.0 + cos(Double.pi * ratio))
            return minRate + coefficient * (rate - minRate)
        }
    }
}
