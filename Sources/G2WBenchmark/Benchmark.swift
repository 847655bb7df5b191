import CG2W
import Dispatch
import Foundation
import G2W
import G2WFormat

/// Measures the machine's limits and the model's speed against them, in one run.
///
/// Decoding is memory-bound: each generated token reads every weight once, so the ceiling is
/// read bandwidth / weight bytes per token. Prompt processing is compute-bound: its ceiling is the
/// cores' peak FMA rate.
public enum Benchmark {
    public struct Stat: Sendable {
        public var mean: Double
        public var sd: Double
        public var samples: [Double]
        init(_ xs: [Double]) {
            samples = xs
            let m = xs.reduce(0, +) / Double(max(xs.count, 1))
            mean = m
            sd = xs.count > 1 ? (xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count - 1)).squareRoot() : 0
        }
    }

    public struct Report: Sendable {
        public var configuration: GPT2Configuration
        public var weightDType: G2WDType
        public var threads: Int
        public var isa: String
        /// Bytes per second reading a buffer much larger than the last-level cache, all threads.
        public var bandwidth: Double
        /// The last-level cache (from sysfs), 0 if unknown. A model whose weights are not much
        /// larger than it can be read partly from it, faster than `bandwidth`.
        public var lastLevelCacheBytes: Int
        /// Peak single-precision FLOP/s (register-only FMA loop, all threads).
        public var peakFLOPS: Double
        public var openMilliseconds: Double
        /// Opening the same file again in this (now warm) process: best of 5.
        public var reopenMilliseconds: Double
        public var modelInitMilliseconds: Double
        /// Building the embedded tokenizer (done lazily, on first use), 0 without one.
        public var tokenizerMilliseconds: Double
        public var promptTokens: Int
        public var generatedTokens: Int
        /// Tokens per second.
        public var promptSpeed: Stat
        public var generationSpeed: Stat
        public var weightBytesPerToken: Int
        public var promptFLOPsPerToken: Double
        public var residentBytes: Int
        public var residentAnonymousBytes: Int
        public var residentFileBytes: Int
        public var kvCacheBytes: Int

        /// Bytes per second reading the mapped model file itself (its page-cache pages, 4 KB
        /// pages, all threads): what streaming the weights in place can reach. Measured right
        /// before and right after every counted tg pass (best of two each, on the same worker
        /// pool decoding uses); this is the median of the per-pass figures (the mean of the two reads
        /// around each pass).
        public var mappedFileBandwidth: Double
        /// Per counted tg pass: its weight bytes per second over the read of the mapped file around
        /// it. On a machine whose bandwidth moves from minute to minute, the ratio of figures taken
        /// side by side is the meaningful one.
        public var mappedFileFractions: [Double]

        /// The decoding kernels' prefetch distance per stream (bytes) and where it came from
        /// (``g2w_get_tuning``).
        public var prefetchBytes: Int
        public var prefetchSource: String
        /// Decoding speed (tok/s, best of interleaved rounds of a short tg pass) at each prefetch
        /// distance tried, the chosen one among them: the check that the machine's choice is right.
        public var prefetchSweep: [(bytes: Int, tokensPerSecond: Double)]

        /// Where a decoding step's time goes (one more tg pass with ``GPT2Session/profiling`` on),
        /// per token in nanoseconds: the layers' matrix products, the LM head, everything else of
        /// the forward pass, and picking the next token from the logits (argmax over the vocabulary).
        public var tokenLayerProducts: Double
        public var tokenHead: Double
        public var tokenOther: Double
        /// Of ``tokenOther``: attention over the KV cache (appending to it included).
        public var tokenAttention: Double
        /// Parallel sections per token (hand-offs to the worker threads and back), and the time
        /// one takes with an empty task (median of many, on the same pool): the hand-off cost
        /// that the split above includes.
        public var sectionsPerToken: Double
        public var handOffNanoseconds: Double
        public var tokenSampling: Double
        /// Tokens per second decoding `generatedTokens` after a `depth`-token prompt (best of 2),
        /// nil when the context is shorter than depth + generated tokens.
        public var deepGenerationSpeed: Double?
        public var depth: Int
        public var kvType: G2WDType
        /// Element types in words ("q4_0 (wte q8_0)").
        public var weightTypes: String

        public var generationBandwidthFraction: Double { generationSpeed.mean * Double(weightBytesPerToken) / bandwidth }
        /// The median over tg passes of each pass's speed over the read of the mapped file around it.
        public var generationMappedFileFraction: Double { median(mappedFileFractions) }
        public var promptPeakFraction: Double { promptSpeed.mean * promptFLOPsPerToken / peakFLOPS }
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted(), m = s.count / 2
        return s.count % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2
    }

    /// The size of the largest data or unified CPU cache cpu0 reports in sysfs, 0 if none.
    public static func lastLevelCacheBytes() -> Int {
        var best = (level: 0, bytes: 0)
        for i in 0..<16 {
            let dir = "/sys/devices/system/cpu/cpu0/cache/index\(i)/"
            func read(_ f: String) -> String? { (try? String(contentsOfFile: dir + f, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard let type = read("type"), type != "Instruction", let level = read("level").flatMap({ Int($0) }), let size = read("size") else { continue }
            let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
            let bytes = size.last.flatMap { units[$0] }.flatMap { u in Int(size.dropLast()).map { $0 * u } } ?? Int(size) ?? 0
            if level > best.level { best = (level, bytes) }
        }
        return best.bytes
    }

    /// Read bandwidth with `threads` threads over a `bytes` buffer (best of `reps`); the default
    /// size is 1 GiB or four times the last-level cache, whichever is larger, but at most a quarter
    /// of the physical memory.
    public static func measureBandwidth(threads: Int, bytes: Int? = nil, reps: Int = 5) -> Double {
        let quarter = Int(clamping: ProcessInfo.processInfo.physicalMemory / 4)
        let bytes = bytes ?? min(max(1 << 30, 4 * lastLevelCacheBytes()), max(quarter, 64 << 20))
        let n = bytes / (128 * threads) * 128 * threads
        let buf = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        defer { buf.deallocate() }
        // Ask for transparent huge pages, so that TLB misses do not lower the figure: the probe
        // is meant as the best reachable read rate (the model's own mapping uses 4 KB pages).
        let huge = 2 << 20, start = (Int(bitPattern: buf) + huge - 1) / huge * huge, end = (Int(bitPattern: buf) + n) / huge * huge
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
        memset(buf, 1, n)
        return readBandwidth(UnsafeRawPointer(buf), bytes: n, threads: threads, reps: reps)
    }

    /// Read bandwidth with `threads` threads over `bytes` bytes at `buf` (best of `reps`), on a
    /// worker pool like decoding's (`pool`, or a new one), so both pay the same hand-off.
    static func readBandwidth(_ buf: UnsafeRawPointer, bytes: Int, threads: Int, reps: Int, pool: OpaquePointer? = nil) -> Double {
        let n = bytes / (128 * threads) * 128 * threads
        let per = n / threads
        let own = pool == nil ? g2w_pool_create(threads) : nil
        defer { if let own { g2w_pool_destroy(own) } }
        var best = 0.0
        let sinks = UnsafeMutablePointer<UInt64>.allocate(capacity: threads)
        sinks.initialize(repeating: 0, count: threads)
        defer { sinks.deallocate() }
        var job = ReadJob(base: buf, per: per, sinks: sinks)
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            if let p = pool ?? own {
                withUnsafeMutablePointer(to: &job) { context in
                    g2w_pool_run(p, threads, { context, i, _ in
                        let j = context!.assumingMemoryBound(to: ReadJob.self)
                        j.pointee.sinks[i] ^= g2w_bench_read(j.pointee.base + i * j.pointee.per, j.pointee.per)
                    }, context)
                }
            } else {
                for i in 0..<threads { sinks[i] ^= g2w_bench_read(buf + i * per, per) }
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            best = max(best, Double(n) / s)
        }
        if (0..<threads).reduce(0, { $0 ^ sinks[$1] }) == 42 { print("") }  // keep the reads
        return best
    }

    private struct ReadJob {
        var base: UnsafeRawPointer
        var per: Int
        var sinks: UnsafeMutablePointer<UInt64>  // one per thread: no shared writes
    }

    /// One parallel section in which every thread takes part, in nanoseconds (median; 0 without a pool).
    static func measureHandOff(pool: OpaquePointer?, threads: Int) -> Double {
        guard let pool, threads > 1 else { return 0 }
        return g2w_bench_handoff(pool, 200)
    }

    /// Peak FLOP/s with `threads` threads all running a register-only FMA loop at the same time
    /// (as the prompt kernels run), on a worker pool like decoding's: the best of `reps` rounds,
    /// each started behind a barrier and timed by its slowest thread (``g2w_bench_fma_all``).
    public static func measurePeakFLOPS(threads: Int, reps: Int = 24) -> Double {
        ComputeContext.shared(threads: threads).withPool { pool in
            // Every thread busy at once first, so the scheduler has spread them over the CPUs (a
            // new thread starts beside its parent; two loops sharing one CPU measured half the peak).
            if let pool { _ = g2w_bench_handoff(pool, 2000) }
            // Three spells of rounds, 50 ms apart: one spell can fall in a stretch where the
            // hypervisor gives one vCPU to someone else (1 run in 16 read half the peak with one).
            var best = 0.0
            for spell in 0..<3 {
                if spell > 0 { usleep(50_000) }
                best = max(best, g2w_bench_fma_all(pool, 1_500_000, max(1, reps / 3)))
            }
            return best
        }
    }

    /// Resident memory of this process: (total, anonymous, file-backed) bytes, from /proc.
    public static func residentMemory() -> (Int, Int, Int) {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0, 0) }
        func kb(_ key: String) -> Int {
            for line in s.split(separator: "\n") where line.hasPrefix(key + ":") {
                return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0) * 1024
            }
            return 0
        }
        return (kb("VmRSS"), kb("RssAnon"), kb("RssFile"))
    }

    /// Runs the benchmark on the model at `path`: opens it (timed), then pp and tg, `reps` times.
    public static func run(path: String, threads: Int, promptTokens pp: Int = 512, generatedTokens tg: Int = 128, reps: Int = 5, depth: Int = 896, kvType: G2WDType = .f32,
                           log: (String) -> Void = { _ in }) throws -> Report {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let file = try G2WFile(path: path)
        let t1 = DispatchTime.now().uptimeNanoseconds
        var reopen = Double.infinity
        for _ in 0..<5 {
            let a = DispatchTime.now().uptimeNanoseconds
            _ = try G2WFile(path: path)
            reopen = min(reopen, Double(DispatchTime.now().uptimeNanoseconds - a) / 1e6)
        }
        let t1b = DispatchTime.now().uptimeNanoseconds
        let model = try GPT2Model(file: file)
        let t2 = DispatchTime.now().uptimeNanoseconds
        if model.hasTokenizer { _ = try model.requireTokenizer() }
        let t3 = DispatchTime.now().uptimeNanoseconds
        let c = model.configuration
        let pp = min(pp, c.contextLength)
        let tg = min(tg, c.contextLength)
        log("measuring memory bandwidth (\(threads) threads)...")
        let bw = measureBandwidth(threads: threads)
        log("measuring peak FMA throughput...")
        let peak = measurePeakFLOPS(threads: threads)
        var rng = SeededGenerator(seed: 1)
        let prompt = (0..<pp).map { _ in Int(rng.next() % UInt64(c.vocabularySize)) }
        let compute = ComputeContext.shared(threads: threads)
        let session = try GPT2Session(model: model, compute: compute, kvType: kvType)
        // The weights start after the header region; the file ends with them. Read right before
        // and after each tg pass, so each pass is compared with the read rate of its own minute.
        let dataStart = Int(file.header.dataOffset)
        let readFile = { compute.withPool { readBandwidth(file.baseAddress + dataStart, bytes: Int(file.fileSize) - dataStart, threads: threads, reps: 2, pool: $0) } }
        var ppSpeeds: [Double] = [], tgSpeeds: [Double] = [], fileReads: [Double] = [], fractions: [Double] = []
        for r in 0...reps {  // the first round warms up (page cache, page faults) and is not counted
            session.reset()
            let a = DispatchTime.now().uptimeNanoseconds
            _ = try session.append(prompt)
            let b = DispatchTime.now().uptimeNanoseconds
            session.reset()
            let before = r > 0 ? readFile() : 0
            let c0 = DispatchTime.now().uptimeNanoseconds
            var tok = 0
            for _ in 0..<tg {
                let logits = try session.append([tok])
                tok = Sampler.argmax(logits)
            }
            let e = DispatchTime.now().uptimeNanoseconds
            if r > 0 {
                let read = (before + readFile()) / 2
                ppSpeeds.append(Double(pp) / (Double(b - a) / 1e9))
                tgSpeeds.append(Double(tg) / (Double(e - c0) / 1e9))
                fileReads.append(read)
                fractions.append(tgSpeeds.last! * Double(model.weightBytesPerToken) / read)
                log("rep \(r): pp\(pp) \(String(format: "%.1f", ppSpeeds.last!)) tok/s, tg\(tg) \(String(format: "%.1f", tgSpeeds.last!)) tok/s, mapped-file read \(String(format: "%.1f", read / 1e9)) GB/s")
            }
        }
        // Decoding deep in the context (llama-bench's depth): tg after an 896-token prompt, where
        // attention reads a large KV cache every token. Skipped if the context is too short.
        var deep: Double? = nil
        if c.contextLength >= depth + tg {
            let longPrompt = (0..<depth).map { _ in Int(rng.next() % UInt64(c.vocabularySize)) }
            var best = 0.0
            for _ in 0..<2 {
                session.reset()
                var tok = Sampler.argmax(try session.append(longPrompt))
                let a = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<tg { tok = Sampler.argmax(try session.append([tok])) }
                best = max(best, Double(tg) / (Double(DispatchTime.now().uptimeNanoseconds - a) / 1e9))
            }
            deep = best
        }
        // The time split of a decoding step: one more tg pass, profiled.
        session.reset()
        session.profiling = true
        var tok = 0, sampling: UInt64 = 0
        for _ in 0..<tg {
            let logits = try session.append([tok])
            let a = DispatchTime.now().uptimeNanoseconds
            tok = Sampler.argmax(logits)
            sampling += DispatchTime.now().uptimeNanoseconds - a
        }
        let p = session.profile, perToken = { (ns: UInt64) in Double(ns) / Double(tg) }
        session.profiling = false
        // The machine's prefetch distance against the alternatives: short tg passes at each,
        // interleaved rounds (best of each), about two seconds in all.
        let tuning = g2w_get_tuning()
        let chosen = tuning.prefetch_bytes
        let source = withUnsafeBytes(of: tuning.source) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let candidates = Array(Set([1024, 2048, 4096, chosen])).sorted()
        let sweepTokens = max(4, min(32, tg, Int(median(tgSpeeds) * 2 / Double(3 * candidates.count))))
        var sweepBest = [Double](repeating: 0, count: candidates.count)
        for _ in 0..<3 {
            for (i, bytes) in candidates.enumerated() {
                g2w_set_prefetch_bytes(bytes)
                session.reset()
                var tok = 0
                let a = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<sweepTokens { tok = Sampler.argmax(try session.append([tok])) }
                sweepBest[i] = max(sweepBest[i], Double(sweepTokens) / (Double(DispatchTime.now().uptimeNanoseconds - a) / 1e9))
            }
        }
        g2w_set_prefetch_bytes(0)
        let handOff = compute.withPool { measureHandOff(pool: $0, threads: threads) }
        let (rss, anon, fileRSS) = residentMemory()
        // FLOPs per prompt token: 2 per weight of the layer matrices, attention (QK^T and PV over
        // on average pp/2 positions), and the LM head for the last position only.
        let layerWeights = Double(c.layerCount) * Double(c.embeddingSize) * Double(4 * c.embeddingSize + 2 * c.innerSize)
        let attention = Double(c.layerCount) * 4 * Double(c.embeddingSize) * Double(pp) / 2
        let head = 2 * Double(c.vocabularySize) * Double(c.embeddingSize) / Double(pp)
        return Report(configuration: c, weightDType: model.weightDType, threads: threads, isa: String(cString: g2w_kernel_isa()), bandwidth: bw,
                      lastLevelCacheBytes: lastLevelCacheBytes(), peakFLOPS: peak,
                      openMilliseconds: Double(t1 - t0) / 1e6, reopenMilliseconds: reopen, modelInitMilliseconds: Double(t2 - t1b) / 1e6, tokenizerMilliseconds: Double(t3 - t2) / 1e6,
                      promptTokens: pp, generatedTokens: tg, promptSpeed: Stat(ppSpeeds), generationSpeed: Stat(tgSpeeds),
                      weightBytesPerToken: model.weightBytesPerToken, promptFLOPsPerToken: 2 * layerWeights + attention + head,
                      residentBytes: rss, residentAnonymousBytes: anon, residentFileBytes: fileRSS,
                      kvCacheBytes: 2 * c.layerCount * c.contextLength * c.embeddingSize * kvType.size, mappedFileBandwidth: median(fileReads),
                      mappedFileFractions: fractions, prefetchBytes: chosen, prefetchSource: source,
                      prefetchSweep: zip(candidates, sweepBest).map { (bytes: $0, tokensPerSecond: $1) },
                      tokenLayerProducts: perToken(p.layerProducts), tokenHead: perToken(p.head), tokenOther: perToken(p.other), tokenAttention: perToken(p.attention),
                      sectionsPerToken: Double(p.parallelSections) / Double(tg), handOffNanoseconds: handOff, tokenSampling: perToken(sampling),
                      deepGenerationSpeed: deep, depth: depth, kvType: kvType, weightTypes: model.weightTypesDescription)
    }
}

