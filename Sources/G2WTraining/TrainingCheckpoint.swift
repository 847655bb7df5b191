import Foundation
import G2W
import G2WFormat

/// What a run needs besides the parameters and the optimizer's moments to continue exactly
/// where it stopped (spec/g2w.md, section 14: the `train.` namespace).
public struct TrainingState: Equatable, Sendable {
    /// Optimizer steps done.
    public var step: Int
    /// Training tokens consumed (targets), all micro-batches of all steps.
    public var tokensSeen: Int
    /// The position in the data: the batcher's state, as JSON.
    public var data: String
    /// The generator of dropout masks and samples (SplitMix64 state).
    public var rngState: UInt64
    /// The run's settings, as JSON (a resumed run checks they are compatible).
    public var hyperparameters: String
    /// The loss history (train and validation), as JSON, for the plot and the log.
    public var history: String
    /// Best validation loss so far (for --keep-best), nil before the first evaluation.
    public var bestValidationLoss: Double?

    /// A state from its parts.
    public init(step: Int, tokensSeen: Int, data: String, rngState: UInt64, hyperparameters: String, history: String, bestValidationLoss: Double?) {
        self.step = step; self.tokensSeen = tokensSeen; self.data = data; self.rngState = rngState
        self.hyperparameters = hyperparameters; self.history = history; self.bestValidationLoss = bestValidationLoss
    }
}

/// A training checkpoint: a GPT-2 `.g2w` file (f32 weights, GPT-2 metadata, tokenizer) that
/// `g2w-run` and `g2w-inspect` open as any model, plus the training state: AdamW's moments as
/// tensors `train.adamw_m.NAME` and `train.adamw_v.NAME`, and `train.*` metadata keys.
public enum TrainingCheckpoint {
    /// The version of the `train.` namespace this code writes and reads.
    public static let formatVersion: UInt64 = 1

    enum Key {
        static let format = "train.format_version", step = "train.step", tokens = "train.tokens_seen", adamStep = "train.adamw_step"
        static let data = "train.data_state", rng = "train.rng_state", hyper = "train.hyperparameters", history = "train.history"
        static let best = "train.best_val_loss"
    }
    static func firstMomentName(_ name: String) -> String { "train.adamw_m." + name }
    static func secondMomentName(_ name: String) -> String { "train.adamw_v." + name }

    /// Writes a checkpoint atomically (replacing `path` if it exists: the previous file stays
    /// whole until the new one is complete).
    public static func write(to path: String, parameters: GPT2ParameterBlock, optimizer: AdamW, state: TrainingState, tokenizer: G2WMetadata) throws {
        var meta = G2WMetadata()
        meta[Key.format] = .uint(formatVersion)
        meta[Key.step] = .uint(UInt64(state.step))
        meta[Key.tokens] = .uint(UInt64(state.tokensSeen))
        meta[Key.adamStep] = .uint(UInt64(optimizer.step))
        meta[Key.data] = .string(state.data)
        meta[Key.rng] = .uint(state.rngState)
        meta[Key.hyper] = .string(state.hyperparameters)
        meta[Key.history] = .string(state.history)
        if let b = state.bestValidationLoss { meta[Key.best] = .float(b) }
        var extra: [GPT2ModelWriter.ExtraTensor] = []
        for e in parameters.entries {
            extra.append(.init(name: firstMomentName(e.name), shape: e.shape, values: UnsafeBufferPointer(optimizer.firstMoment.tensor(named: e.name)!)))
        }
        for e in parameters.entries {
            extra.append(.init(name: secondMomentName(e.name), shape: e.shape, values: UnsafeBufferPointer(optimizer.secondMoment.tensor(named: e.name)!)))
        }
        try GPT2ModelWriter.write(parameters, to: path, dtype: .f32, tokenizer: tokenizer, metadata: meta, extraTensors: extra, writer: "g2w-train",
                                  overwrite: true)
    }

    /// A checkpoint read back: f32 parameters, the optimizer with its moments and step, the state.
    public struct Loaded {
        /// The weights, copied into a writable f32 block.
        public var parameters: GPT2ParameterBlock
        /// AdamW with the checkpoint's moments and step, and the hyperparameters given to `read`.
        public var optimizer: AdamW
        /// The `train.*` state: step, tokens seen, data position, generator, settings, history.
        public var state: TrainingState
        /// The file's `tokenizer.*` entries, to carry into the next checkpoints.
        public var tokenizer: G2WMetadata
        /// The checkpoint opened as a model (the mapped file the parameters were copied from).
        public var model: GPT2Model
    }

    /// An error reading a checkpoint (the path and what is wrong).
    public struct ReadError: Error, Equatable, CustomStringConvertible {
        /// The checkpoint's path.
        public var path: String
        /// What is wrong (a missing or mistyped key or tensor, or why the file did not open).
        public var reason: String
        /// The message: "PATH: REASON".
        public var description: String { "\(path): \(reason)" }
    }

    /// Reads a checkpoint written by ``write(to:parameters:optimizer:state:tokenizer:)``.
    /// `hyperparameters` are the AdamW settings to continue with (they are part of the run's
    /// settings, compared by the caller).
    /// - Throws: ``ReadError`` if the file does not open as a model or lacks (or mistypes) a
    ///   `train.*` key or moment tensor; ``AllocationError`` if the blocks cannot be allocated.
    public static func read(_ path: String, hyperparameters: AdamW.Hyperparameters) throws -> Loaded {
        let model: GPT2Model
        do { model = try GPT2Model(path: path) } catch {
            // An error that already names the file (a failed open) gives the reason after it.
            let text = "\(error)"
            throw ReadError(path: path, reason: text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text)
        }
        let m = model.file.metadata
        func fail(_ s: String) -> ReadError { ReadError(path: path, reason: s) }
        guard let v = m[Key.format] else {
            throw fail("not a g2w-train checkpoint (no \(Key.format) key: a model file without training state, to fine-tune rather than resume)")
        }
        guard v.uintValue == formatVersion else { throw fail("\(Key.format) is \(v), this g2w-train reads version \(formatVersion)") }
        func uint(_ k: String) throws -> Int {
            guard let x = m[k] else { throw fail("metadata key '\(k)' is missing") }
            do { return try x.count() } catch { throw fail("metadata key '\(k)': \(error)") }
        }
        func string(_ k: String) throws -> String {
            guard let x = m[k] else { throw fail("metadata key '\(k)' is missing") }
            guard let s = x.stringValue else { throw fail("metadata key '\(k)': expected string, found \(x.typeName)") }
            return s
        }
        let block = try GPT2ParameterBlock(copying: model)
        let optimizer = try AdamW(layoutOf: block, hyperparameters: hyperparameters)
        for e in block.entries {
            for (name, target) in [(firstMomentName(e.name), optimizer.firstMoment), (secondMomentName(e.name), optimizer.secondMoment)] {
                guard let t = model.file.tensor(named: name) else { throw fail("tensor '\(name)' is missing") }
                guard t.shape == e.shape else { throw fail("tensor '\(name)' has shape \(t.shape), expected \(e.shape)") }
                guard t.dtype == .f32 else { throw fail("tensor '\(name)' has dtype \(t.dtype), expected f32") }
                target.tensor(named: e.name)!.baseAddress!.update(from: t.baseAddress.assumingMemoryBound(to: Float.self), count: e.count)
            }
        }
        optimizer.step = try uint(Key.adamStep)
        var best: Double?
        if let b = m[Key.best] {
            guard let d = b.floatValue else { throw fail("metadata key '\(Key.best)': expected f64, found \(b.typeName)") }
            best = d
        }
        guard let rng = m[Key.rng]?.uintValue else { throw fail("metadata key '\(Key.rng)' is missing or not u64") }
        let state = TrainingState(step: try uint(Key.step), tokensSeen: try uint(Key.tokens), data: try string(Key.data), rngState: rng,
                                  hyperparameters: try string(Key.hyper), history: try string(Key.history), bestValidationLoss: best)
        return Loaded(parameters: block, optimizer: optimizer, state: state, tokenizer: GPT2ModelWriter.tokenizerMetadata(of: model.file), model: model)
    }
}
