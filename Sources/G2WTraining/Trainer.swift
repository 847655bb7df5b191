import CG2W
import Dispatch
import Foundation
import G2W
import G2WFormat
import G2WTokenizer

/// Everything a training run is made of. Codable: a checkpoint stores it (`train.hyperparameters`)
/// and a resumed run continues with it.
public struct TrainerConfiguration: Codable, Equatable, Sendable {
    // Model
    /// Fine-tune this `.g2w` model (f16 or f32; trained in f32). nil: train from scratch.
    public var initModel: String?
    /// From scratch: GPT-2's shape (n_layer, n_head, n_embd, n_ctx); vocabulary 50,257.
    public var layerCount = 4, headCount = 4, embeddingSize = 256, contextLength = 256
    /// From scratch: a separate LM head instead of one tied to `wte`.
    public var untiedHead = false
    // Data
    /// Training files: UTF-8 text, or llm.c token files (named `*.bin`, or starting with llm.c's magic number).
    public var trainFiles: [String] = []
    /// Validation files (same kinds). Empty: the last `validationSplit` of the training text.
    public var validationFiles: [String] = []
    /// Without ``validationFiles``: the fraction of the training data held out for validation,
    /// its last part (of the text, or of the tokens of llm.c files). Default 0.1.
    public var validationSplit = 0.1
    /// N, tokens per window: the training sequence length (default min(256, n_ctx); at most n_ctx).
    public var windowLength: Int?
    /// S, tokens between the starts of consecutive training windows (default N: no overlap).
    public var stride: Int?
    /// B, windows per micro-batch. Default 16.
    public var batchSize = 16
    /// K, micro-batches per optimizer step (gradient accumulation). Default 1.
    public var gradientAccumulation = 1
    /// Passes over the training windows (default 1); ignored when ``maxSteps`` is set.
    public var epochs: Int?
    /// Optimizer steps of the whole run, resumed steps included; when set, overrides ``epochs``.
    public var maxSteps: Int?
    /// Visits the training windows in a new seeded order each epoch (false: in order). Default true.
    public var shuffle = true
    // Optimizer and schedule
    /// The peak learning rate (the rate at every step with the constant schedule). Default 1e-3.
    public var learningRate = 1e-3
    /// The rate the cosine decays to. Default learningRate / 10.
    public var minLearningRate: Double?
    /// Steps of linear warmup to ``learningRate`` (cosine schedule). Default 100.
    public var warmupSteps = 100
    /// The step at which the cosine reaches ``minLearningRate``. Default: the run's last step.
    public var decaySteps: Int?
    /// "cosine" (nanoGPT's warmup + cosine) or "constant".
    public var schedule = "cosine"
    /// AdamW's weight decay, b1, b2 and eps (``AdamW/Hyperparameters``). Defaults 0.1, 0.9, 0.95, 1e-8.
    public var weightDecay = 0.1, beta1 = 0.9, beta2 = 0.95, epsilon = 1e-8
    /// Global-norm clipping; 0 turns it off.
    public var gradientClip = 1.0
    /// Dropout probability in [0, 1) (``GPT2TrainingModel/dropout``); 0 (the default) is none.
    public var dropout = 0.0
    // Evaluation, samples, logs, checkpoints
    /// Every N steps (0: only at the end); K validation batches (0: every validation window).
    public var evalInterval = 100, evalIters = 10
    /// Every N steps (0: only at each epoch's end), `sampleTokens` tokens continuing `samplePrompt`.
    public var sampleInterval = 0, sampleTokens = 64
    /// The text samples continue (an empty one starts from `<|endoftext|>`). Default a newline.
    public var samplePrompt = "\n"
    /// Sampling of the samples: temperature 0 = greedy (the default).
    public var sampleTemperature = 0.0, sampleTopK = 40, sampleTopP = 0.95
    /// Every N steps a step line goes to ``logFile`` (the last step's always does); 0: none. Default 10.
    public var logInterval = 10
    /// JSON lines, one object per logged step and per evaluation.
    public var logFile: String?
    /// Where checkpoints and `loss.svg` are written (created if needed). Default "out".
    public var outputDirectory = "out"
    /// Every N steps (0: only at the end and on a stop signal).
    public var saveInterval = 0
    /// Keep the last N `ckpt-*.g2w` checkpoints (0: all). Default 3.
    public var keep = 3
    /// Also keep the checkpoint with the best validation loss so far as `best.g2w` (only with
    /// validation data). Default false.
    public var keepBest = false
    /// Seeds the initialization from scratch, the shuffles and the dropout masks. Default 1337.
    public var seed: UInt64 = 1337
    /// Worker threads (nil: the number of active processors).
    public var threads: Int?

    /// The defaults above: a 4-layer, 4-head, 256-wide model from scratch and no data (set
    /// ``trainFiles``).
    public init() {}
}

/// What the trainer reports as it goes.
public enum TrainerEvent: Sendable {
    /// The run is set up: model, data and plan.
    case started(TrainerPlan)
    /// A step is done (every step; logging decides which to show).
    case step(StepRecord)
    /// An evaluation: before the first step of a new run (when evaluating at intervals), every
    /// ``TrainerConfiguration/evalInterval`` steps, and at the end (unless a signal stopped the run).
    case evaluation(EvaluationRecord)
    /// A sample of the model after `step` steps: the prompt and its continuation (only for a
    /// model with a tokenizer).
    case sample(step: Int, text: String)
    /// A checkpoint written at `path` after `step` steps; `reason` says why (the interval, the
    /// end of the run, a stop signal, a best validation loss).
    case checkpoint(step: Int, path: String, reason: String)
    /// A message for the user (resuming, warnings).
    case note(String)
}

/// A run's set-up, reported once by ``TrainerEvent/started(_:)``.
public struct TrainerPlan: Sendable {
    /// Parameters of the model (floats in its block).
    public var parameterCount: Int
    /// The model's hyperparameters.
    public var configuration: GPT2Configuration
    /// Tokens of training data, and of validation data.
    public var trainTokens: Int, validationTokens: Int
    /// Training windows, and validation batches per evaluation (0: no validation data).
    public var trainWindows: Int, validationBatches: Int
    /// Micro-batches in one epoch: training windows / B, rounded down.
    public var batchesPerEpoch: Int
    /// The step count the run ends at (resumed steps included).
    public var totalSteps: Int
    /// Steps already done: 0 for a new run, the checkpoint's step when resuming.
    public var firstStep: Int
    /// Training tokens per optimizer step: K x B x N.
    public var tokensPerStep: Int
    /// Threads the run computes on.
    public var threads: Int
}

/// One optimizer step, reported by ``TrainerEvent/step(_:)``.
public struct StepRecord: Codable, Sendable, Equatable {
    /// Steps done after this one (1-based).
    public var step: Int
    /// The batcher's epoch after the step (from 0; it moves on after an epoch's last batch).
    public var epoch: Int
    /// Mean training cross-entropy of the step's micro-batches, in nats.
    public var loss: Double
    /// The learning rate the step used.
    public var learningRate: Double
    /// The global L2 norm of the gradients, before clipping.
    public var gradientNorm: Double
    /// Wall time of the step (forward, backward, clipping, update), in milliseconds.
    public var milliseconds: Double
    /// The step's tokens over its wall time.
    public var tokensPerSecond: Double
    /// Training tokens consumed by the run after this step, resumed steps included.
    public var tokensSeen: Int
    /// Estimated seconds to the end of the run, at the rate of the recent steps.
    public var etaSeconds: Double
}

/// One evaluation, reported by ``TrainerEvent/evaluation(_:)`` (and written to the log file, if any).
public struct EvaluationRecord: Codable, Sendable, Equatable {
    /// Steps done when it ran.
    public var step: Int
    /// Training tokens consumed by then.
    public var tokensSeen: Int
    /// Mean loss, in nats, over fixed training batches (the first ``TrainerConfiguration/evalIters``
    /// batches of the windows in order; 10 when that is 0).
    public var trainLoss: Double
    /// Mean loss, in nats, over the validation batches; the training loss when there is no
    /// validation data.
    public var validationLoss: Double
    /// exp(``validationLoss``).
    public var validationPerplexity: Double { exp(validationLoss) }
}

/// One entry of the loss history stored in checkpoints (`train.history`).
public struct HistoryEntry: Codable, Sendable, Equatable {
    /// Steps done.
    public var step: Int
    /// Training tokens consumed by then.
    public var tokens: Int
    /// The step's training loss (for step 0, the first evaluation's), in nats.
    public var train_loss: Double
    /// The validation loss of an evaluation at this step; nil if there was none.
    public var val_loss: Double?
}

/// A training run: data, model, AdamW, schedule, evaluations, samples, checkpoints and resume.
///
/// ```swift
/// var c = TrainerConfiguration()
/// c.trainFiles = ["input.txt"]; c.maxSteps = 500
/// let summary = try Trainer(configuration: c).run { event in print(event) }
/// ```
public final class Trainer {
    /// The settings given to ``init(configuration:resume:)`` (a resumed run takes most of its
    /// settings from the checkpoint instead).
    public private(set) var configuration: TrainerConfiguration
    let resumeFrom: String?

    /// The run's result.
    public struct Summary: Sendable {
        /// Steps done, resumed steps included.
        public var steps: Int
        /// Training tokens consumed, resumed steps included.
        public var tokensSeen: Int
        /// Wall time of this ``Trainer/run(_:)`` call, in seconds.
        public var seconds: Double
        /// The final evaluation's validation loss; nil without validation data or when a signal
        /// stopped the run.
        public var finalValidationLoss: Double?
        /// Path of the last checkpoint written (at the end of the run, or at the stop).
        public var finalCheckpoint: String
        /// Set when a stop signal ended the run early (the signal number).
        public var stoppedBySignal: Int32?
    }

    /// A new run with `configuration`, or the continuation of the checkpoint `resume` (its
    /// settings are used; `configuration` may change only the run's length, its output, logging
    /// and threads).
    public init(configuration: TrainerConfiguration, resume: String? = nil) {
        self.configuration = configuration
        resumeFrom = resume
    }

    /// An error of the run's set-up or of its data. The message names settings by what they are
    /// (and the ``TrainerConfiguration`` property), never by a command-line flag: a tool matches
    /// ``reason`` to say it in its own terms.
    public struct SetupError: Error, Equatable, CustomStringConvertible {
        /// What is wrong, for a caller to match.
        public enum Reason: Equatable, Sendable {
            /// The training window length (``TrainerConfiguration/windowLength``) is outside
            /// 1...`contextLength`, the model's n_ctx.
            case windowLengthOutOfRange(Int, contextLength: Int)
            /// The micro-batches per step (``TrainerConfiguration/gradientAccumulation``) are below 1.
            case gradientAccumulationBelowOne(Int)
            /// One epoch has `batchesPerEpoch` micro-batches, fewer than one optimizer step takes
            /// (``TrainerConfiguration/gradientAccumulation``), and no step count
            /// (``TrainerConfiguration/maxSteps``) is set.
            case epochShorterThanAStep(batchesPerEpoch: Int, gradientAccumulation: Int)
            /// No training files (``TrainerConfiguration/trainFiles`` is empty).
            case noTrainingData
            /// The training files mix UTF-8 text and llm.c token files.
            case mixedTrainingFiles
            /// The file to resume (at `path`) is a model without training state: it can be
            /// fine-tuned (``TrainerConfiguration/initModel``), not resumed.
            case notACheckpoint(path: String)
            /// Another problem, with files, data or outputs: the message says what.
            case other
        }
        /// What is wrong.
        public var reason: Reason
        /// The message.
        public var description: String
        /// A problem with the settings (the command line's usage), not with files or data.
        public var isUsage: Bool
        /// An error with message `d` (reason ``Reason/other``); `usage` marks a problem with the settings.
        public init(_ d: String, usage: Bool = false) { reason = .other; description = d; isUsage = usage }
        /// The error for `reason`, with its message.
        public init(_ reason: Reason) {
            self.reason = reason
            switch reason {
            case let .windowLengthOutOfRange(n, c):
                description = "the training window length (windowLength) \(n) is outside 1...\(c) (the model's n_ctx)"
                isUsage = true
            case let .gradientAccumulationBelowOne(k):
                description = "the micro-batches per step (gradientAccumulation) are \(k); there must be at least 1"
                isUsage = true
            case let .epochShorterThanAStep(b, k):
                description = "one epoch has \(b) micro-batches, fewer than the \(k) of one optimizer step (gradientAccumulation): set the step count (maxSteps)"
                isUsage = true
            case .noTrainingData:
                description = "no training data (trainFiles is empty)"
                isUsage = false
            case .mixedTrainingFiles:
                description = "the training files mix text files and llm.c token files"
                isUsage = false
            case let .notACheckpoint(path):
                description = "\(path): not a g2w-train checkpoint (no training state); a model is fine-tuned as the initial model (initModel), not resumed"
                isUsage = false
            case .other:
                description = "set-up failed"
                isUsage = false
            }
        }
    }

    /// `error`'s message naming the file at `path` once: errors that already start with the
    /// path (a failed open) are left as they are, others get it as a prefix.
    static func message(_ error: Error, about path: String) -> String {
        let text = "\(error)"
        return text.hasPrefix(path) ? text : "\(path): \(text)"
    }

    static func encode<T: Encodable>(_ v: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(v)) ?? Data("null".utf8), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ s: String, what: String, path: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(s.utf8)) } catch {
            throw SetupError("\(path): \(what) in the checkpoint cannot be read: \(error)")
        }
    }

    /// Runs to the end (or to a stop signal, if the caller installed g2w_stop_install_handlers).
    /// - Throws: ``SetupError`` for unusable settings, data or files (model, output directory,
    ///   log, a checkpoint that cannot be saved); ``TrainingDataError`` for bad training data;
    ///   ``TrainingCheckpoint/ReadError`` for a checkpoint that cannot be resumed;
    ///   ``TrainingError`` when a step's loss or gradient is not finite; ``AllocationError``.
    public func run(_ report: (TrainerEvent) -> Void = { _ in }) throws -> Summary {
        let start = Date()
        var c = configuration
        var block: GPT2ParameterBlock
        var optimizer: AdamW
        var tokenizerMetadata: G2WMetadata
        var tokenizer: GPT2Tokenizer?
        var state: TrainingState?
        var history: [HistoryEntry] = []

        // Model, optimizer, and (when resuming) the state and settings of the run.
        if let path = resumeFrom {
            let peek: GPT2Model
            do { peek = try GPT2Model(path: path) } catch { throw SetupError(Self.message(error, about: path)) }
            guard let h = peek.file.metadata["train.hyperparameters"]?.stringValue else {
                throw SetupError(.notACheckpoint(path: path))
            }
            var stored = try Self.decode(TrainerConfiguration.self, h, what: "the run's settings", path: path)
            // What a resumed run may change.
            if c.maxSteps != nil || c.epochs != nil { stored.maxSteps = c.maxSteps; stored.epochs = c.epochs }
            stored.outputDirectory = c.outputDirectory
            stored.logFile = c.logFile ?? stored.logFile
            stored.threads = c.threads
            c = stored
            let loaded = try TrainingCheckpoint.read(path, hyperparameters: .init(beta1: Float(c.beta1), beta2: Float(c.beta2),
                                                                                  epsilon: Float(c.epsilon), weightDecay: Float(c.weightDecay)))
            block = loaded.parameters
            optimizer = loaded.optimizer
            tokenizerMetadata = loaded.tokenizer
            tokenizer = try? loaded.model.requireTokenizer()
            state = loaded.state
            history = try Self.decode([HistoryEntry].self, loaded.state.history, what: "the loss history", path: path)
            report(.note("resuming \(path) at step \(loaded.state.step) (\(loaded.state.tokensSeen) tokens seen)"))
        } else if let path = c.initModel {
            let model: GPT2Model
            do { model = try GPT2Model(path: path) } catch { throw SetupError(Self.message(error, about: path)) }
            block = try GPT2ParameterBlock(copying: model)
            tokenizerMetadata = GPT2ModelWriter.tokenizerMetadata(of: model.file)
            if model.hasTokenizer {
                do { tokenizer = try model.requireTokenizer() } catch { throw SetupError(Self.message(error, about: path)) }
            }
            optimizer = try AdamW(layoutOf: block, hyperparameters: .init(beta1: Float(c.beta1), beta2: Float(c.beta2), epsilon: Float(c.epsilon),
                                                                          weightDecay: Float(c.weightDecay)))
        } else {
            let t = try GPT2Tokenizer.gpt2()
            let shape = GPT2Configuration(layerCount: c.layerCount, headCount: c.headCount, embeddingSize: c.embeddingSize,
                                          contextLength: c.contextLength, vocabularySize: t.vocabularySize)
            do { try shape.validate() } catch { throw SetupError("\(error)") }
            block = try GPT2ParameterBlock(configuration: shape, untiedHead: c.untiedHead)
            GPT2Initialization.initialize(block, seed: c.seed)
            tokenizer = t
            tokenizerMetadata = GPT2ModelWriter.tokenizerMetadata(t)
            optimizer = try AdamW(layoutOf: block, hyperparameters: .init(beta1: Float(c.beta1), beta2: Float(c.beta2), epsilon: Float(c.epsilon),
                                                                          weightDecay: Float(c.weightDecay)))
        }
        let shape = block.configuration
        let N = c.windowLength ?? min(256, shape.contextLength)
        guard N >= 1, N <= shape.contextLength else {
            throw SetupError(.windowLengthOutOfRange(N, contextLength: shape.contextLength))
        }

        // Data.
        let (trainIDs, valIDs) = try Self.loadData(c, tokenizer: tokenizer, vocabularySize: shape.vocabularySize)
        let trainWindows = try TokenWindows(tokens: trainIDs, context: N, stride: c.stride, vocabularySize: shape.vocabularySize,
                                            source: c.trainFiles.joined(separator: ", "))
        var batcher: TrainingBatcher
        if let s = state {
            let st = try Self.decode(TrainingBatcher.State.self, s.data, what: "the data position", path: resumeFrom!)
            batcher = try TrainingBatcher(windows: trainWindows, restoring: st)
        } else {
            batcher = try TrainingBatcher(windows: trainWindows, batchSize: c.batchSize, shuffle: c.shuffle, seed: c.seed)
        }
        let valSource = c.validationFiles.isEmpty ? "the last \(c.validationSplit) of \(c.trainFiles.joined(separator: ", "))" : c.validationFiles.joined(separator: ", ")
        var validation: ValidationBatches?
        if valIDs.count > N {
            let windows = try TokenWindows(tokens: valIDs, context: N, vocabularySize: shape.vocabularySize, source: valSource)
            if windows.count >= c.batchSize {
                validation = try ValidationBatches(windows: windows, batchSize: c.batchSize, evaluationBatches: c.evalIters)
            }
        }
        if validation == nil {
            report(.note("the validation data (\(valIDs.count) tokens) has fewer than one batch of \(c.batchSize) windows of \(N + 1) tokens: evaluations report the training loss only"))
        }
        // Fixed training batches for the train-loss evaluation: the first K windows in order.
        let trainEval = try ValidationBatches(windows: trainWindows, batchSize: c.batchSize, evaluationBatches: c.evalIters == 0 ? 10 : c.evalIters)

        let K = c.gradientAccumulation
        guard K >= 1 else { throw SetupError(.gradientAccumulationBelowOne(K)) }
        let stepsPerEpoch = batcher.batchesPerEpoch / K
        guard stepsPerEpoch >= 1 || c.maxSteps != nil else {
            throw SetupError(.epochShorterThanAStep(batchesPerEpoch: batcher.batchesPerEpoch, gradientAccumulation: K))
        }
        let totalSteps = c.maxSteps ?? (c.epochs ?? 1) * stepsPerEpoch
        let schedule: LearningRateSchedule = c.schedule == "constant" ? .constant(c.learningRate)
            : .warmupCosine(rate: c.learningRate, minRate: c.minLearningRate ?? c.learningRate / 10, warmupSteps: c.warmupSteps,
                            decaySteps: c.decaySteps ?? totalSteps)

        let context = ComputeContext.shared(threads: c.threads)
        let model = try GPT2TrainingModel(parameters: block, batchSize: c.batchSize, sequenceLength: N, context: context, dropout: Float(c.dropout))
        var rng = SplitMix64(seed: state?.rngState ?? (c.seed ^ 0x5EED_D809_0000_0000))
        var step = state?.step ?? 0
        var tokensSeen = state?.tokensSeen ?? 0
        var best = state?.bestValidationLoss
        let tokensPerStep = K * c.batchSize * N
        report(.started(TrainerPlan(parameterCount: block.count, configuration: shape, trainTokens: trainIDs.count, validationTokens: valIDs.count,
                                    trainWindows: trainWindows.count, validationBatches: validation?.count ?? 0, batchesPerEpoch: batcher.batchesPerEpoch,
                                    totalSteps: totalSteps, firstStep: step, tokensPerStep: tokensPerStep, threads: context.threads)))

        // Output directory and log.
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: c.outputDirectory, withIntermediateDirectories: true) } catch {
            throw SetupError("\(c.outputDirectory): cannot create the output directory: \(error.localizedDescription)")
        }
        let log = try c.logFile.map { try JSONLines(path: $0, append: resumeFrom != nil) }
        let settingsJSON = Self.encode(c)

        func evaluate() throws -> EvaluationRecord {
            func mean(_ batches: ValidationBatches) throws -> Double {
                var s = 0.0
                for b in batches { s += try model.forward(inputs: b.inputs, targets: b.targets, training: false)! }
                return s / Double(batches.count)
            }
            let train = try mean(trainEval)
            let val = try validation.map { try mean($0) } ?? train
            return EvaluationRecord(step: step, tokensSeen: tokensSeen, trainLoss: train, validationLoss: val)
        }
        func checkpointPath(_ s: Int) -> String { (c.outputDirectory as NSString).appendingPathComponent(String(format: "ckpt-%06d.g2w", s)) }
        func writeCheckpoint(_ path: String) throws {
            let st = TrainingState(step: step, tokensSeen: tokensSeen, data: Self.encode(batcher.state), rngState: rng.state,
                                   hyperparameters: settingsJSON, history: Self.encode(history), bestValidationLoss: best)
            do {
                try TrainingCheckpoint.write(to: path, parameters: block, optimizer: optimizer, state: st, tokenizer: tokenizerMetadata)
            } catch let G2WFormatError.io(operation, _, reason) {
                // Name the checkpoint, not the writer's temporary file (already removed), and what is left.
                let kept = Self.latestCheckpoint(in: c.outputDirectory).map { "; the last checkpoint, \($0), is intact" } ?? ""
                throw SetupError("\(path): cannot save the checkpoint at step \(step) (\(operation) failed: \(reason))\(kept)")
            }
        }
        func save(reason: String) throws -> String {
            let path = checkpointPath(step)
            try writeCheckpoint(path)
            report(.checkpoint(step: step, path: path, reason: reason))
            if c.keep > 0 { Self.prune(directory: c.outputDirectory, keep: c.keep) }
            return path
        }
        func plot() {
            let train = history.map { (tokens: $0.tokens, loss: $0.train_loss) }
            let val = history.compactMap { h in h.val_loss.map { (tokens: h.tokens, loss: $0) } }
            try? LossPlot.write(LossPlot.svg(train: train, validation: val, title: "g2w-train: loss against tokens seen"),
                                to: (c.outputDirectory as NSString).appendingPathComponent("loss.svg"))
        }
        func sample() throws {
            guard let tokenizer, c.sampleTokens > 0 else { return }
            let text = try Self.sample(block, tokenizerMetadata: tokenizerMetadata, tokenizer: tokenizer, configuration: c, directory: c.outputDirectory,
                                       threads: context.threads)
            report(.sample(step: step, text: text))
        }
        func evaluationRound() throws {
            let e = try evaluate()
            report(.evaluation(e))
            try log?.write(["type": "eval", "step": e.step, "tokens": e.tokensSeen, "train_loss": e.trainLoss, "val_loss": e.validationLoss,
                            "val_ppl": e.validationPerplexity])
            if let i = history.lastIndex(where: { $0.step == step }) { history[i].val_loss = e.validationLoss } else {
                history.append(HistoryEntry(step: step, tokens: tokensSeen, train_loss: e.trainLoss, val_loss: e.validationLoss))
            }
            plot()
            if c.keepBest, validation != nil, best.map({ e.validationLoss < $0 }) ?? true {
                best = e.validationLoss
                let bestPath = (c.outputDirectory as NSString).appendingPathComponent("best.g2w")
                try writeCheckpoint(bestPath)
                report(.checkpoint(step: step, path: bestPath, reason: "best validation loss \(String(format: "%.4f", e.validationLoss))"))
            } else if best.map({ e.validationLoss < $0 }) ?? true {
                best = e.validationLoss
            }
        }

        if step == 0 && state == nil && c.evalInterval > 0 { try evaluationRound() }
        var lastCheckpoint = ""
        var windowStart = Date()
        var windowSteps = 0
        var stopped: Int32?
        while step < totalSteps {
            let sig = g2w_stop_requested()
            if sig != 0 { stopped = sig; break }
            let lr = schedule.rate(atStep: step)
            let epochBefore = batcher.epoch
            var batches: [TokenBatch] = []
            for _ in 0..<K { batches.append(batcher.nextBatch()) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try TrainingStep.run(model: model, optimizer: optimizer, batches: batches, learningRate: Float(lr),
                                         maxGradientNorm: c.gradientClip > 0 ? c.gradientClip : nil, index: step, dropoutSeed: rng.next())
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            step += 1
            tokensSeen += tokensPerStep
            windowSteps += 1
            let elapsed = Date().timeIntervalSince(windowStart)
            let rate = Double(windowSteps * tokensPerStep) / max(elapsed, 1e-9)
            let record = StepRecord(step: step, epoch: batcher.epoch, loss: r.loss, learningRate: lr, gradientNorm: r.gradientNorm, milliseconds: ms,
                                    tokensPerSecond: Double(tokensPerStep) / (ms / 1000), tokensSeen: tokensSeen,
                                    etaSeconds: Double(totalSteps - step) * Double(tokensPerStep) / max(rate, 1e-9))
            report(.step(record))
            history.append(HistoryEntry(step: step, tokens: tokensSeen, train_loss: r.loss, val_loss: nil))
            if c.logInterval > 0 && (step % c.logInterval == 0 || step == totalSteps) {
                try log?.write(["type": "step", "step": step, "epoch": record.epoch, "loss": r.loss, "lr": lr, "grad_norm": r.gradientNorm,
                                "ms": ms, "tok_s": record.tokensPerSecond, "tokens": tokensSeen])
            }
            if step % 50 == 0 { windowStart = Date(); windowSteps = 0 }
            let epochEnded = batcher.epoch != epochBefore
            if c.evalInterval > 0 && step % c.evalInterval == 0 && step < totalSteps { try evaluationRound() }
            if (c.sampleInterval > 0 && step % c.sampleInterval == 0) || epochEnded { try sample() }
            if c.saveInterval > 0 && step % c.saveInterval == 0 && step < totalSteps { lastCheckpoint = try save(reason: "every \(c.saveInterval) steps") }
        }
        var finalLoss: Double?
        if stopped == nil {
            try evaluationRound()
            finalLoss = validation != nil ? history.last?.val_loss : nil
            try sample()
            lastCheckpoint = try save(reason: "end of the run")
        } else {
            lastCheckpoint = try save(reason: "stopped by signal \(stopped!)")
        }
        plot()
        return Summary(steps: step, tokensSeen: tokensSeen, seconds: Date().timeIntervalSince(start), finalValidationLoss: finalLoss,
                       finalCheckpoint: lastCheckpoint, stoppedBySignal: stopped)
    }

    // MARK: Pieces

    /// Token ids of the training and validation data: text files (tokenized with `tokenizer`) or
    /// llm.c token files (recognised by their header's magic number).
    static func loadData(_ c: TrainerConfiguration, tokenizer: GPT2Tokenizer?, vocabularySize: Int) throws -> (train: [Int32], validation: [Int32]) {
        guard !c.trainFiles.isEmpty else { throw SetupError(.noTrainingData) }
        // llm.c token files: named *.bin (llm.c's data scripts write *_train.bin, *_val.bin; such a
        // file with a bad header is an error, not text), or any file starting with their magic number.
        func isTokenFile(_ path: String) -> Bool {
            if path.hasSuffix(".bin") { return true }
            guard let h = FileHandle(forReadingAtPath: path) else { return false }
            defer { try? h.close() }
            let d = (try? h.read(upToCount: 4)) ?? Data()
            return d.count == 4 && d.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) } == LlmcTokenFile.magic
        }
        func tokens(_ files: [String]) throws -> [Int32] {
            var out: [Int32] = []
            for f in files { out += try readLlmcTokens(from: f, vocabularySize: vocabularySize) }
            return out
        }
        func text(_ files: [String], split: Double) throws -> ([Int32], [Int32]) {
            guard let tokenizer else { throw SetupError("the model has no tokenizer, so text cannot be tokenized: give llm.c token files") }
            let t = try TrainingText(files: files, validationFraction: split)
            let (a, b) = t.tokenized(with: tokenizer)
            return (a.map(Int32.init), b.map(Int32.init))
        }
        let trainAreTokens = c.trainFiles.map(isTokenFile)
        guard Set(trainAreTokens).count == 1 else { throw SetupError(.mixedTrainingFiles) }
        var train: [Int32], val: [Int32]
        if trainAreTokens[0] {
            train = try tokens(c.trainFiles)
            if c.validationFiles.isEmpty {
                let cut = Int(Double(train.count) * (1 - c.validationSplit))
                val = Array(train[cut...]); train = Array(train[..<cut])
            } else { val = [] }
        } else {
            (train, val) = try text(c.trainFiles, split: c.validationFiles.isEmpty ? c.validationSplit : 0)
        }
        if !c.validationFiles.isEmpty {
            val = c.validationFiles.allSatisfy(isTokenFile) ? try tokens(c.validationFiles) : try text(c.validationFiles, split: 0).0
        }
        return (train, val)
    }

    /// A continuation of the sample prompt by g2w's inference path, from an export of the current
    /// weights (written beside the checkpoints, opened, and removed).
    static func sample(_ block: GPT2ParameterBlock, tokenizerMetadata: G2WMetadata, tokenizer: GPT2Tokenizer, configuration c: TrainerConfiguration,
                       directory: String, threads: Int) throws -> String {
        let path = (directory as NSString).appendingPathComponent(".sample-\(getpid()).g2w")
        try GPT2ModelWriter.write(block, to: path, dtype: .f32, tokenizer: tokenizerMetadata, writer: "g2w-train", overwrite: true)
        defer { unlink(path) }
        let model = try GPT2Model(path: path)
        var prompt = tokenizer.encode(c.samplePrompt)
        if prompt.isEmpty, let eos = tokenizer.endOfTextID { prompt = [eos] }
        guard !prompt.isEmpty else { return "" }
        var o = GenerationOptions()
        o.maxTokens = min(c.sampleTokens, block.configuration.contextLength - prompt.count)
        guard (o.maxTokens ?? 0) > 0 else { return "" }
        o.sampling.temperature = c.sampleTemperature
        o.sampling.topK = c.sampleTopK
        o.sampling.topP = c.sampleTopP
        o.sampling.seed = 1
        o.stopAtEndOfText = false
        o.threads = threads
        let r = try model.generate(prompt: prompt, options: o) { _ in true }
        return c.samplePrompt + r.text
    }

    /// The newest `ckpt-*.g2w` of `directory`, if any.
    static func latestCheckpoint(in directory: String) -> String? {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".g2w") }.sorted().last
            .map { (directory as NSString).appendingPathComponent($0) }
    }

    /// Removes all but the `keep` newest `ckpt-*.g2w` of `directory`.
    static func prune(directory: String, keep: Int) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".g2w") }.sorted()
        for n in names.dropLast(keep) { try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(n)) }
    }
}

/// A JSON-lines log: one object per line, flushed as written.
final class JSONLines {
    let handle: FileHandle
    let path: String
    init(path: String, append: Bool) throws {
        self.path = path
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw Trainer.SetupError("\(path): cannot create the log file") }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw Trainer.SetupError("\(path): cannot open the log file") }
        handle = h
        _ = try? handle.seekToEnd()
    }
    deinit { try? handle.close() }
    func write(_ object: [String: Any]) throws {
        var parts: [String] = []
        for k in object.keys.sorted() {
            let v = object[k]!
            switch v {
            case let d as Double: parts.append("\"\(k)\": \(d.isFinite ? "\(d)" : "null")")
            case let i as Int: parts.append("\"\(k)\": \(i)")
            case let s as String: parts.append("\"\(k)\": \(Trainer.encode(s))")
            default: parts.append("\"\(k)\": null")
            }
        }
        do { try handle.write(contentsOf: Data(("{" + parts.joined(separator: ", ") + "}\n").utf8)) } catch {
            throw Trainer.SetupError("\(path): cannot write the log: \(error.localizedDescription)")
        }
    }
}
