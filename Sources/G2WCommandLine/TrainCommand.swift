import CG2W
import Foundation
import G2W
import G2WBenchmark
import G2WFormat
import G2WTraining

/// `g2w-train`: train and fine-tune GPT-2 from text, evaluate, sample, checkpoint, resume, export.
public enum TrainCommand {
    static let usage = """
    usage: g2w-train --train FILE [--train FILE...] [--init MODEL.g2w | --n-layer L --n-head H --n-embd E --n-ctx C] [options]
           g2w-train --resume CKPT.g2w [--max-steps N] [options]
           g2w-train --export OUT.g2w [--dtype f16|f32] CKPT.g2w      g2w-train --export-hf DIR CKPT.g2w
           g2w-train --bench [--shape gpt2|shakespeare|all] [--steps N]
    """

    static let parser = OptionParser(specs: [
        OptionSpec(names: ["-f", "--file", "--train"], valueName: "FILE", help: "training data: UTF-8 text, or an llm.c token file (repeatable)", repeatable: true),
        OptionSpec(names: ["--val"], valueName: "FILE", help: "validation data, same kinds (repeatable; default: --val-split of the training text)", repeatable: true),
        OptionSpec(names: ["--val-split"], valueName: "F", help: "the last F of the training text's characters is validation (default 0.1)"),
        OptionSpec(names: ["--init"], valueName: "MODEL.g2w", help: "fine-tune this model (f16 or f32; trained in f32)"),
        OptionSpec(names: ["--n-layer"], valueName: "L", help: "from scratch: layers (default 4)"),
        OptionSpec(names: ["--n-head"], valueName: "H", help: "from scratch: attention heads (default 4)"),
        OptionSpec(names: ["--n-embd"], valueName: "E", help: "from scratch: width (default 256)"),
        OptionSpec(names: ["--n-ctx"], valueName: "C", help: "from scratch: context length (default 256)"),
        OptionSpec(names: ["--untied-head"], valueName: nil, help: "from scratch: a separate LM head instead of one tied to wte"),
        OptionSpec(names: ["-c", "--ctx-size", "--ctx"], valueName: "N", help: "tokens per training window (default min(256, n_ctx))"),
        OptionSpec(names: ["--stride"], valueName: "S", help: "tokens between window starts (default N)"),
        OptionSpec(names: ["-b", "--batch-size", "--batch"], valueName: "B", help: "windows per micro-batch (default 16)"),
        OptionSpec(names: ["--grad-accum"], valueName: "K", help: "micro-batches per optimizer step (default 1)"),
        OptionSpec(names: ["--epochs"], valueName: "E", help: "passes over the training windows (default 1)"),
        OptionSpec(names: ["--max-steps"], valueName: "M", help: "optimizer steps (instead of --epochs)"),
        OptionSpec(names: ["--no-shuffle"], valueName: nil, help: "keep the windows in order (default: shuffled per epoch with --seed)"),
        OptionSpec(names: ["-lr", "--learning-rate", "--lr"], valueName: "LR", help: "peak learning rate (default 1e-3)"),
        OptionSpec(names: ["--min-lr"], valueName: "LR", help: "final learning rate of the cosine (default lr / 10)"),
        OptionSpec(names: ["--warmup"], valueName: "N", help: "warmup steps (default 100)"),
        OptionSpec(names: ["--decay-steps"], valueName: "N", help: "step where the cosine reaches --min-lr (default: the last step)"),
        OptionSpec(names: ["--lr-schedule"], valueName: "S", help: "cosine (nanoGPT's warmup + cosine; default) or constant"),
        OptionSpec(names: ["--weight-decay"], valueName: "W", help: "AdamW weight decay on tensors of rank >= 2 (default 0.1)"),
        OptionSpec(names: ["--beta1"], valueName: "B1", help: "AdamW beta1 (default 0.9)"),
        OptionSpec(names: ["--beta2"], valueName: "B2", help: "AdamW beta2 (default 0.95)"),
        OptionSpec(names: ["--grad-clip"], valueName: "C", help: "clip the global gradient norm at C, 0 = off (default 1.0)"),
        OptionSpec(names: ["--dropout"], valueName: "P", help: "dropout probability (default 0)"),
        OptionSpec(names: ["--eval-interval"], valueName: "N", help: "evaluate every N steps, 0 = only at the end (default 100)"),
        OptionSpec(names: ["--eval-iters"], valueName: "K", help: "batches per evaluation, 0 = every validation window (default 10)"),
        OptionSpec(names: ["--sample-interval"], valueName: "N", help: "print a sample every N steps (default: at each epoch's end)"),
        OptionSpec(names: ["--sample-prompt"], valueName: "TEXT", help: "the samples' prompt (default a newline)"),
        OptionSpec(names: ["--sample-tokens"], valueName: "N", help: "tokens per sample, 0 = no samples (default 64)"),
        OptionSpec(names: ["--temp", "--temperature"], valueName: "T", help: "samples' temperature, 0 = greedy (default 0)"),
        OptionSpec(names: ["--top-k"], valueName: "K", help: "samples' top-k (default 40)"),
        OptionSpec(names: ["--top-p"], valueName: "P", help: "samples' top-p (default 0.95)"),
        OptionSpec(names: ["--log-interval"], valueName: "N", help: "print and log every N steps (default 10)"),
        OptionSpec(names: ["--log"], valueName: "FILE", help: "write JSON lines: one object per logged step and per evaluation"),
        OptionSpec(names: ["-o", "--out"], valueName: "DIR", help: "checkpoints, loss.svg (default ./out)"),
        OptionSpec(names: ["--save-interval"], valueName: "N", help: "checkpoint every N steps, 0 = only at the end (default 0)"),
        OptionSpec(names: ["--keep"], valueName: "N", help: "keep the last N checkpoints, 0 = all (default 3)"),
        OptionSpec(names: ["--keep-best"], valueName: nil, help: "also keep the best checkpoint by validation loss as DIR/best.g2w"),
        OptionSpec(names: ["-s", "--seed"], valueName: "S", help: "seed of the initialisation, the shuffles and dropout (default 1337)"),
        OptionSpec(names: ["--resume"], valueName: "CKPT", help: "continue the run saved in CKPT (its settings are used)"),
        OptionSpec(names: ["--export"], valueName: "OUT.g2w", help: "write CKPT's weights as an inference file, without training state"),
        OptionSpec(names: ["--export-hf"], valueName: "DIR", help: "write CKPT as a Hugging Face directory (config.json, model.safetensors,\nvocab.json, merges.txt)"),
        OptionSpec(names: ["--dtype"], valueName: "T", help: "--export's weight type: f16 (default) or f32"),
        OptionSpec(names: ["--force"], valueName: nil, help: "--export, --export-hf: replace existing outputs"),
        OptionSpec(names: ["-t", "--threads"], valueName: "N", help: "worker threads (default: number of cores)"),
        OptionSpec(names: ["-q", "--quiet"], valueName: nil, help: "only errors and the final summary"),
        OptionSpec(names: ["--bench"], valueName: nil, help: "benchmark the training step on GPT-2 shapes (see README)"),
        OptionSpec(names: ["--shape"], valueName: "S", help: "--bench shape: gpt2 (124M, B=4, T=64), shakespeare (B=16, T=128), all"),
        OptionSpec(names: ["--steps"], valueName: "N", help: "--bench: timed steps per shape (default 5)"),
        OptionSpec(names: ["--json"], valueName: nil, help: "--bench: machine-readable output"),
        OptionSpec(names: ["--version"], valueName: nil, help: "print the version and exit"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-train", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-train: train and fine-tune GPT-2 on text, with evaluation, samples, checkpoints and resume.

                \(usage)

                \(parser.helpText())

                Data: windows of --ctx N tokens every --stride S tokens (x = ids[i:i+N], y = ids[i+1:i+N+1]),
                shuffled per epoch; one step = --grad-accum K micro-batches of --batch B windows.
                Checkpoints are .g2w files (g2w-run runs them); SIGINT/SIGTERM save one and exit 130/143.
                Exit status: 0 ok, 1 error (files, data, divergence), 2 usage error.
                """)
                return 0
            }
            if o.has("--version") { print(versionLine("g2w-train")); return 0 }
            if o.has("--bench") { return try bench(o) }
            if o.has("--export") || o.has("--export-hf") { return try export(o) }
            for flag in ["--dtype", "--force"] where o.has(flag) { throw UsageError("\(flag) goes with --export") }
            for flag in ["--shape", "--steps", "--json"] where o.has(flag) { throw UsageError("\(flag) goes with --bench") }
            if !o.positionals.isEmpty { throw UsageError("unexpected argument '\(o.positionals[0])' (training files go after --train)") }
            return try train(o)
        }
    }

    // MARK: Training

    static func configuration(_ o: ParsedOptions) throws -> TrainerConfiguration {
        var c = TrainerConfiguration()
        let big = 1 << 30
        c.trainFiles = o.strings("--train")
        c.validationFiles = o.strings("--val")
        if let f = try o.double("--val-split", range: 0...0.999_999) { c.validationSplit = f }
        if o.has("--val-split") && !c.validationFiles.isEmpty { throw UsageError("--val-split and --val exclude each other") }
        c.initModel = o.string("--init")
        // A checkpoint of another kind (safetensors, a Hugging Face directory): say how to convert it.
        if let m = c.initModel, FileKind.of(m) != .g2w, let hint = FileKind.notG2WMessage(m, then: { "g2w-train --init \($0) ..." }) {
            throw ToolError("--init \(hint)")
        }
        let scratch = ["--n-layer", "--n-head", "--n-embd", "--n-ctx", "--untied-head"].filter { o.has($0) }
        if c.initModel != nil, let f = scratch.first { throw UsageError("\(f) describes a new model; it cannot go with --init (the model has its shape)") }
        c.layerCount = try o.int("--n-layer", range: 1...1024) ?? c.layerCount
        c.headCount = try o.int("--n-head", range: 1...1024) ?? c.headCount
        c.embeddingSize = try o.int("--n-embd", range: 1...65536) ?? c.embeddingSize
        c.contextLength = try o.int("--n-ctx", range: 1...65536) ?? c.contextLength
        if c.initModel == nil && c.embeddingSize % c.headCount != 0 {
            throw UsageError("--n-embd \(c.embeddingSize) is not a multiple of --n-head \(c.headCount) (the head size must be an integer)")
        }
        c.untiedHead = o.has("--untied-head")
        c.windowLength = try o.int("--ctx", range: 1...65536)
        c.stride = try o.int("--stride", range: 1...big)
        c.batchSize = try o.int("--batch", range: 1...65536) ?? c.batchSize
        c.gradientAccumulation = try o.int("--grad-accum", range: 1...65536) ?? c.gradientAccumulation
        c.epochs = try o.int("--epochs", range: 1...big)
        c.maxSteps = try o.int("--max-steps", range: 1...big)
        if c.epochs != nil && c.maxSteps != nil { throw UsageError("--epochs and --max-steps exclude each other") }
        c.shuffle = !o.has("--no-shuffle")
        c.learningRate = try o.double("--lr", range: 0...10, openLower: true) ?? c.learningRate
        c.minLearningRate = try o.double("--min-lr", range: 0...10)
        c.warmupSteps = try o.int("--warmup", range: 0...big) ?? c.warmupSteps
        c.decaySteps = try o.int("--decay-steps", range: 0...big)
        if let s = o.string("--lr-schedule") {
            guard ["cosine", "constant"].contains(s) else { throw UsageError("invalid value for --lr-schedule: '\(s)' (expected cosine or constant)") }
            c.schedule = s
        }
        c.weightDecay = try o.double("--weight-decay", range: 0...10) ?? c.weightDecay
        c.beta1 = try o.double("--beta1", range: 0...0.999_999) ?? c.beta1
        c.beta2 = try o.double("--beta2", range: 0...0.999_999_9) ?? c.beta2
        c.gradientClip = try o.double("--grad-clip", range: 0...1e9) ?? c.gradientClip
        c.dropout = try o.double("--dropout", range: 0...0.99) ?? c.dropout
        c.evalInterval = try o.int("--eval-interval", range: 0...big) ?? c.evalInterval
        c.evalIters = try o.int("--eval-iters", range: 0...big) ?? c.evalIters
        c.sampleInterval = try o.int("--sample-interval", range: 0...big) ?? c.sampleInterval
        c.samplePrompt = o.string("--sample-prompt") ?? c.samplePrompt
        c.sampleTokens = try o.int("--sample-tokens", range: 0...65536) ?? c.sampleTokens
        c.sampleTemperature = try o.double("--temperature", range: 0...100) ?? c.sampleTemperature
        c.sampleTopK = try o.int("--top-k", range: 0...1_000_000) ?? c.sampleTopK
        c.sampleTopP = try o.double("--top-p", range: 0...1, openLower: true) ?? c.sampleTopP
        c.logInterval = try o.int("--log-interval", range: 1...big) ?? c.logInterval
        c.logFile = o.string("--log")
        c.outputDirectory = o.string("--out") ?? c.outputDirectory
        c.saveInterval = try o.int("--save-interval", range: 0...big) ?? c.saveInterval
        c.keep = try o.int("--keep", range: 0...big) ?? c.keep
        c.keepBest = o.has("--keep-best")
        c.seed = try o.uint64("--seed") ?? c.seed
        c.threads = try o.int("--threads", range: 1...1024)
        return c
    }

    static func train(_ o: ParsedOptions) throws -> Int32 {
        var c = try configuration(o)
        let resume = o.string("--resume")
        if let resume {
            // The run's recipe comes from the checkpoint; only its length and the outputs may change.
            let recipe = ["--train", "--val", "--val-split", "--init", "--n-layer", "--n-head", "--n-embd", "--n-ctx", "--untied-head", "--ctx",
                          "--stride", "--batch", "--grad-accum", "--no-shuffle", "--lr", "--min-lr", "--warmup", "--decay-steps", "--lr-schedule",
                          "--weight-decay", "--beta1", "--beta2", "--grad-clip", "--dropout", "--seed"]
            if let f = recipe.first(where: { o.has($0) }) { throw UsageError("\(f) cannot change a resumed run (\(resume) holds its settings); only --max-steps, --epochs, --out, --log, --threads") }
        } else if c.trainFiles.isEmpty {
            throw UsageError("no training data: give --train FILE (or --resume CKPT)")
        }
        if o.has("--out") == false && resume != nil { c.outputDirectory = (resume! as NSString).deletingLastPathComponent.isEmpty ? "." : (resume! as NSString).deletingLastPathComponent }
        let quiet = o.has("--quiet")
        let live = Console.stderrIsTerminal && !quiet
        g2w_stop_install_handlers()
        let trainer = Trainer(configuration: c, resume: resume)
        var total = 0
        let logEvery = c.logInterval
        let summary: Trainer.Summary
        do {
            summary = try trainer.run { event in
                switch event {
                case let .started(p):
                    total = p.totalSteps
                    guard !quiet else { return }
                    Console.error(String(format: "g2w-train: model %@, %.2fM parameters; %@ training tokens (%@ windows, %d micro-batches per epoch), %@ validation tokens",
                                         "\(p.configuration)", Double(p.parameterCount) / 1e6, grouped(p.trainTokens), grouped(p.trainWindows),
                                         p.batchesPerEpoch, grouped(p.validationTokens)))
                    Console.error("g2w-train: steps \(p.firstStep)..<\(p.totalSteps), \(grouped(p.tokensPerStep)) tokens per step, \(p.threads) threads")
                case let .step(r):
                    if live { Console.errorPartial(String(format: "\r\u{1B}[Kstep %d/%d  loss %.4f  %.0f tok/s  ETA %@", r.step, total, r.loss, r.tokensPerSecond, eta(r.etaSeconds))) }
                    guard !quiet, r.step % logEvery == 0 || r.step == total else { return }
                    if live { Console.errorPartial("\r\u{1B}[K") }
                    print(String(format: "step %5d/%d | epoch %d | loss %.4f | lr %.2e | norm %.3f | %4.0f ms | %6.0f tok/s | %@ tokens | ETA %@",
                                 r.step, total, r.epoch, r.loss, r.learningRate, r.gradientNorm, r.milliseconds, r.tokensPerSecond,
                                 grouped(r.tokensSeen), eta(r.etaSeconds)))
                    fflush(stdout)
                case let .evaluation(e):
                    guard !quiet else { return }
                    if live { Console.errorPartial("\r\u{1B}[K") }
                    print(String(format: "eval  step %5d | train loss %.4f | val loss %.4f | val perplexity %.2f", e.step, e.trainLoss, e.validationLoss,
                                 e.validationPerplexity))
                    fflush(stdout)
                case let .sample(step, text):
                    guard !quiet else { return }
                    if live { Console.errorPartial("\r\u{1B}[K") }
                    print("sample step \(step):\n\(text)\n---")
                    fflush(stdout)
                case let .checkpoint(step, path, reason):
                    guard !quiet else { return }
                    if live { Console.errorPartial("\r\u{1B}[K") }
                    Console.error("g2w-train: step \(step): saved \(path) (\(reason))")
                case let .note(s):
                    if !quiet { Console.error("g2w-train: \(s)") }
                }
            }
        } catch let e as Trainer.SetupError where e.isUsage {
            throw UsageError(CLIErrors.message(e))
        }
        if let sig = summary.stoppedBySignal {
            Console.error("g2w-train: stopped by signal \(sig) after step \(summary.steps); resume with: g2w-train --resume \(summary.finalCheckpoint)")
            return 128 + sig
        }
        let val = summary.finalValidationLoss.map { String(format: ", final validation loss %.4f (perplexity %.2f)", $0, exp($0)) } ?? ""
        Console.error(String(format: "g2w-train: %d steps, %@ tokens in %.1f s%@; %@", summary.steps, grouped(summary.tokensSeen), summary.seconds, val,
                             summary.finalCheckpoint))
        return 0
    }

    static func eta(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t % 3600 / 60) : t >= 60 ? String(format: "%dm%02ds", t / 60, t % 60) : "\(t)s"
    }

    // MARK: Export

    static func export(_ o: ParsedOptions) throws -> Int32 {
        guard o.positionals.count == 1 else {
            throw UsageError(o.positionals.isEmpty ? "--export needs the checkpoint to export: g2w-train --export OUT.g2w CKPT.g2w" : "one checkpoint at a time")
        }
        let source = o.positionals[0]
        let dtype: G2WDType
        switch o.string("--dtype") ?? "f16" {
        case "f16": dtype = .f16
        case "f32": dtype = .f32
        case let s: throw UsageError("invalid value for --dtype: '\(s)' (expected f16 or f32)")
        }
        let model: GPT2Model
        model = try RunCommand.openModel(source, then: { "g2w-train --export OUT.g2w \($0)" })
        let block = try GPT2ParameterBlock(copying: model)
        if let out = o.string("--export") {
            do {
                try GPT2ModelWriter.write(block, to: out, dtype: dtype, tokenizer: GPT2ModelWriter.tokenizerMetadata(of: model.file), writer: "g2w-train",
                                          overwrite: o.has("--force"))
            } catch { throw ToolError("\(out): \(error)") }
            Console.error("g2w-train: wrote \(out) (\(dtype) weights, no training state)")
        }
        if let dir = o.string("--export-hf") {
            let tokenizer = model.hasTokenizer ? try model.requireTokenizer() : nil
            do { try HuggingFaceExport.export(block, tokenizer: tokenizer, to: dir, overwrite: o.has("--force")) } catch { throw ToolError("\(dir): \(error)") }
            Console.error("g2w-train: wrote the Hugging Face directory \(dir)")
        }
        return 0
    }

    // MARK: Benchmark

    static func bench(_ o: ParsedOptions) throws -> Int32 {
        let steps = try o.int("--steps", range: 1...10_000) ?? 5
        let threads = try o.int("--threads", range: 1...1024)
        let shapes: [TrainingBenchmark.Shape]
        switch o.string("--shape") ?? "all" {
        case "gpt2": shapes = [.gpt2]
        case "shakespeare": shapes = [.shakespeare]
        case "all": shapes = [.gpt2, .shakespeare]
        case let s: throw UsageError("invalid value for --shape: '\(s)' (expected gpt2, shakespeare or all)")
        }
        let json = o.has("--json")
        let context = ComputeContext.shared(threads: threads)
        let peak = Benchmark.measurePeakFLOPS(threads: context.threads)
        if !json {
            print(String(format: "machine: %d threads, %@ kernels, peak %.1f GFLOP/s (FMA)", context.threads, String(cString: g2w_kernel_isa()), peak / 1e9))
            print("")
            print("| shape | params | B x T | ms/step | tok/s | GFLOP/s | % of peak | fwd / bwd / opt ms | RSS MB |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        }
        var rows: [String] = []
        for s in shapes {
            let r = try TrainingBenchmark.run(s, steps: steps, context: context, peakFLOPS: peak)
            if json {
                rows.append("""
                {"shape": \(jsonString(s.name)), "n_layer": \(s.configuration.layerCount), "n_embd": \(s.configuration.embeddingSize), "params": \(r.parameterCount), \
                "batch": \(s.batchSize), "seq": \(s.sequenceLength), "threads": \(r.threads), "ms_per_step": \(r.meanSeconds * 1e3), "sd_ms": \(r.sdSeconds * 1e3), \
                "samples_ms": \(r.stepSeconds.map { $0 * 1e3 }), "tok_s": \(r.tokensPerSecond), "gflops": \(r.flops / 1e9), "peak_gflops": \(peak / 1e9), \
                "peak_fraction": \(r.peakFraction), "forward_ms": \(r.forwardMilliseconds), "backward_ms": \(r.backwardMilliseconds), \
                "optimizer_ms": \(r.optimizerMilliseconds), "rss_bytes": \(r.residentBytes)}
                """)
            } else {
                print(String(format: "| %@ | %.1fM | %d x %d | %.0f +- %.0f | %.0f | %.1f | %.1f%% | %.0f / %.0f / %.0f | %.0f |", s.name, Double(r.parameterCount) / 1e6,
                             s.batchSize, s.sequenceLength, r.meanSeconds * 1e3, r.sdSeconds * 1e3, r.tokensPerSecond, r.flops / 1e9, 100 * r.peakFraction,
                             r.forwardMilliseconds, r.backwardMilliseconds, r.optimizerMilliseconds, Double(r.residentBytes) / 1e6))
            }
        }
        if json { print("{\"isa\": \"\(String(cString: g2w_kernel_isa()))\", \"threads\": \(context.threads), \"peak_gflops\": \(peak / 1e9), \"results\": [\(rows.joined(separator: ", "))]}") }
        return 0
    }
}
