import Foundation
import G2WTokenizer
import XCTest

/// Throughput figures, not a timed test: runs only with `G2W_BENCH=1` in the environment.
///
///     G2W_BENCH=1 swift test -c release --scratch-path .build-tok --filter G2WTokenizerTests.BenchmarkTests
final class BenchmarkTests: XCTestCase {
    private func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    func testBenchmarkEncode() throws {
        guard ProcessInfo.processInfo.environment["G2W_BENCH"] == "1" else {
            throw XCTSkip("set G2W_BENCH=1 to run the tokenizer benchmark")
        }
        var report = ["G2WTokenizer benchmark (single thread, best of runs)"]
        var loadTimes: [Double] = []
        for _ in 0..<5 {
            loadTimes.append(try seconds {
                _ = try GPT2Tokenizer.load(encoderJSON: Fixtures.vocabJSON.path, vocabBPE: Fixtures.mergesTXT.path)
            })
        }
        report.append(String(format: "load encoder.json + vocab.bpe: %.1f ms (best of 5)", loadTimes.min()! * 1000))
        var vocabulary: [String] = []
        var merges: [String] = []
        let exportTime = seconds { vocabulary = gpt2.vocabularyInIDOrder; merges = gpt2.mergeStrings }
        var buildTimes: [Double] = []
        for _ in 0..<5 {
            buildTimes.append(try seconds { _ = try GPT2Tokenizer(vocabulary: vocabulary, merges: merges) })
        }
        report.append(String(format: "build from [String] arrays (as from .g2w metadata): %.1f ms (best of 5); exporting them: %.1f ms",
                             buildTimes.min()! * 1000, exportTime * 1000))

        for (name, file) in [("tinyshakespeare", "tinyshakespeare.txt"), ("wiki.test", "wiki.test.raw")] {
            let url = Fixtures.corpusDir.appendingPathComponent(file)
            guard let data = try? Data(contentsOf: url) else {
                report.append("\(name): \(url.path) absent, skipped")
                continue
            }
            let text = String(decoding: data, as: UTF8.self)
            var ids: [Int] = []
            var best = Double.infinity
            for _ in 0..<5 { best = min(best, seconds { ids = gpt2.encode(text) }) }
            report.append(String(format: "%@: %d bytes -> %d tokens, %.1f ms, %.2f MB/s",
                                 name, data.count, ids.count, best * 1000, Double(data.count) / best / 1e6))
        }

        let manifest = try Fixtures.manifest()
        let entries = manifest["pathological"] as! [String: [String: Any]]
        for (name, recipe) in entries.sorted(by: { $0.key < $1.key }) {
            let text = pathologicalText(recipe)
            var ids: [Int] = []
            var best = Double.infinity
            for _ in 0..<3 { best = min(best, seconds { ids = gpt2.encode(text) }) }
            report.append(String(format: "%@: %d bytes -> %d tokens, %.1f ms, %.2f MB/s",
                                 name, text.utf8.count, ids.count, best * 1000, Double(text.utf8.count) / best / 1e6))
        }
        // Linearity: 10x the input should take about 10x the time.
        for n in [100_000, 1_000_000] {
            let text = String(repeating: "a", count: n)
            var best = Double.infinity
            for _ in 0..<3 { best = min(best, seconds { _ = gpt2.encode(text) }) }
            report.append(String(format: "\"a\" x %d: %.1f ms", n, best * 1000))
        }
        print(report.joined(separator: "\n"))
    }
}
