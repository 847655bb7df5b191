import Foundation
import G2W
import G2WFormat
import G2WTokenizer
import G2WTraining
import XCTest

/// The whole g2w-train pipeline (text file in, windows, no shuffling, gradient accumulation,
/// warmup + cosine, clipping, evaluation) against the same recipe run by PyTorch + transformers in
/// float64 (`tools/make_pipeline_fixtures.py`): every step's loss and the final validation loss
/// within 1e-5 relative.
final class PipelineTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/training")

    func temporaryDirectory() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-pipeline-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func check(_ name: String) throws {
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("pipeline-\(name).json"))) as! [String: Any]
        let m = doc["model"] as! [String: Int], r = doc["recipe"] as! [String: Any]
        let config = GPT2Configuration(layerCount: m["n_layer"]!, headCount: m["n_head"]!, embeddingSize: m["n_embd"]!, innerSize: m["n_inner"]!,
                                       contextLength: m["n_ctx"]!, vocabularySize: m["vocab_size"]!)
        let untied = doc["untied_head"] as! Bool
        let dir = try temporaryDirectory()
        // The starting model: the fixture's generated weights and GPT-2's tokenizer, as a .g2w file.
        let initPath = dir + "/init.g2w"
        let block = try randomBlock(config, untied: untied, seed: UInt64(doc["splitmix64_seed"] as! Int))
        try GPT2ModelWriter.write(block, to: initPath, tokenizer: GPT2ModelWriter.tokenizerMetadata(try GPT2Tokenizer.gpt2()), writer: "test")

        var c = TrainerConfiguration()
        c.initModel = initPath
        c.trainFiles = [Self.fixtures.appendingPathComponent("shakespeare-6k.txt").path]
        c.validationSplit = r["val_split"] as! Double
        c.windowLength = r["ctx"] as? Int
        c.stride = r["stride"] as? Int
        c.batchSize = r["batch"] as! Int
        c.gradientAccumulation = r["grad_accum"] as! Int
        c.epochs = r["epochs"] as? Int
        c.maxSteps = r["max_steps"] as? Int
        c.decaySteps = r["decay_steps"] as? Int
        c.shuffle = false
        c.learningRate = r["lr"] as! Double
        c.minLearningRate = r["min_lr"] as? Double
        c.warmupSteps = r["warmup"] as! Int
        c.weightDecay = r["weight_decay"] as! Double
        c.beta1 = r["beta1"] as! Double
        c.beta2 = r["beta2"] as! Double
        c.gradientClip = r["grad_clip"] as! Double
        c.evalInterval = 0
        c.evalIters = 0
        c.sampleTokens = 0
        c.outputDirectory = dir + "/out"
        c.threads = 2
        let allLosses = doc["losses"] as! [Double]
        #if DEBUG
        // A debug build runs the kernels unoptimised: the first steps only, on the same schedule
        // (the cosine decays over the whole run's steps), so each still matches PyTorch's. Release
        // builds (CI) run the whole recipe and check the final validation loss.
        c.decaySteps = c.decaySteps ?? allLosses.count
        c.epochs = nil
        c.maxSteps = min(allLosses.count, 6)
        let expected = Array(allLosses.prefix(6))
        #else
        let expected = allLosses
        #endif
        var losses: [Double] = []
        var evaluations: [EvaluationRecord] = []
        var plan: TrainerPlan?
        let summary = try Trainer(configuration: c).run { event in
            switch event {
            case let .step(s): losses.append(s.loss)
            case let .evaluation(e): evaluations.append(e)
            case let .started(p): plan = p
            default: break
            }
        }
        XCTAssertEqual(plan?.trainTokens, doc["train_tokens"] as? Int)
        XCTAssertEqual(plan?.validationTokens, doc["val_tokens"] as? Int)
        XCTAssertEqual(plan?.trainWindows, doc["train_windows"] as? Int)
        XCTAssertEqual(losses.count, expected.count)
        var worst = 0.0
        for (i, (a, b)) in zip(losses, expected).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-5 * b, "\(name): loss of step \(i)")
            worst = max(worst, abs(a - b) / b)
        }
        let val = try XCTUnwrap(summary.finalValidationLoss), expectedVal = doc["final_val_loss"] as! Double
        if expected.count == allLosses.count {
            XCTAssertEqual(val, expectedVal, accuracy: 1e-5 * expectedVal, "\(name): final validation loss")
        }
        print("PipelineTests \(name): \(losses.count) steps, largest relative step-loss difference \(worst), final validation loss \(val) vs \(expectedVal)")
        // The final checkpoint runs as a model and holds the state.
        XCTAssertEqual(try GPT2Model(path: summary.finalCheckpoint).configuration, config)
    }

    func testTiedHeadTwoEpochsWithStride() throws { try check("tied") }
    func testUntiedHeadMaxStepsAcrossEpochs() throws { try check("untied") }
}
