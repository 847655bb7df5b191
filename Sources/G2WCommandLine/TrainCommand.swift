import Foundation
import G2W
import G2WTraining
import CG2W

/// `g2w-train`: train and fine-tune GPT-2. This first version measures the training engine.
public enum TrainCommand {
    static let usage = "usage: g2w-train --bench [--shape gpt2|shakespeare|all] [--steps N] [--threads N] [--json]"

    static let parser = OptionParser(specs: [
        OptionSpec(names: ["--bench"], valueName: nil, help: "benchmark the training step (forward + backward + clip + AdamW)\non GPT-2 shapes, with the machine's peak FMA rate"),
        OptionSpec(names: ["--shape"], valueName: "S", help: "gpt2 (124M, B=4, T=64), shakespeare (4 layers, 256 wide, B=16, T=128)\nor all (default)"),
        OptionSpec(names: ["--steps"], valueName: "N", help: "timed steps per shape, after one warm-up step (default 5)"),
        OptionSpec(names: ["--threads"], valueName: "N", help: "worker threads (default: number of cores)"),
        OptionSpec(names: ["--json"], valueName: nil, help: "machine-readable output"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-train", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-train: train and fine-tune GPT-2 (training engine benchmark).

                \(usage)

                \(parser.helpText())

                Exit status: 0 ok, 1 error, 2 usage error.
                """)
                return 0
            }
            if !o.positionals.isEmpty { throw UsageError("unexpected argument '\(o.positionals[0])'") }
            guard o.has("--bench") else { throw UsageError("nothing to do: give --bench") }
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
            let context = ComputeContext(threads: threads)
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
}
