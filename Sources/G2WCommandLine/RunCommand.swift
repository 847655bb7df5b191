#if canImport(Glibc)
import Glibc
#endif
import Foundation
import G2W
import G2WFormat
import Synchronization

/// `g2w-run`: text generation (and tokenization, perplexity, benchmarks) with a `.g2w` model.
/// Flags follow llama.cpp's spellings where it has one (`-t` threads, `--temp`, `-n`, `-c`, `-r`).
public enum RunCommand {
    static let usage = "usage: g2w-run -m FILE.g2w [-p TEXT | -f FILE | --tokens IDS] [options]"
    static let parser = OptionParser(specs: [
        OptionSpec(names: ["-m", "--model"], valueName: "FILE.g2w", help: "the model to run (required)"),
        OptionSpec(names: ["-p", "--prompt"], valueName: "TEXT", help: "the prompt (\"\" starts from <|endoftext|>); without -p/-f/--tokens the prompt\nis read from stdin, or interactively when stdin is a terminal"),
        OptionSpec(names: ["-f", "--file", "--prompt-file"], valueName: "FILE", help: "read the prompt from FILE"),
        OptionSpec(names: ["--tokens"], valueName: "IDS", help: "the prompt as token ids, comma-separated (no tokenizer needed)"),
        OptionSpec(names: ["-sp", "--special"], valueName: nil, help: "special tokens written in the prompt text (<|endoftext|>) become their ids\n(default: they are ordinary text)"),
        OptionSpec(names: ["-n", "--n-predict", "--max-tokens"], valueName: "N", help: "tokens to generate at most (default 128, or what fits the context;\nan explicit N that does not fit is an error)"),
        OptionSpec(names: ["-c", "--ctx-size", "--ctx"], valueName: "N", help: "context size: the prompt plus the generated tokens stay within N\n(default and 0: the model's n_ctx); with --perplexity, the window\n(default min(512, n_ctx), and the --kl-base model's n_ctx)"),
        OptionSpec(names: ["--temp", "--temperature"], valueName: "T", help: "sampling temperature, 0 = greedy (default 0.8)"),
        OptionSpec(names: ["--top-k"], valueName: "K", help: "keep the K most likely tokens, 0 = off (default 40)"),
        OptionSpec(names: ["--top-p"], valueName: "P", help: "nucleus sampling: keep tokens up to probability mass P in (0, 1],\n1 = off (default 0.95)"),
        OptionSpec(names: ["--min-p"], valueName: "P", help: "drop tokens below P x the top probability, 0 = off (default 0.05)"),
        OptionSpec(names: ["--repeat-penalty"], valueName: "R", help: "penalize tokens of the last --repeat-last-n tokens, 1 = off (default 1)"),
        OptionSpec(names: ["--repeat-last-n"], valueName: "N", help: "window of the repetition penalty, 0 = whole context (default 64)"),
        OptionSpec(names: ["-s", "--seed"], valueName: "S", help: "random seed (default: random, printed with the timings; greedy\ndecoding needs none)"),
        OptionSpec(names: ["-r", "--reverse-prompt", "--stop"], valueName: "STRING", help: "stop when the output contains STRING (repeatable; not printed)", repeatable: true),
        OptionSpec(names: ["--ignore-eos"], valueName: nil, help: "do not stop at <|endoftext|>"),
        OptionSpec(names: ["--no-display-prompt", "--no-echo"], valueName: nil, help: "print only the continuation, not the prompt"),
        OptionSpec(names: ["--json"], valueName: nil, help: "generation: print one JSON object at the end (ids, text, stop reason,\nseed, timings, each token's log-probability); also for --tokenize,\n--perplexity and --bench"),
        OptionSpec(names: ["--jsonl"], valueName: nil, help: "generation: print one JSON object per token as it is produced (id, text,\nlog-probability), then one with the stop reason, seed and timings"),
        OptionSpec(names: ["--n-probs"], valueName: "N", help: "with --json/--jsonl: also the N most likely tokens at each step, with\ntheir log-probabilities (0...\(GenerationState.maxTopLogProbabilities))"),
        OptionSpec(names: ["-i", "--interactive"], valueName: nil, help: "interactive: read prompts from stdin, one per line, after the -p/-f\nprompt if any (the default when stdin is a terminal and no prompt is given)"),
        OptionSpec(names: ["-cnv", "--conversation"], valueName: nil, help: "interactive: keep the conversation: each line continues the text so far\n(reusing the KV cache); when the context is full, the most recent half\nis kept and re-evaluated"),
        OptionSpec(names: ["-t", "--threads"], valueName: "N", help: "worker threads (default: number of cores)"),
        OptionSpec(names: ["--kv-type"], valueName: "f32|f16", help: "element type of the KV cache for generation and --bench (default f32;\nf16 halves its memory and what attention reads every token)"),
        OptionSpec(names: ["-q", "--quiet"], valueName: nil, help: "no timings on stderr"),
        OptionSpec(names: ["--tokenize"], valueName: "TEXT", help: "print the token ids of TEXT (one line, comma-separated) and exit"),
        OptionSpec(names: ["--perplexity"], valueName: "FILE", help: "evaluate perplexity on a text file (see --ppl-method)"),
        OptionSpec(names: ["--ppl-method"], valueName: "M", help: "chunks (llama.cpp: windows of -c tokens, second half scored; default)\nor sliding (Hugging Face: windows of -c, step --ppl-stride)"),
        OptionSpec(names: ["--ppl-stride", "--stride"], valueName: "S", help: "sliding-window step (default ctx / 2)"),
        OptionSpec(names: ["--kl-base"], valueName: "BASE.g2w", help: "with --perplexity: also run BASE (e.g. the f32 model; same vocabulary) over\nthe same windows and compare --model with it: both perplexities, their\nratio, KL divergence, same top token, RMS delta-p (llama.cpp's --kl-divergence)"),
        OptionSpec(names: ["--bench"], valueName: nil, help: "benchmark: memory bandwidth, peak FLOP/s, pp512 and tg128 (see README)"),
        OptionSpec(names: ["--pp"], valueName: "N", help: "benchmark prompt length (default 512, capped to n_ctx)"),
        OptionSpec(names: ["--tg"], valueName: "N", help: "benchmark tokens to generate (default 128)"),
        OptionSpec(names: ["--reps"], valueName: "N", help: "benchmark repetitions (default 5)"),
        OptionSpec(names: ["--version"], valueName: nil, help: "print the version and exit"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ], foreign: [
        (["-ngl", "--n-gpu-layers", "--gpu-layers"], "g2w runs on the CPU; there are no GPU layers to offload"),
        (["-fa", "--flash-attn"], "g2w has one attention kernel; there is nothing to select"),
        (["--mlock", "--no-mmap", "--mmap"], "g2w always memory-maps the model read-only (pages are shared and loaded on use)"),
        (["-b", "--batch-size", "-ub", "--ubatch-size"], "g2w evaluates the prompt in chunks of \(GPT2Generator.defaultPromptChunk) tokens; there is no batch size to set"),
        (["-ctk", "--cache-type-k", "-ctv", "--cache-type-v"], "use --kv-type f32|f16 (one type for keys and values)"),
        (["-e", "--escape", "--no-escape"], "g2w-run takes the prompt as given (no escape processing); write a newline with $'...' in the shell, or use -f FILE"),
        (["--kl-divergence", "-kld", "--kl-divergence-base"], "use --perplexity TEXT --kl-base BASE.g2w (the base model is run alongside; no logits file)"),
        (["--log-disable", "--no-perf"], "use -q/--quiet"),
        (["--typical", "--mirostat", "--presence-penalty", "--frequency-penalty", "--top-nsigma", "--xtc-probability", "--dry-multiplier"],
         "g2w samples with --temp, --top-k, --top-p, --min-p and --repeat-penalty only"),
        (["-hf", "-hfr", "--hf-repo", "-mu", "--model-url"], "g2w downloads nothing: convert a local Hugging Face directory with g2w-convert DIR, then g2w-run -m DIR/model.g2w"),
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
                Context: the prompt plus the generated tokens never exceed the context (-c, or n_ctx).
                Ctrl-C stops the generation (in interactive mode: the current answer; again, or at
                the prompt, quits). Flags follow llama.cpp's spellings; the long names given after
                them (--temperature, --max-tokens, --ctx, --stop, --no-echo) still work.
                Exit status: 0 ok, 1 error (bad file, prompt too long, ...), 2 usage error,
                130 stopped by Ctrl-C.
                """)
                return 0
            }
            if o.has("--version") { print(versionLine("g2w-run")); return 0 }
            if !o.positionals.isEmpty { throw UsageError("unexpected argument '\(escapedForDisplay(o.positionals[0]))' (the prompt goes after -p)") }
            // The kernels read G2W_KERNELS themselves and ignore a value they do not know; say so here.
            if let k = ProcessInfo.processInfo.environment["G2W_KERNELS"], !["", "generic", "avx2", "avx512"].contains(k) {
                throw UsageError("G2W_KERNELS=\(k): expected generic, avx2 or avx512 (unset: the widest vector code the CPU runs)")
            }
            guard let modelPath = o.string("--model") else { throw UsageError("missing -m/--model FILE.g2w") }
            let modes = ["--prompt", "--prompt-file", "--tokens", "--tokenize", "--perplexity", "--bench"].filter { o.has($0) }
            let inputs = modes.filter { ["--prompt", "--prompt-file", "--tokens"].contains($0) }
            if inputs.count > 1 { throw UsageError("\(inputs.map(o.spelled).joined(separator: " and ")) exclude each other") }
            let specials = modes.filter { ["--tokenize", "--perplexity", "--bench"].contains($0) }
            if specials.count > 1 || (specials.count == 1 && !inputs.isEmpty) {
                throw UsageError("\(modes.map(o.spelled).joined(separator: " and ")) exclude each other")
            }
            var options = try generationOptions(o)
            let threads = options.threads
            let json = o.has("--json")
            let jsonl = o.has("--jsonl")
            if json && jsonl { throw UsageError("--json and --jsonl exclude each other") }
            if jsonl && !specials.isEmpty { throw UsageError("--jsonl goes with generation (--json for \(specials[0]))") }
            let nProbs = try o.int("--n-probs", range: 0...GenerationState.maxTopLogProbabilities)
            if nProbs != nil && !(json || jsonl) { throw UsageError("--n-probs goes with --json or --jsonl") }
            if o.has("--kl-base") && !o.has("--perplexity") { throw UsageError("--kl-base goes with --perplexity") }
            let interactiveFlags = ["--interactive", "--conversation"].filter { o.has($0) }
            if let f = interactiveFlags.first {
                if !specials.isEmpty { throw UsageError("\(o.spelled(f)) goes with generation, not \(specials[0])") }
                if o.has("--tokens") { throw UsageError("\(o.spelled(f)) reads text prompts; it cannot go with --tokens") }
                if json || jsonl { throw UsageError("\(o.spelled(f)) and \(json ? "--json" : "--jsonl") exclude each other") }
            }

            if o.has("--bench") {
                for flag in ["--special"] where o.has(flag) { throw UsageError("\(o.spelled(flag)) goes with text input, not --bench") }
                return try BenchCommand.run(modelPath: modelPath, options: o, threads: threads)
            }
            let t0 = Date()
            let model = try openModel(modelPath)
            let loadSeconds = Date().timeIntervalSince(t0)
            let special = o.has("--special")
            func encode(_ text: String) throws -> [Int] {
                special ? try model.requireTokenizer().encode(text, allowSpecialTokens: true) : try model.encode(text)
            }

            if let text = o.string("--tokenize") {
                let ids = try encode(text)
                print(json ? "[\(ids.map(String.init).joined(separator: ", "))]" : ids.map(String.init).joined(separator: ","))
                return 0
            }
            if let file = o.string("--perplexity") {
                return try PerplexityCommand.run(model: model, file: file, options: o, threads: threads, encode: encode)
            }
            for flag in ["--ppl-method", "--stride", "--pp", "--tg", "--reps"] where o.has(flag) {
                throw UsageError("\(o.spelled(flag)) goes with \(["--pp", "--tg", "--reps"].contains(flag) ? "--bench" : "--perplexity")")
            }
            let nctx = model.configuration.contextLength
            var context = nctx
            if let c = try o.int("--ctx", range: 0...Int.max), c != 0 {
                guard c <= nctx else { throw UsageError("\(o.spelled("--ctx")) \(c) exceeds the model's context (n_ctx \(nctx))") }
                guard c >= 2 else { throw UsageError("\(o.spelled("--ctx")) \(c) leaves no room to generate (expected 0, or 2...\(nctx))") }
                context = c
            }
            options.logProbabilities = json || jsonl ? (nProbs ?? 0) : nil
            let run = Generation(model: model, options: options, context: context, contextFlag: o.has("--ctx") && context != nctx ? o.spelled("--ctx") : nil,
                                 maxTokensFlag: o.spelled("--max-tokens"), explicitMaxTokens: options.maxTokens,
                                 output: json ? .json : jsonl ? .jsonl : .text, echo: !o.has("--no-echo"), quiet: o.has("--quiet"),
                                 loadSeconds: loadSeconds, modelPath: modelPath)

            if let ids = o.string("--tokens") {
                if special { throw UsageError("\(o.spelled("--special")) applies to text prompts, not --tokens") }
                let prompt = try parseTokenList(ids)
                return try run.once(prompt: prompt, promptText: nil)
            }
            var promptText: String?
            if let p = o.string("--prompt") { promptText = p }
            // No prompt longer than the context can be used: what is read is bounded by n_ctx
            // (1 KB per token, at least 1 MB, at most 256 MB), so /dev/zero or a huge file is an
            // error at once rather than memory growing without end.
            let promptLimit = min(max(1 << 20, nctx * 1024), 256 << 20)
            if let f = o.string("--prompt-file") {
                let d = try G2WFileReading.readRegularFile(f, limit: promptLimit, what: "prompt file")
                guard let s = String(validating: d, as: UTF8.self) else { throw ToolError("\(f): the prompt file is not valid UTF-8") }
                promptText = s
            }
            let interactive = !interactiveFlags.isEmpty || (promptText == nil && Console.stdinIsTerminal)
            if promptText == nil && !interactive {
                let d = try G2WFileReading.readAll(0, limit: promptLimit, path: "stdin", what: "prompt")
                guard let s = String(validating: d, as: UTF8.self) else { throw ToolError("stdin: the prompt is not valid UTF-8") }
                promptText = s
            }
            if !interactive, let text = promptText {
                return try run.once(prompt: try encode(text), promptText: text)
            }
            return try run.interactive(first: promptText, keepConversation: o.has("--conversation"), encode: encode)
        }
    }

    /// Opens a model; a file of another kind (safetensors, a Hugging Face directory, PyTorch,
    /// GGUF) is named as such with the command that converts it.
    /// `flag` is the option that named the file ("" for a positional argument); messages start with it.
    static func openModel(_ path: String, flag: String = "", then: @escaping (String) -> String = { "g2w-run -m \($0)" }) throws -> GPT2Model {
        do { return try GPT2Model(path: path) } catch {
            let prefix = flag.isEmpty ? "" : "\(flag) "
            if let hint = FileKind.notG2WMessage(path, then: then) { throw ToolError(prefix + hint) }
            let text = CLIErrors.message(error)
            throw ToolError(prefix + (text.hasPrefix(path) ? text : "\(path): \(text)"))
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
        if g.stopStrings.contains("") { throw UsageError("\(o.spelled("--stop")) needs a non-empty string") }
        g.stopAtEndOfText = !o.has("--ignore-eos")
        g.threads = try o.int("--threads", range: 1...1024)
        g.kvType = try kvType(o)
        return g
    }

    static func kvType(_ o: ParsedOptions) throws -> G2WDType {
        guard let v = o.string("--kv-type") else { return .f32 }
        guard let t = G2WDType(name: v), t == .f32 || t == .f16 else { throw UsageError("invalid value for --kv-type: '\(escapedForDisplay(v))' (expected f32 or f16)") }
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
}

// MARK: - Ctrl-C

/// SIGINT while generating stops the generation (the generator checks between prompt chunks and
/// before each token); a second one, or one while no generation runs (at the interactive prompt),
/// exits at once with status 130.
enum Interrupt {
    static let count = Atomic<Int>(0)
    static let generating = Atomic<Bool>(false)

    static func install() {
        _ = count.load(ordering: .relaxed)
        _ = generating.load(ordering: .relaxed)
        signal(SIGINT) { _ in
            let first = Interrupt.count.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue == 0
            if !Interrupt.generating.load(ordering: .sequentiallyConsistent) || !first {
                let nl: [UInt8] = [10]
                _ = nl.withUnsafeBytes { write(2, $0.baseAddress, 1) }
                _exit(130)
            }
        }
    }

    /// Marks a generation as running (or not); a new generation starts with no interrupt pending.
    static func setGenerating(_ on: Bool) {
        if on { count.store(0, ordering: .sequentiallyConsistent) }
        generating.store(on, ordering: .sequentiallyConsistent)
    }

    static var requested: Bool { count.load(ordering: .sequentiallyConsistent) > 0 }
}

// MARK: - Generation

/// One configured generation command: output form, context, flags for messages.
struct Generation {
    enum Output { case text, json, jsonl }

    let model: GPT2Model
    let options: GenerationOptions
    /// The context size in effect (`-c`, or n_ctx).
    let context: Int
    /// The flag as typed when `-c` set a context below n_ctx, for messages.
    let contextFlag: String?
    let maxTokensFlag: String
    let explicitMaxTokens: Int?
    let output: Output
    let echo: Bool
    let quiet: Bool
    let loadSeconds: Double
    let modelPath: String

    var greedy: Bool { options.sampling.temperature == 0 || options.sampling.topK == 1 }
    var contextWords: String { contextFlag.map { "the context of \(context) tokens (\($0) \(context))" } ?? "the model's context of \(context) tokens" }

    static func tokens(_ n: Int) -> String { n == 1 ? "1 token" : "\(n) tokens" }

    /// New tokens at most for a prompt of `count` tokens in the context (`-n`, or up to 128),
    /// with the CLI's words when they do not fit.
    func budget(promptCount count: Int, maxTokens: Int?) throws -> Int {
        let room = context - count
        if count > context {
            throw ToolError("the prompt has \(Self.tokens(count)), more than \(contextWords); use a shorter prompt")
        }
        if let n = maxTokens {
            if n <= room { return n }
            if room == 0 { throw ToolError("the prompt has \(Self.tokens(count)) and fills \(contextWords): there is no room to generate; use a shorter prompt") }
            throw ToolError("the prompt (\(Self.tokens(count))) plus \(maxTokensFlag) \(n) exceeds \(contextWords); use \(maxTokensFlag) \(room) or less, or a shorter prompt")
        }
        guard room > 0 else { throw ToolError("the prompt has \(Self.tokens(count)) and fills \(contextWords): there is no room to generate; use a shorter prompt") }
        return min(GenerationOptions.defaultMaxTokens, room)
    }

    /// A generation from `prompt` (token ids; empty: from `<|endoftext|>`): streamed, then the
    /// timings. Exit status 0, or 130 when Ctrl-C stopped it.
    func once(prompt: [Int], promptText: String?) throws -> Int32 {
        var opts = options
        opts.maxTokens = try budget(promptCount: max(prompt.count, 1), maxTokens: explicitMaxTokens)
        let generator = try GPT2Generator(model: model, prompt: prompt, options: opts)
        if output == .text && echo {
            if let t = promptText { Console.out(t) } else if let tok = try model.tokenizer { Console.out((try? tok.decodeText(prompt)) ?? "") }
        }
        Interrupt.install()
        let result = try stream(generator, promptText: promptText)
        if !quiet { timings(result, generator: generator, load: true) }
        return result.stopReason == .cancelled && Interrupt.requested ? 130 : 0
    }

    /// Runs `generator` to its end (or Ctrl-C), printing as `output` says.
    func stream(_ generator: GPT2Generator, promptText: String?) throws -> GenerationResult {
        generator.isCancelled = { Interrupt.requested }
        Interrupt.setGenerating(true)
        defer { Interrupt.setGenerating(false) }
        let tokenizer = try model.tokenizer
        // The text of a token (lossy UTF-8: a token can hold part of a character).
        let tokenText: (Int) -> String = { id in tokenizer.flatMap { try? $0.tokenBytes(id) }.map { String(decoding: $0, as: UTF8.self) } ?? "" }
        var pieces: [String] = []
        while let piece = try generator.next() {
            switch output {
            case .text:
                if tokenizer != nil { Console.out(piece.text) } else if piece.token >= 0 { Console.out("\(piece.token) ") }
            case .jsonl:
                Console.out(pieceJSON(piece, tokenText: tokenText) + "\n")
            case .json:
                pieces.append(pieceJSON(piece, tokenText: tokenText))
            }
        }
        let result = generator.result
        switch output {
        case .text:
            Console.out("\n")
        case .jsonl:
            Console.out("{" + summaryFields(result, generator: generator, promptText: promptText).joined(separator: ", ") + "}\n")
        case .json:
            var fields = summaryFields(result, generator: generator, promptText: promptText)
            fields.insert("\"pieces\": [\(pieces.joined(separator: ", "))]", at: fields.count - 1)
            Console.out("{" + fields.joined(separator: ", ") + "}\n")
        }
        return result
    }

    /// `{"id": 464, "text": " The", "logprob": -2.1, "top_logprobs": [...]}`; text released at the
    /// end (held back for a stop string) has id null.
    func pieceJSON(_ p: GeneratedPiece, tokenText: (Int) -> String) -> String {
        var f = ["\"id\": \(p.token >= 0 ? String(p.token) : "null")", "\"text\": \(jsonString(p.text))"]
        if p.token >= 0, let lp = p.logProbability { f.append("\"logprob\": \(jsonNumber(lp))") }
        if p.token >= 0, options.logProbabilities ?? 0 > 0 {
            let top = p.topLogProbabilities.map { t in
                "{\"id\": \(t.token), \"text\": \(jsonString(tokenText(t.token))), \"logprob\": \(jsonNumber(t.logProbability))}"
            }
            f.append("\"top_logprobs\": [\(top.joined(separator: ", "))]")
        }
        return "{" + f.joined(separator: ", ") + "}"
    }

    func stopReasonName(_ r: StopReason) -> String {
        switch r {
        case .maxTokens: return "max_tokens"
        case .endOfText: return "end_of_text"
        case .stopString: return "stop_string"
        case .cancelled: return "cancelled"
        }
    }

    /// The fields of the final JSON object (the last one is "timings").
    func summaryFields(_ r: GenerationResult, generator: GPT2Generator, promptText: String?) -> [String] {
        var f: [String] = []
        f.append("\"model\": \(jsonString(modelPath))")
        f.append("\"prompt\": \(promptText.map(jsonString) ?? "null")")
        f.append("\"prompt_ids\": [\(r.promptTokens.map(String.init).joined(separator: ", "))]")
        if r.promptTokens != generator.state.input {
            f.append("\"input_ids\": [\(generator.state.input.map(String.init).joined(separator: ", "))]")
        }
        f.append("\"ids\": [\(r.tokens.map(String.init).joined(separator: ", "))]")
        f.append("\"text\": \(jsonString(r.text))")
        f.append("\"stop_reason\": \"\(stopReasonName(r.stopReason))\"")
        if case let .stopString(s) = r.stopReason { f.append("\"stop_string\": \(jsonString(s))") }
        f.append("\"seed\": \(greedy ? "null" : String(r.seed))")
        let threads = options.threads ?? ProcessInfo.processInfo.activeProcessorCount
        f.append("\"threads\": \(threads)")
        f.append("\"weights\": \(jsonString(model.weightTypesDescription))")
        let pt = generator.state.input.count, gt = r.tokens.count
        func rate(_ n: Int, _ s: Double) -> String { n > 0 && s > 1e-9 ? jsonNumber(Double(n) / s) : "null" }
        f.append("\"timings\": {\"load_ms\": \(jsonNumber(loadSeconds * 1000)), \"prompt_tokens\": \(pt), \"prompt_ms\": \(jsonNumber(r.promptSeconds * 1000)), "
                 + "\"prompt_tokens_per_second\": \(rate(r.promptSeconds > 0 ? pt : 0, r.promptSeconds)), \"generated_tokens\": \(gt), "
                 + "\"evaluated_tokens\": \(r.evaluatedTokens), \"generate_ms\": \(jsonNumber(r.generationSeconds * 1000)), "
                 + "\"generated_tokens_per_second\": \(rate(r.evaluatedTokens, r.generationSeconds))}")
        return f
    }

    /// llama.cpp-style timings on stderr; the load line only when `load`.
    func timings(_ result: GenerationResult, generator: GPT2Generator, load: Bool) {
        let pt = generator.state.input.count, gt = result.tokens.count
        // Rates only over forward passes that ran: the prompt pass (which also gives the first
        // generated token) and the evaluated steps after it (one fewer than the tokens).
        func rate(_ n: Int, _ s: Double) -> String { n > 0 && s > 1e-6 ? String(format: "%.2f tok/s", Double(n) / s) : "-" }
        if load { Console.error(String(format: "g2w-run: load      %9.2f ms", loadSeconds * 1000)) }
        let promptRan = result.promptSeconds > 0 || gt > 0
        Console.error(String(format: "g2w-run: prompt    %9.2f ms / %5d tokens (%@)", result.promptSeconds * 1000, pt,
                             promptRan ? rate(pt, result.promptSeconds) : options.maxTokens == 0 ? "not run: -n 0" : "not run"))
        Console.error(String(format: "g2w-run: generate  %9.2f ms / %5d tokens, %d steps after the prompt pass (%@)", result.generationSeconds * 1000, gt,
                             result.evaluatedTokens, rate(result.evaluatedTokens, result.generationSeconds)))
        let sampling = greedy ? "greedy" : "seed \(result.seed)"
        Console.error("g2w-run: stopped at \(result.stopReason); \(sampling); \(model.weightTypesDescription) weights, \(options.threads ?? ProcessInfo.processInfo.activeProcessorCount) threads")
    }

    /// Interactive mode: a prompt per line from stdin (after `first`, the -p/-f prompt, if any).
    /// Each line starts fresh, or with `keepConversation` continues the text so far in the same
    /// session. Ctrl-C stops the answer; Ctrl-C at the prompt, or Ctrl-D, quits.
    func interactive(first: String?, keepConversation: Bool, encode: (String) throws -> [Int]) throws -> Int32 {
        _ = try model.requireTokenizer()
        Interrupt.install()
        let terminal = Console.stdinIsTerminal
        if !quiet {
            Console.error("g2w-run: interactive mode\(keepConversation ? ", keeping the conversation" : ""): type a prompt and press Enter; Ctrl-C stops an answer, Ctrl-D (or Ctrl-C at the prompt) quits.")
            Console.error(String(format: "g2w-run: load      %9.2f ms", loadSeconds * 1000))
        }
        let session = keepConversation ? try GPT2Session(model: model, threads: options.threads, kvType: options.kvType) : nil
        // Every token of the conversation (what the session holds, and the last generated token
        // that is not in it yet).
        var conversation: [Int] = []
        var conversationEndsWithNewline = true
        var seedOffset: UInt64 = 0
        var pendingFirst = first
        while true {
            let line: String
            var echoLine = false
            if let f = pendingFirst {
                line = f
                pendingFirst = nil
                echoLine = echo
            } else {
                Console.out("> ")
                guard let l = readLine(strippingNewline: true) else { Console.out("\n"); break }
                if !terminal { Console.out(l + "\n") }  // show what was read when it is not typed
                line = l
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            }
            var opts = options
            opts.sampling.seed &+= seedOffset
            seedOffset += 1
            do {
                let generator: GPT2Generator
                if let session {
                    // The line continues the text so far (on a new line if that text does not end
                    // with one); the session already holds all of it but the last generated token.
                    var ids = try encode(conversation.isEmpty || conversationEndsWithNewline ? line : "\n" + line)
                    if conversation.isEmpty && ids.isEmpty, let eos = try model.requireTokenizer().endOfTextID { ids = [eos] }
                    var newTokens = Array(conversation.dropFirst(session.tokens.count)) + ids
                    let want = explicitMaxTokens ?? GenerationOptions.defaultMaxTokens
                    if session.tokens.count + newTokens.count + min(want, context / 2) > context {
                        // Full: keep the most recent half of the context and re-evaluate it.
                        let all = conversation + ids
                        newTokens = Array(all.suffix(context / 2))
                        session.reset()
                        if !quiet { Console.error("g2w-run: context full: keeping the last \(Self.tokens(newTokens.count)) of \(all.count) and re-evaluating them") }
                    }
                    opts.maxTokens = min(want, context - session.tokens.count - newTokens.count)
                    generator = try GPT2Generator(model: model, prompt: newTokens, options: opts, session: session)
                    conversation = session.tokens + newTokens
                } else {
                    let ids = try encode(line)
                    opts.maxTokens = try budget(promptCount: max(ids.count, 1), maxTokens: explicitMaxTokens)
                    generator = try GPT2Generator(model: model, prompt: ids, options: opts)
                }
                if echoLine { Console.out(line) }
                let result = try stream(generator, promptText: line)
                if session != nil {
                    conversation += result.tokens
                    conversationEndsWithNewline = (result.text.isEmpty ? line : result.text).hasSuffix("\n")
                }
                if result.stopReason == .cancelled && !quiet { Console.error("g2w-run: stopped (Ctrl-C); Ctrl-C again at the prompt, or Ctrl-D, quits") }
                if !quiet { timings(result, generator: generator, load: false) }
            } catch let e as ToolError {
                Console.error("g2w-run: error: \(e)")
            } catch {
                Console.error("g2w-run: error: \(CLIErrors.message(error))")
            }
        }
        return 0
    }
}
