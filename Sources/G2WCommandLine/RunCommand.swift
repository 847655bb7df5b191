import Foundation
import G2W
import G2WFormat

/// `g2w-run`: text generation (and tokenization, perplexity, benchmarks) with a `.g2w` model.
public enum RunCommand {
    static let usage = "usage: g2w-run --model FILE.g2w [--prompt TEXT | --prompt-file FILE | --tokens IDS] [options]"
    static let parser = OptionParser(specs: [
        OptionSpec(names: ["-m", "--model"], valueName: "FILE.g2w", help: "the model to run (required)"),
        OptionSpec(names: ["-p", "--prompt"], valueName: "TEXT", help: "the prompt; without --prompt/--prompt-file/--tokens the prompt is read\nfrom stdin, or interactively when stdin is a terminal"),
        OptionSpec(names: ["-f", "--prompt-file"], valueName: "FILE", help: "read the prompt from FILE"),
        OptionSpec(names: ["--tokens"], valueName: "IDS", help: "the prompt as token ids, comma-separated (no tokenizer needed)"),
        OptionSpec(names: ["-n", "--max-tokens"], valueName: "N", help: "tokens to generate at most (default 128, or what fits the context;\nan explicit N that does not fit is an error)"),
        OptionSpec(names: ["-t", "--temperature"], valueName: "T", help: "sampling temperature, 0 = greedy (default 0.8)"),
        OptionSpec(names: ["--top-k"], valueName: "K", help: "keep the K most likely tokens, 0 = off (default 40)"),
        OptionSpec(names: ["--top-p"], valueName: "P", help: "nucleus sampling: keep tokens up to probability mass P in (0, 1],\n1 = off (default 0.95)"),
        OptionSpec(names: ["--min-p"], valueName: "P", help: "drop tokens below P x the top probability, 0 = off (default 0.05)"),
        OptionSpec(names: ["--repeat-penalty"], valueName: "R", help: "penalize tokens of the last --repeat-last-n tokens, 1 = off (default 1)"),
        OptionSpec(names: ["--repeat-last-n"], valueName: "N", help: "window of the repetition penalty, 0 = whole context (default 64)"),
        OptionSpec(names: ["-s", "--seed"], valueName: "S", help: "random seed (default: random, printed with the timings)"),
        OptionSpec(names: ["--stop"], valueName: "STRING", help: "stop when the output contains STRING (repeatable; not printed)", repeatable: true),
        OptionSpec(names: ["--ignore-eos"], valueName: nil, help: "do not stop at <|endoftext|>"),
        OptionSpec(names: ["--no-echo"], valueName: nil, help: "print only the continuation, not the prompt"),
        OptionSpec(names: ["--threads"], valueName: "N", help: "worker threads (default: number of cores)"),
        OptionSpec(names: ["--kv-type"], valueName: "f32|f16", help: "element type of the KV cache for generation and --bench (default f32;\nf16 halves its memory and what attention reads every token)"),
        OptionSpec(names: ["-q", "--quiet"], valueName: nil, help: "no timings on stderr"),
        OptionSpec(names: ["--tokenize"], valueName: "TEXT", help: "print the token ids of TEXT (one line, comma-separated) and exit"),
        OptionSpec(names: ["--perplexity"], valueName: "FILE", help: "evaluate perplexity on a text file (see --ppl-method)"),
        OptionSpec(names: ["--ppl-method"], valueName: "M", help: "chunks (llama.cpp: windows of --ctx tokens, second half scored; default)\nor sliding (Hugging Face: windows of --ctx, step --stride)"),
        OptionSpec(names: ["--ctx"], valueName: "N", help: "perplexity window (default min(512, n_ctx), and the --kl-base model's n_ctx)"),
        OptionSpec(names: ["--stride"], valueName: "S", help: "sliding-window step (default ctx / 2)"),
        OptionSpec(names: ["--kl-base"], valueName: "BASE.g2w", help: "with --perplexity: also run BASE (e.g. the f32 model; same vocabulary) over\nthe same windows and compare --model with it: both perplexities, their\nratio, KL divergence, same top token, RMS delta-p (llama.cpp's --kl-divergence)"),
        OptionSpec(names: ["--bench"], valueName: nil, help: "benchmark: memory bandwidth, peak FLOP/s, pp512 and tg128 (see README)"),
        OptionSpec(names: ["--pp"], valueName: "N", help: "benchmark prompt length (default 512, capped to n_ctx)"),
        OptionSpec(names: ["--tg"], valueName: "N", help: "benchmark tokens to generate (default 128)"),
        OptionSpec(names: ["--reps"], valueName: "N", help: "benchmark repetitions (default 5)"),
        OptionSpec(names: ["--json"], valueName: nil, help: "machine-readable output for --perplexity, --bench and --tokenize"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-run", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-run: generate text with a GPT-2 model stored in a .g2w file (memory-mapped, no copy).

                \(usage)

                \(parser.helpText())

                Text streams to stdout as it is generated; timings go to stderr.
                Context: the prompt plus the generated tokens never exceed the model's n_ctx.
                Exit status: 0 ok, 1 error (bad file, prompt too long, ...), 2 usage error.
                """)
                return 0
            }
            if !o.positionals.isEmpty { throw UsageError("unexpected argument '\(o.positionals[0])' (the prompt goes after --prompt)") }
            // The kernels read G2W_KERNELS themselves and ignore a value they do not know; say so here.
            if let k = ProcessInfo.processInfo.environment["G2W_KERNELS"], !["", "generic", "avx2", "avx512"].contains(k) {
                throw UsageError("G2W_KERNELS=\(k): expected generic, avx2 or avx512 (unset: the widest vector code the CPU runs)")
            }
            guard let modelPath = o.string("--model") else { throw UsageError("missing --model FILE.g2w") }
            let modes = ["--prompt", "--prompt-file", "--tokens", "--tokenize", "--perplexity", "--bench"].filter { o.has($0) }
            let inputs = modes.filter { ["--prompt", "--prompt-file", "--tokens"].contains($0) }
            if inputs.count > 1 { throw UsageError("\(inputs.joined(separator: " and ")) exclude each other") }
            let specials = modes.filter { ["--tokenize", "--perplexity", "--bench"].contains($0) }
            if specials.count > 1 || (specials.count == 1 && !inputs.isEmpty) {
                throw UsageError("\(modes.joined(separator: " and ")) exclude each other")
            }
            let options = try generationOptions(o)
            let threads = options.threads
            let json = o.has("--json")
            if json && specials.isEmpty { throw UsageError("--json goes with --tokenize, --perplexity or --bench") }
            if o.has("--kl-base") && !o.has("--perplexity") { throw UsageError("--kl-base goes with --perplexity") }

            if o.has("--bench") {
                return try BenchCommand.run(modelPath: modelPath, options: o, threads: threads)
            }
            let t0 = Date()
            let model: GPT2Model
            do { model = try GPT2Model(path: modelPath) } catch {
                let text = "\(error)"
                throw ToolError(text.hasPrefix(modelPath) ? text : "\(modelPath): \(text)")
            }
            let loadSeconds = Date().timeIntervalSince(t0)

            if let text = o.string("--tokenize") {
                let ids = try model.encode(text)
                print(json ? "[\(ids.map(String.init).joined(separator: ", "))]" : ids.map(String.init).joined(separator: ","))
                return 0
            }
            if let file = o.string("--perplexity") {
                return try PerplexityCommand.run(model: model, file: file, options: o, threads: threads)
            }
            for flag in ["--ppl-method", "--ctx", "--stride", "--pp", "--tg", "--reps"] where o.has(flag) {
                throw UsageError("\(flag) goes with --perplexity or --bench")
            }

            let echo = !o.has("--no-echo")
            let quiet = o.has("--quiet")
            if let ids = o.string("--tokens") {
                let prompt = try parseTokenList(ids)
                try generateOnce(model, prompt: prompt, promptText: nil, options: options, echo: echo, quiet: quiet, loadSeconds: loadSeconds)
                return 0
            }
            var promptText: String?
            if let p = o.string("--prompt") { promptText = p }
            // No prompt longer than the context can be used: what is read is bounded by n_ctx
            // (1 KB per token, at least 1 MB, at most 256 MB), so /dev/zero or a huge file is an
            // error at once rather than memory growing without end.
            let promptLimit = min(max(1 << 20, model.configuration.contextLength * 1024), 256 << 20)
            if let f = o.string("--prompt-file") {
                let d = try G2WFileReading.readRegularFile(f, limit: promptLimit, what: "prompt file")
                guard let s = String(validating: d, as: UTF8.self) else { throw ToolError("\(f): the prompt file is not valid UTF-8") }
                promptText = s
            }
            if promptText == nil && !Console.stdinIsTerminal {
                let d = try G2WFileReading.readAll(0, limit: promptLimit, path: "stdin", what: "prompt")
                guard let s = String(validating: d, as: UTF8.self) else { throw ToolError("stdin: the prompt is not valid UTF-8") }
                promptText = s
            }
            if let text = promptText {
                let ids = try model.encode(text)
                try generateOnce(model, prompt: ids, promptText: text, options: options, echo: echo, quiet: quiet, loadSeconds: loadSeconds)
                return 0
            }
            // Interactive: a prompt per line; each starts fresh. EOF (Ctrl-D) exits.
            _ = try model.requireTokenizer()
            Console.error("g2w-run: interactive mode: type a prompt and press Enter; Ctrl-D to quit.")
            var seedOffset: UInt64 = 0
            while true {
                Console.out("> ")
                guard let line = readLine(strippingNewline: true) else { Console.out("\n"); break }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                var opts = options
                opts.sampling.seed &+= seedOffset
                seedOffset += 1
                do {
                    // The prompt is already on the screen: print only the continuation.
                    try generateOnce(model, prompt: try model.encode(line), promptText: line, options: opts, echo: false, quiet: quiet, loadSeconds: loadSeconds)
                } catch {
                    Console.error("g2w-run: error: \(error)")
                }
            }
            return 0
        }
    }

    static func generationOptions(_ o: ParsedOptions) throws -> GenerationOptions {
        var g = GenerationOptions()
        g.maxTokens = try o.int("--max-tokens", range: 0...Int.max)
        var s = SamplingOptions()
        if let t = try o.double("--temperature", range: 0...1e6) { s.temperature = t }
        if let k = try o.int("--top-k", range: 0...Int.max) { s.topK = k }
        if let p = try o.double("--top-p", range: 0...1, openLower: true) { s.topP = p }
        if let p = try o.double("--min-p", range: 0...1) { s.minP = p }
        if let r = try o.double("--repeat-penalty", range: 0...1e6, openLower: true) { s.repetitionPenalty = r }
        if let n = try o.int("--repeat-last-n", range: 0...Int.max) { s.repetitionWindow = n }
        if let seed = try o.uint64("--seed") { s.seed = seed } else { s.seed = UInt64.random(in: 0...UInt64(UInt32.max)) }
        g.sampling = s
        g.stopStrings = o.strings("--stop")
        if g.stopStrings.contains("") { throw UsageError("--stop needs a non-empty string") }
        g.stopAtEndOfText = !o.has("--ignore-eos")
        g.threads = try o.int("--threads", range: 1...1024)
        g.kvType = try kvType(o)
        return g
    }

    static func kvType(_ o: ParsedOptions) throws -> G2WDType {
        guard let v = o.string("--kv-type") else { return .f32 }
        guard let t = G2WDType(name: v), t == .f32 || t == .f16 else { throw UsageError("invalid value for --kv-type: '\(v)' (expected f32 or f16)") }
        return t
    }

    /// "1,2, 3" or "1 2 3": decimal digits only (no sign, no empty item: "1,,2" is an error).
    static func parseTokenList(_ s: String) throws -> [Int] {
        let trimmed = s.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw UsageError("--tokens needs comma-separated token ids") }
        let parts = trimmed.split(separator: ",", omittingEmptySubsequences: false)
            .flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? [""] : $0.split(separator: " ").map(String.init) }
        return try parts.enumerated().map { i, p in
            guard !p.isEmpty else { throw UsageError("--tokens: item \(i + 1) is empty (expected comma-separated token ids like 464,3290)") }
            guard p.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                throw UsageError("invalid token id '\(escapedForDisplay(String(p.prefix(40))))' in --tokens (expected decimal digits)")
            }
            guard let v = Int(p) else { throw UsageError("token id \(p.prefix(40)) in --tokens is out of range") }
            return v
        }
    }

    static func generateOnce(_ model: GPT2Model, prompt: [Int], promptText: String?, options: GenerationOptions, echo: Bool, quiet: Bool, loadSeconds: Double) throws {
        // Validate everything before printing anything.
        try options.sampling.validate()
        try model.validate(tokens: prompt)
        _ = try options.tokenBudget(promptCount: prompt.count, contextLength: model.configuration.contextLength)
        if model.hasTokenizer { _ = try model.requireTokenizer() }  // a malformed embedded tokenizer is an error (spec 12.2)
        if echo {
            if let t = promptText { Console.out(t) } else if let tok = try model.tokenizer { Console.out((try? tok.decodeText(prompt)) ?? "") }
        }
        let hasText = try model.tokenizer != nil
        let result = try model.generate(prompt: prompt, options: options) { piece in
            if hasText { Console.out(piece.text) } else if piece.token >= 0 { Console.out("\(piece.token) ") }
            return true
        }
        Console.out("\n")
        if !quiet {
            let pt = result.promptTokens.count, gt = result.tokens.count
            // Rates only over forward passes that ran: the prompt pass (which also gives the first
            // generated token) and the evaluated steps after it (one fewer than the tokens).
            func rate(_ n: Int, _ s: Double) -> String { n > 0 && s > 1e-6 ? String(format: "%.2f tok/s", Double(n) / s) : "-" }
            Console.error(String(format: "g2w-run: load      %9.2f ms", loadSeconds * 1000))
            Console.error(String(format: "g2w-run: prompt    %9.2f ms / %5d tokens (%@)", result.promptSeconds * 1000, pt, gt > 0 ? rate(pt, result.promptSeconds) : "not run: -n 0"))
            Console.error(String(format: "g2w-run: generate  %9.2f ms / %5d tokens, %d steps after the prompt pass (%@)", result.generationSeconds * 1000, gt, result.evaluatedTokens, rate(result.evaluatedTokens, result.generationSeconds)))
            Console.error("g2w-run: stopped at \(result.stopReason); seed \(options.sampling.seed); \(model.weightTypesDescription) weights, \(options.threads ?? ProcessInfo.processInfo.activeProcessorCount) threads")
        }
    }
}
