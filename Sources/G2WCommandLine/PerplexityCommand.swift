import Foundation
import G2W
import G2WFormat

/// `g2w-run --perplexity FILE`: perplexity of the model on a text file.
enum PerplexityCommand {
    static func run(model: GPT2Model, file: String, options o: ParsedOptions, threads: Int?, encode: (String) throws -> [Int]) throws -> Int32 {
        // --kl-base: the reference model the tested one (--model) is compared with.
        var base: GPT2Model?
        if let basePath = o.string("--kl-base") {
            let b = try RunCommand.openModel(basePath, flag: "--kl-base", then: { "g2w-run ... --kl-base \($0)" })
            let (tv, bv) = (model.configuration.vocabularySize, b.configuration.vocabularySize)
            guard tv == bv else { throw ToolError("--kl-base \(basePath): \(KLDivergenceError.vocabularyMismatch(tested: tv, base: bv))") }
            base = b
        }
        let nctx = model.configuration.contextLength
        // -c 0: the whole context (llama.cpp: 0 = the model's).
        let baseContext = base?.configuration.contextLength ?? nctx
        var ctx = try o.int("--ctx", range: 0...Int.max) ?? min(512, nctx, baseContext)
        if ctx == 0 { ctx = min(nctx, baseContext) }
        let c = o.spelled("--ctx")
        guard ctx >= 2 else { throw UsageError("invalid value for \(c): '\(ctx)' (a perplexity window needs at least 2 tokens; 0 = n_ctx)") }
        guard ctx <= nctx else { throw UsageError("\(c) \(ctx) exceeds the model's n_ctx \(nctx)") }
        if base != nil, ctx > baseContext {
            throw UsageError("\(c) \(ctx) exceeds the base model's n_ctx \(baseContext)")
        }
        let methodName = o.string("--ppl-method") ?? "chunks"
        let method: PerplexityMethod
        switch methodName {
        case "chunks":
            if o.has("--stride") { throw UsageError("\(o.spelled("--stride")) goes with --ppl-method sliding") }
            method = .chunks(context: ctx)
        case "sliding":
            let stride = try o.int("--stride", range: 1...ctx) ?? max(1, ctx / 2)
            method = .sliding(context: ctx, stride: stride)
        default:
            throw UsageError("invalid value for --ppl-method: '\(escapedForDisplay(methodName))' (expected chunks or sliding)")
        }
        for flag in ["--pp", "--tg", "--reps"] where o.has(flag) { throw UsageError("\(flag) goes with --bench") }
        for flag in ["--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n", "--seed", "--stop", "--ignore-eos", "--no-echo"] where o.has(flag) {
            throw UsageError("\(o.spelled(flag)) goes with generation, not --perplexity")
        }
        if o.has("--kv-type") { throw UsageError("--kv-type goes with generation and --bench (perplexity keeps the cache in f32)") }
        let data = try G2WFileReading.readRegularFile(file, limit: 1 << 30, what: "text")
        guard let text = String(validating: data, as: UTF8.self) else { throw ToolError("\(file): not valid UTF-8 text") }
        guard !text.isEmpty else { throw ToolError("\(file): the file is empty") }
        let tokenizeStart = Date()
        let tokens = try encode(text)
        let tokenizeSeconds = Date().timeIntervalSince(tokenizeStart)
        let quiet = o.has("--quiet")
        let bar = ProgressBar(enabled: !o.has("--json") && !quiet && Console.stderrIsTerminal, unit: "windows")
        if let base {
            return try compare(model: model, base: base, tokens: tokens, file: file, method: method, methodName: methodName, ctx: ctx,
                               options: o, threads: threads, tokenizeSeconds: tokenizeSeconds, bar: bar)
        }
        let r: PerplexityResult
        do {
            r = try model.perplexity(tokens: tokens, method: method, threads: threads) { done, total in
                bar.update(done: done, total: total, bytes: 0, totalBytes: 0)
            }
        } catch {
            bar.clear()
            throw ToolError("\(file): \(windowHint(error, o))")
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
            if !quiet {
            Console.error("g2w-run: \(r.method): \(r.windowCount) windows, \(grouped(r.scoredCount)) of \(grouped(r.tokenCount)) tokens scored, mean NLL \(String(format: "%.6f", r.meanNLL))")
            Console.error(String(format: "g2w-run: evaluated in %.2f s (%.1f tok/s); tokenized in %.2f s", r.seconds, r.tokensPerSecond, tokenizeSeconds))
            }
        }
        return 0
    }

    /// `--perplexity FILE --kl-base BASE.g2w`: both models over the same windows, llama-perplexity's
    /// `--kl-divergence` statistics of the tested model (Q) against the base.
    static func compare(model: GPT2Model, base: GPT2Model, tokens: [Int], file: String, method: PerplexityMethod, methodName: String, ctx: Int,
                        options o: ParsedOptions, threads: Int?, tokenizeSeconds: Double, bar: ProgressBar) throws -> Int32 {
        let r: KLDivergenceResult
        do {
            r = try model.klDivergence(against: base, tokens: tokens, method: method, threads: threads) { done, total in
                bar.update(done: done, total: total, bytes: 0, totalBytes: 0)
            }
        } catch let e as KLDivergenceError {
            bar.clear()
            throw ToolError("--kl-base \(o.string("--kl-base")!): \(e)")
        } catch {
            bar.clear()
            throw ToolError("\(file): \(windowHint(error, o))")
        }
        bar.clear()
        let t = r.tested, b = r.base
        if o.has("--json") {
            var fields = ["\"file\": \(jsonString(file))", "\"kl_base\": \(jsonString(o.string("--kl-base")!))", "\"method\": \"\(methodName)\"", "\"ctx\": \(ctx)"]
            if case let .sliding(_, s) = method { fields.append("\"stride\": \(s)") }
            fields += ["\"tokens\": \(r.tokenCount)", "\"scored\": \(r.scoredCount)", "\"windows\": \(r.windowCount)",
                       "\"perplexity\": \(jsonNumber(t.perplexity))", "\"standard_error\": \(jsonNumber(t.standardError))", "\"mean_nll\": \(jsonNumber(t.meanNLL))",
                       "\"base_perplexity\": \(jsonNumber(b.perplexity))", "\"base_standard_error\": \(jsonNumber(b.standardError))",
                       "\"base_mean_nll\": \(jsonNumber(b.meanNLL))",
                       "\"ppl_ratio\": \(jsonNumber(r.perplexityRatio))", "\"ppl_ratio_standard_error\": \(jsonNumber(r.perplexityRatioStandardError))",
                       "\"ppl_change_percent\": \(jsonNumber(r.perplexityChangePercent))",
                       "\"ln_ppl_ratio\": \(jsonNumber(r.logPerplexityRatio))", "\"ln_ppl_ratio_standard_error\": \(jsonNumber(r.logPerplexityRatioStandardError))",
                       "\"ln_ppl_correlation\": \(jsonNumber(r.logPerplexityCorrelation))",
                       "\"ppl_difference\": \(jsonNumber(r.perplexityDifference))", "\"ppl_difference_standard_error\": \(jsonNumber(r.perplexityDifferenceStandardError))",
                       "\"kld_mean\": \(jsonNumber(r.meanKL))", "\"kld_standard_error\": \(jsonNumber(r.klStandardError))",
                       "\"kld_min\": \(jsonNumber(r.klMinimum))", "\"kld_median\": \(jsonNumber(r.klMedian))", "\"kld_p90\": \(jsonNumber(r.klPercentile(0.9)))",
                       "\"kld_p99\": \(jsonNumber(r.klPercentile(0.99)))", "\"kld_p99_9\": \(jsonNumber(r.klPercentile(0.999)))", "\"kld_max\": \(jsonNumber(r.klMaximum))",
                       "\"same_top\": \(jsonNumber(r.sameTopFraction))", "\"same_top_standard_error\": \(jsonNumber(r.sameTopStandardError))",
                       "\"delta_p_mean\": \(jsonNumber(r.meanDeltaP))", "\"delta_p_mean_standard_error\": \(jsonNumber(r.meanDeltaPStandardError))",
                       "\"delta_p_rms\": \(jsonNumber(r.rmsDeltaP))", "\"delta_p_rms_standard_error\": \(jsonNumber(r.rmsDeltaPStandardError))",
                       "\"delta_p_max_abs\": \(jsonNumber(r.maxAbsDeltaP))",
                       "\"seconds\": \(r.seconds)", "\"tokens_per_second\": \(r.tokensPerSecond)", "\"tokenize_seconds\": \(tokenizeSeconds)"]
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            func line(_ label: String, _ value: String) { print(label.padding(toLength: 28, withPad: " ", startingAt: 0) + ": " + value) }
            line("PPL(Q)", String(format: "%.4f +/- %.4f", t.perplexity, t.standardError))
            line("PPL(base)", String(format: "%.4f +/- %.4f", b.perplexity, b.standardError))
            line("Cor(ln PPL(Q), ln PPL(base))", String(format: "%.2f %%", 100 * r.logPerplexityCorrelation))
            line("ln(PPL(Q)/PPL(base))", String(format: "%.6f +/- %.6f", r.logPerplexityRatio, r.logPerplexityRatioStandardError))
            line("PPL(Q)/PPL(base) - 1", String(format: "%.4f +/- %.4f %%", r.perplexityChangePercent, 100 * r.perplexityRatioStandardError))
            line("PPL(Q) - PPL(base)", String(format: "%.4f +/- %.4f", r.perplexityDifference, r.perplexityDifferenceStandardError))
            line("KLD mean", String(format: "%.4e +/- %.4e", r.meanKL, r.klStandardError))
            line("KLD median", String(format: "%.4e", r.klMedian))
            line("KLD 99%", String(format: "%.4e", r.klPercentile(0.99)))
            line("KLD 99.9%", String(format: "%.4e", r.klPercentile(0.999)))
            line("KLD max", String(format: "%.4e", r.klMaximum))
            line("Same top token", String(format: "%.3f +/- %.3f %%", 100 * r.sameTopFraction, 100 * r.sameTopStandardError))
            line("Mean \u{394}p", String(format: "%.4f +/- %.4f %%", 100 * r.meanDeltaP, 100 * r.meanDeltaPStandardError))
            line("RMS \u{394}p", String(format: "%.4f +/- %.4f %%", 100 * r.rmsDeltaP, 100 * r.rmsDeltaPStandardError))
            line("Max |\u{394}p|", String(format: "%.4f %%", 100 * r.maxAbsDeltaP))
            if !o.has("--quiet") {
            Console.error("g2w-run: \(r.method): \(r.windowCount) windows, \(grouped(r.scoredCount)) of \(grouped(r.tokenCount)) tokens scored; Q = \(model.file.path) (\(model.weightDType)), base = \(base.file.path) (\(base.weightDType))")
            Console.error(String(format: "g2w-run: evaluated both models in %.2f s (%.1f tok/s per model); tokenized in %.2f s", r.seconds, r.tokensPerSecond, tokenizeSeconds))
            }
        }
        return 0
    }

    /// The library's message for a text shorter than one window, with the flag that changes the
    /// window (the library names no flags).
    static func windowHint(_ error: Error, _ o: ParsedOptions) -> String {
        let text = CLIErrors.message(error)
        guard text.contains("fewer than one window") else { return text }
        let flag = o.has("--ctx") ? o.spelled("--ctx") : "-c"
        var plain = text
        for tail in [" (use a smaller window)", " (use a smaller --ctx)"] where plain.hasSuffix(tail) { plain.removeLast(tail.count) }
        return "\(plain): use a smaller window (\(flag) N)"
    }
}
