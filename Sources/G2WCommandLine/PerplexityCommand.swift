import Foundation
import G2W

/// `g2w-run --perplexity FILE`: perplexity of the model on a text file.
enum PerplexityCommand {
    static func run(model: GPT2Model, file: String, options o: ParsedOptions, threads: Int?) throws -> Int32 {
        let nctx = model.configuration.contextLength
        let ctx = try o.int("--ctx", range: 2...Int.max) ?? min(512, nctx)
        guard ctx <= nctx else { throw UsageError("--ctx \(ctx) exceeds the model's n_ctx \(nctx)") }
        let methodName = o.string("--ppl-method") ?? "chunks"
        let method: PerplexityMethod
        switch methodName {
        case "chunks":
            if o.has("--stride") { throw UsageError("--stride goes with --ppl-method sliding") }
            method = .chunks(context: ctx)
        case "sliding":
            let stride = try o.int("--stride", range: 1...ctx) ?? max(1, ctx / 2)
            method = .sliding(context: ctx, stride: stride)
        default:
            throw UsageError("invalid value for --ppl-method: '\(methodName)' (expected chunks or sliding)")
        }
        for flag in ["--pp", "--tg", "--reps"] where o.has(flag) { throw UsageError("\(flag) goes with --bench") }
        guard let data = FileManager.default.contents(atPath: file) else { throw ToolError("\(file): cannot read") }
        guard let text = String(data: data, encoding: .utf8) else { throw ToolError("\(file): not valid UTF-8 text") }
        guard !text.isEmpty else { throw ToolError("\(file): the file is empty") }
        let tokenizeStart = Date()
        let tokens = try model.encode(text)
        let tokenizeSeconds = Date().timeIntervalSince(tokenizeStart)
        let bar = ProgressBar(enabled: !o.has("--json") && Console.stderrIsTerminal)
        let r: PerplexityResult
        do {
            r = try model.perplexity(tokens: tokens, method: method, threads: threads) { done, total in
                bar.update(done: done, total: total, bytes: 0, totalBytes: 0)
            }
        } catch {
            bar.clear()
            throw ToolError("\(file): \(error)")
        }
        bar.clear()
        if o.has("--json") {
            var fields = ["\"file\": \(jsonString(file))", "\"method\": \"\(methodName)\"", "\"ctx\": \(ctx)"]
            if case let .sliding(_, s) = method { fields.append("\"stride\": \(s)") }
            fields += ["\"tokens\": \(r.tokenCount)", "\"scored\": \(r.scoredCount)", "\"windows\": \(r.windowCount)",
                       "\"perplexity\": \(r.perplexity)", "\"standard_error\": \(r.standardError)", "\"mean_nll\": \(r.meanNLL)",
                       "\"seconds\": \(r.seconds)", "\"tokens_per_second\": \(r.tokensPerSecond)", "\"tokenize_seconds\": \(tokenizeSeconds)"]
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            print(String(format: "perplexity: %.4f +/- %.4f", r.perplexity, r.standardError))
            Console.error("g2w-run: \(r.method): \(r.windowCount) windows, \(grouped(r.scoredCount)) of \(grouped(r.tokenCount)) tokens scored, mean NLL \(String(format: "%.6f", r.meanNLL))")
            Console.error(String(format: "g2w-run: evaluated in %.2f s (%.1f tok/s); tokenized in %.2f s", r.seconds, r.tokensPerSecond, tokenizeSeconds))
        }
        return 0
    }
}
