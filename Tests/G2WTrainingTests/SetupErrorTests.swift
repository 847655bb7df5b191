import Foundation
import G2W
import G2WTraining
import XCTest

/// The trainer's set-up errors: a reason a caller can match, a message in the library's terms
/// (no command-line flag: the tools add theirs) that names a file once.
final class SetupErrorTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    var text: String { Self.fixtures.appendingPathComponent("training/shakespeare-6k.txt").path }

    /// A 1-layer, 16-wide model from scratch, trained on the 6k-character fixture.
    func configuration() -> TrainerConfiguration {
        var c = TrainerConfiguration()
        c.layerCount = 1
        c.headCount = 2
        c.embeddingSize = 16
        c.contextLength = 32
        c.windowLength = 16
        c.batchSize = 4
        c.trainFiles = [text]
        c.evalInterval = 0
        c.sampleTokens = 0
        c.outputDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-setup-\(UUID().uuidString)").path
        c.threads = 1
        addTeardownBlock { [dir = c.outputDirectory] in try? FileManager.default.removeItem(atPath: dir) }
        return c
    }

    /// A message a command line could have written: "--ctx", "-n 3".
    func flags(in message: String) -> [String] {
        message.split(whereSeparator: { $0 == " " || $0 == "(" }).map(String.init)
            .filter { $0.range(of: #"^--?[a-z]"#, options: .regularExpression) != nil }
    }

    func setupError(_ c: TrainerConfiguration, resume: String? = nil, file: StaticString = #filePath, line: UInt = #line) -> Trainer.SetupError? {
        do {
            _ = try Trainer(configuration: c, resume: resume).run()
            XCTFail("the run was set up", file: file, line: line)
        } catch let e as Trainer.SetupError {
            XCTAssertEqual(flags(in: e.description), [], "a flag in the library's message: \(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("\(type(of: error)): \(error)", file: file, line: line)
        }
        return nil
    }

    func testSettingsErrorsHaveReasonsAndNameNoFlags() throws {
        var c = configuration()
        c.windowLength = 64
        var e = setupError(c)
        XCTAssertEqual(e?.reason, .windowLengthOutOfRange(64, contextLength: 32))
        XCTAssertEqual(e?.isUsage, true)
        XCTAssertTrue(e?.description.contains("window length") == true && e?.description.contains("windowLength") == true, "\(String(describing: e))")

        c = configuration()
        c.gradientAccumulation = 0
        e = setupError(c)
        XCTAssertEqual(e?.reason, .gradientAccumulationBelowOne(0))
        XCTAssertEqual(e?.isUsage, true)

        c = configuration()
        c.gradientAccumulation = 1000
        e = setupError(c)
        guard case let .epochShorterThanAStep(batches, k)? = e?.reason else { return XCTFail("\(String(describing: e))") }
        XCTAssertEqual(k, 1000)
        XCTAssertLessThan(batches, k)
        XCTAssertTrue(e?.description.contains("maxSteps") == true, "\(String(describing: e))")

        c = configuration()
        c.trainFiles = []
        XCTAssertEqual(setupError(c)?.reason, .noTrainingData)

        c = configuration()
        c.trainFiles = [text, "tokens.bin"]
        XCTAssertEqual(setupError(c)?.reason, .mixedTrainingFiles)
    }

    func testAModelIsNotACheckpoint() throws {
        let model = Self.fixtures.appendingPathComponent("shakespeare.g2w").path
        let e = setupError(configuration(), resume: model)
        XCTAssertEqual(e?.reason, .notACheckpoint(path: model))
        XCTAssertEqual(e?.isUsage, false)
        XCTAssertTrue(e?.description.hasPrefix(model + ": not a g2w-train checkpoint") == true, "\(String(describing: e))")
        // Read directly: the same, without a flag.
        XCTAssertThrowsError(try TrainingCheckpoint.read(model, hyperparameters: .init())) { error in
            let e = error as? TrainingCheckpoint.ReadError
            XCTAssertTrue(e?.reason.hasPrefix("not a g2w-train checkpoint") == true, "\(error)")
            XCTAssertEqual(flags(in: "\(error)"), [], "\(error)")
        }
    }

    /// A model that does not open (missing, a directory): its path once, not "PATH: PATH: open failed".
    func testAFileThatDoesNotOpenIsNamedOnce() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-setup-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        for path in ["/nonexistent/model.g2w", directory] {
            var c = configuration()
            c.initModel = path
            for (what, e) in [("init", setupError(c)), ("resume", setupError(configuration(), resume: path))] {
                let message = e?.description ?? ""
                XCTAssertTrue(message.hasPrefix(path + ": open failed"), "\(what): \(message)")
                XCTAssertEqual(message.components(separatedBy: path).count, 2, "\(what): the path more than once: \(message)")
            }
            XCTAssertThrowsError(try TrainingCheckpoint.read(path, hyperparameters: .init())) { error in
                XCTAssertTrue("\(error)".hasPrefix(path + ": open failed"), "\(error)")
                XCTAssertEqual("\(error)".components(separatedBy: path).count, 2, "the path more than once: \(error)")
            }
        }
    }
}
