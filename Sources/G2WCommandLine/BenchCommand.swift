import Foundation
import G2W
import G2WBenchmark

/// `g2w-run --bench`: machine limits and model speed in one run, printed like llama-bench.
enum BenchCommand {
    /// Opens the model itself (timed), so the process maps it once.
    static func run(modelPath: String, options o: ParsedOptions, threads: Int?) throws -> Int32 {
        for flag in ["--ppl-method", "--ctx", "--stride"] where o.has(flag) { throw UsageError("\(o.spelled(flag)) goes with --perplexity or generation, not --bench") }
        for flag in ["--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n", "--seed", "--stop", "--ignore-eos", "--no-echo"] where o.has(flag) {
            throw UsageError("\(o.spelled(flag)) goes with generation, not --bench (--bench greedy-decodes --tg tokens)")
        }
        let pp = try o.int("--pp", range: 1...1_000_000) ?? 512
        let tg = try o.int("--tg", range: 1...1_000_000) ?? 128
        let reps = try o.int("--reps", range: 1...1000) ?? 5
        let n = threads ?? ProcessInfo.processInfo.activeProcessorCount
        let json = o.has("--json")
        let r: Benchmark.Report
        do {
            r = try Benchmark.run(path: modelPath, threads: n, promptTokens: pp, generatedTokens: tg, reps: reps, kvType: try RunCommand.kvType(o)) { if !json { Console.error("g2w-run: \($0)") } }
        } catch {
            if let hint = FileKind.notG2WMessage(modelPath, then: { "g2w-run -m \($0) --bench" }) { throw ToolError(hint) }
            let text = CLIErrors.message(error)
            throw ToolError(text.hasPrefix(modelPath) ? text : "\(modelPath): \(text)")
        }
        let c = r.configuration
        let gb = 1e9
        if json {
            print("""
            {"model": \(jsonString(modelPath)), "dtype": "\(r.weightDType)", "types": \(jsonString(r.weightTypes)), "n_layer": \(c.layerCount), "n_embd": \(c.embeddingSize), "threads": \(n), "isa": "\(r.isa)", \
            "bandwidth_gb_s": \(r.bandwidth / gb), "llc_bytes": \(r.lastLevelCacheBytes), "peak_gflops": \(r.peakFLOPS / 1e9), "open_ms": \(r.openMilliseconds), "reopen_ms": \(r.reopenMilliseconds), "model_init_ms": \(r.modelInitMilliseconds), "tokenizer_ms": \(r.tokenizerMilliseconds), \
            "pp": {"tokens": \(r.promptTokens), "tok_s": \(r.promptSpeed.mean), "sd": \(r.promptSpeed.sd), "samples": \(r.promptSpeed.samples), "gflops": \(r.promptSpeed.mean * r.promptFLOPsPerToken / 1e9), "peak_fraction": \(r.promptPeakFraction)}, \
            "tg": {"tokens": \(r.generatedTokens), "tok_s": \(r.generationSpeed.mean), "sd": \(r.generationSpeed.sd), "samples": \(r.generationSpeed.samples), "gb_s": \(r.generationSpeed.mean * Double(r.weightBytesPerToken) / gb), "bandwidth_fraction": \(r.generationBandwidthFraction), "ceiling_tok_s": \(r.bandwidth / Double(r.weightBytesPerToken)), "mapped_file_bandwidth_gb_s": \(r.mappedFileBandwidth / gb), "mapped_file_fraction": \(r.generationMappedFileFraction), "mapped_file_fractions": \(r.mappedFileFractions)}, \
            "prefetch": {"bytes": \(r.prefetchBytes), "source": \(jsonString(r.prefetchSource)), "sweep": [\(r.prefetchSweep.map { "{\"bytes\": \($0.bytes), \"tok_s\": \($0.tokensPerSecond)}" }.joined(separator: ", "))]}, \
            "kv_type": "\(r.kvType)", "tg_at_depth": \(r.deepGenerationSpeed.map { "{\"depth\": \(r.depth), \"tok_s\": \($0)}" } ?? "null"), "token_split_ms": {"layer_products": \(r.tokenLayerProducts / 1e6), "lm_head": \(r.tokenHead / 1e6), "other_forward": \(r.tokenOther / 1e6), "attention": \(r.tokenAttention / 1e6), "sampling": \(r.tokenSampling / 1e6), "parallel_sections": \(r.sectionsPerToken), "hand_off_us": \(r.handOffNanoseconds / 1e3)}, \
            "weight_bytes_per_token": \(r.weightBytesPerToken), "rss_bytes": \(r.residentBytes), "rss_anon_bytes": \(r.residentAnonymousBytes), "rss_file_bytes": \(r.residentFileBytes), "kv_cache_bytes": \(r.kvCacheBytes)}
            """)
            return 0
        }
        let llc = r.lastLevelCacheBytes > 0 ? String(format: ", last-level cache %.0f MB", Double(r.lastLevelCacheBytes) / 1e6) : ""
        print(String(format: "machine: %d threads, %@ kernels, read bandwidth %.1f GB/s, peak %.1f GFLOP/s (FMA)%@", n, r.isa, r.bandwidth / gb, r.peakFLOPS / 1e9, llc))
        print(String(format: "model:   %@ (%@, n_layer %d, n_embd %d), %.1f MB of weights read per token; open %.2f ms (map + validate; again in this process %.2f ms), model %.2f ms, tokenizer %.1f ms",
                     modelPath, r.weightTypes, c.layerCount, c.embeddingSize, Double(r.weightBytesPerToken) / 1e6, r.openMilliseconds, r.reopenMilliseconds, r.modelInitMilliseconds, r.tokenizerMilliseconds))
        print("")
        print("| test   |            tok/s |   GB/s | % of bandwidth | GFLOP/s | % of peak FLOP/s |")
        print("| ------ | ---------------: | -----: | -------------: | ------: | ---------------: |")
        print(String(format: "| pp%-4d | %8.1f +- %5.1f |        |                | %7.1f | %15.1f%% |", r.promptTokens, r.promptSpeed.mean, r.promptSpeed.sd,
                     r.promptSpeed.mean * r.promptFLOPsPerToken / 1e9, 100 * r.promptPeakFraction))
        print(String(format: "| tg%-4d | %8.1f +- %5.1f | %6.1f | %13.1f%% |         |                  |", r.generatedTokens, r.generationSpeed.mean, r.generationSpeed.sd,
                     r.generationSpeed.mean * Double(r.weightBytesPerToken) / gb, 100 * r.generationBandwidthFraction))
        if let d = r.deepGenerationSpeed {
            print(String(format: "| tg%-4d | %8.1f @ d%-5d |        |                |         |                  |", r.generatedTokens, d, r.depth))
        }
        print("")
        print(String(format: "Reading the mapped model file itself (page cache, all threads), right before and after each tg pass: %.1f GB/s (median); tg%d reaches %.1f%% of the read around it (median of %d passes: %@).",
                     r.mappedFileBandwidth / gb, r.generatedTokens, 100 * r.generationMappedFileFraction, r.mappedFileFractions.count,
                     r.mappedFileFractions.map { String(format: "%.0f%%", 100 * $0) }.joined(separator: " ")))
        let sweep = r.prefetchSweep.map { String(format: "%d B %.1f%@", $0.bytes, $0.tokensPerSecond, $0.bytes == r.prefetchBytes ? " (chosen)" : "") }.joined(separator: ", ")
        print("Decoding kernels: prefetch \(r.prefetchBytes) B ahead on each stream (\(r.prefetchSource)); short tg passes at each distance, best of 3 interleaved rounds, tok/s: \(sweep).")
        if r.lastLevelCacheBytes > 0 && r.weightBytesPerToken < 2 * r.lastLevelCacheBytes {
            print(String(format: "Note: the %.0f MB of weights are less than twice the %.0f MB last-level cache, which can serve part of each token's reads (more when other processes leave it alone), so tg can pass the bandwidth ceiling; the read of the mapped file, same bytes, is the ceiling to compare with.",
                         Double(r.weightBytesPerToken) / 1e6, Double(r.lastLevelCacheBytes) / 1e6))
        }
        let step = r.tokenLayerProducts + r.tokenHead + r.tokenOther + r.tokenSampling
        func part(_ ns: Double) -> String { String(format: "%.3f ms (%.0f%%)", ns / 1e6, 100 * ns / max(step, 1)) }
        print("Per generated token (a profiled tg\(r.generatedTokens) pass): \(String(format: "%.3f", step / 1e6)) ms = layer matrix products \(part(r.tokenLayerProducts)) + LM head \(part(r.tokenHead)) + the rest of the forward pass \(part(r.tokenOther)) (attention over the KV cache \(String(format: "%.3f", r.tokenAttention / 1e6)) ms; embeddings, LayerNorms, adds) + picking the token \(part(r.tokenSampling)). \(String(format: "%.0f", r.sectionsPerToken)) hand-offs to the worker threads per token, \(String(format: "%.1f", r.handOffNanoseconds / 1e3)) us each with an empty task: \(String(format: "%.3f", r.sectionsPerToken * r.handOffNanoseconds / 1e6)) ms of the token, inside the figures above.")
        print(String(format: "tg ceiling at the measured bandwidth: %.1f tok/s. Resident memory: %.1f MB (anonymous %.1f MB, file-backed %.1f MB); KV cache %.1f MB (\(r.kvType)).",
                     r.bandwidth / Double(r.weightBytesPerToken), Double(r.residentBytes) / 1e6, Double(r.residentAnonymousBytes) / 1e6,
                     Double(r.residentFileBytes) / 1e6, Double(r.kvCacheBytes) / 1e6))
        return 0
    }
}
