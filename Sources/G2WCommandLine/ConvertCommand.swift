import Foundation
import G2W
import G2WFormat

/// `g2w-convert`: Hugging Face GPT-2 safetensors -> `.g2w`.
public enum ConvertCommand {
    static let usage = "usage: g2w-convert MODEL.safetensors|MODEL_DIR|MODEL.g2w [-o OUT.g2w] [--dtype f16|f32|q8_0|q4_0] [--force] [options]"
    static let typeNames = G2WDType.allCases.map(\.description).joined(separator: ", ")
    static let parser = OptionParser(specs: [
        OptionSpec(names: ["-o", "--outfile", "--output"], valueName: "OUT.g2w", help: "output file (default: beside the input, model.safetensors -> model.g2w;\na directory DIR -> DIR/model.g2w)"),
        OptionSpec(names: ["--outtype", "--dtype"], valueName: "TYPE", help: "element type of the layers' weight matrices: f32, f16 (default),\nq8_0 (8.5 bits per weight) or q4_0 (4.5 bits); biases and\nLayerNorm parameters are always f32"),
        OptionSpec(names: ["--head-dtype"], valueName: "TYPE", help: "element type of wte, wpe and lm_head (read in full every\ntoken; default: q8_0 with --dtype q4_0, else --dtype)"),
        OptionSpec(names: ["-f", "--force"], valueName: nil, help: "overwrite OUT.g2w if it exists (replaced atomically)"),
        OptionSpec(names: ["--config"], valueName: "FILE", help: "config.json to use (default: beside the model)"),
        OptionSpec(names: ["--n-head"], valueName: "N", help: "number of attention heads, when there is no config.json"),
        OptionSpec(names: ["--vocab"], valueName: "FILE", help: "vocab.json / encoder.json (with --merges)"),
        OptionSpec(names: ["--merges"], valueName: "FILE", help: "merges.txt / vocab.bpe (with --vocab)"),
        OptionSpec(names: ["--tokenizer-json"], valueName: "FILE", help: "a Hugging Face tokenizer.json"),
        OptionSpec(names: ["--no-tokenizer"], valueName: nil, help: "do not embed a tokenizer"),
        OptionSpec(names: ["-q", "--quiet"], valueName: nil, help: "no progress or summary (errors and warnings only)"),
        OptionSpec(names: ["--version"], valueName: nil, help: "print the version and exit"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-convert", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-convert: convert a Hugging Face GPT-2 checkpoint to one self-contained .g2w file
                (weights, hyperparameters and tokenizer). Reads model.safetensors directly, or the
                shards listed by model.safetensors.index.json; config.json and the tokenizer files
                (vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json) are found
                beside it. PyTorch .bin checkpoints are refused (a pickle can run code when loaded). Given an f32 or f16 .g2w file instead, it
                re-encodes it with --dtype/--head-dtype (default output: MODEL-TYPE.g2w), e.g.
                  g2w-convert gpt2.g2w --dtype q8_0

                \(usage)

                \(parser.helpText())

                The output is written to a temporary file beside it and renamed when complete:
                an error or an interrupt never leaves a partial .g2w.
                Exit status: 0 ok, 1 conversion failed, 2 usage error.
                """)
                return 0
            }
            if o.has("--version") { print(versionLine("g2w-convert")); return 0 }
            guard o.positionals.count == 1 else {
                throw UsageError(o.positionals.isEmpty ? "missing MODEL.safetensors" : "expected one input, got \(o.positionals.count)")
            }
            var opts = HuggingFaceConverter.Options()
            if let d = o.string("--dtype") {
                guard let t = G2WDType(name: d) else { throw UsageError("invalid value for \(o.spelled("--dtype")): '\(escapedForDisplay(d))' (expected one of \(typeNames))") }
                opts.dtype = t
            }
            if let d = o.string("--head-dtype") {
                guard let t = G2WDType(name: d) else { throw UsageError("invalid value for --head-dtype: '\(escapedForDisplay(d))' (expected one of \(typeNames))") }
                opts.headDType = t
            }
            opts.output = o.string("--output")
            opts.overwrite = o.has("--force")
            opts.configPath = o.string("--config")
            opts.headCount = try o.int("--n-head", range: 1...4096)
            opts.vocabPath = o.string("--vocab")
            opts.mergesPath = o.string("--merges")
            opts.tokenizerJSONPath = o.string("--tokenizer-json")
            opts.skipTokenizer = o.has("--no-tokenizer")
            if (opts.vocabPath == nil) != (opts.mergesPath == nil) { throw UsageError("--vocab and --merges go together") }
            let tokenizerChoices = [opts.vocabPath != nil, opts.tokenizerJSONPath != nil, opts.skipTokenizer].filter { $0 }.count
            if tokenizerChoices > 1 { throw UsageError("--vocab/--merges, --tokenizer-json and --no-tokenizer exclude each other") }
            if let out = opts.output, out.isEmpty { throw UsageError("\(o.spelled("--output")) needs a file name") }
            let quiet = o.has("--quiet")
            opts.warn = { Console.error("g2w-convert: warning: \($0)") }
            let progress = ProgressBar(enabled: !quiet)
            opts.progress = { done, total, bytes, totalBytes in progress.update(done: done, total: total, bytes: bytes, totalBytes: totalBytes) }

            G2WWriter.installInterruptCleanup()
            let input = o.positionals[0]
            // Inputs that are not a safetensors checkpoint (a .g2w without a type to re-encode to,
            // PyTorch pickles, GGUF, one shard of several): say what they are and what to run.
            if let message = FileKind.convertInputMessage(input, reencoding: o.has("--dtype") || o.has("--head-dtype")) { throw ToolError(message) }
            let summary: HuggingFaceConverter.Summary
            do {
                summary = try HuggingFaceConverter(input: input, options: opts).run()
            } catch {
                progress.clear()
                throw ToolError(CLIErrors.message(error))
            }
            progress.clear()
            if !quiet {
                let mb = Double(summary.bytesWritten) / 1e6
                Console.error("g2w-convert: wrote \(summary.output): \(summary.tensorCount) tensors, \(grouped(summary.parameterCount)) parameters, \(grouped(summary.bytesWritten)) bytes (\(opts.dtype) layers, \(opts.headDType ?? HuggingFaceConverter.defaultHeadDType(for: opts.dtype)) embeddings and head) in \(String(format: "%.2f", summary.seconds)) s (\(String(format: "%.1f", mb / max(summary.seconds, 1e-9))) MB/s)")
                Console.error("g2w-convert: model: \(summary.configuration)\(summary.untiedHead ? ", separate lm_head" : ", lm_head tied to wte"); tokenizer: \(summary.tokenizerSource ?? "none")")
            }
            return 0
        }
    }
}

/// A progress bar on stderr when it is a terminal; otherwise a line every 10 % for large jobs.
final class ProgressBar {
    let enabled: Bool
    let tty = Console.stderrIsTerminal
    var lastDecile = -1
    var drawn = false

    /// What `done` and `total` count ("tensors", "windows").
    let unit: String
    init(enabled: Bool, unit: String = "tensors") { self.enabled = enabled; self.unit = unit }

    func update(done: Int, total: Int, bytes: UInt64, totalBytes: UInt64) {
        guard enabled, total > 0 else { return }
        let fraction = totalBytes > 0 ? Double(bytes) / Double(totalBytes) : Double(done) / Double(total)
        if tty {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let size = totalBytes > 0 ? String(format: "  %.1f MB", Double(bytes) / 1e6) : ""
            Console.errorPartial(String(format: "\r[%@] %3d%%  %d/%d %@%@", bar, Int(fraction * 100), done, total, unit, size))
            drawn = true
        } else if totalBytes >= 100_000_000 {
            let decile = Int(fraction * 10)
            if decile > lastDecile {
                lastDecile = decile
                Console.error("progress: \(decile * 10)% (\(done)/\(total) tensors, \(String(format: "%.0f", Double(bytes) / 1e6)) MB)")
            }
        }
    }

    func clear() {
        if drawn { Console.errorPartial("\r\u{1B}[K"); drawn = false }
    }
}
