import Foundation
import XCTest

/// g2w-train as a user runs it: training from text, checkpoints that g2w-run opens, resume after
/// SIGKILL with bit-identical results, export, and precise errors for bad input.
final class TrainCLITests: XCTestCase {
    static let fixtures = CLITests.fixtures
    var dir: URL!
    var text: String { Self.fixtures.appendingPathComponent("training/shakespeare-6k.txt").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func run(_ tool: String, _ args: [String]) throws -> CLITests.Output {
        let p = Process()
        p.executableURL = CLITests.bin.appendingPathComponent(tool)
        p.arguments = args
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        p.standardInput = FileHandle.nullDevice
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let err = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { err.data = e.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let out = o.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return CLITests.Output(status: p.terminationStatus, out: String(decoding: out, as: UTF8.self), err: String(decoding: err.data, as: UTF8.self))
    }

    func path(_ p: String) -> String { dir.appendingPathComponent(p).path }

    /// A small run from scratch (GPT-2 tokenizer built in): 1 layer, 16 wide.
    func recipe(out: String, log: String, steps: Int = 30) -> [String] {
        ["--train", text, "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-ctx", "32", "--ctx", "16", "--batch", "4", "--grad-accum", "2",
         "--max-steps", "\(steps)", "--warmup", "3", "--lr", "3e-3", "--dropout", "0.1", "--save-interval", "4", "--keep", "0", "--eval-interval", "10",
         "--eval-iters", "2", "--sample-tokens", "0", "--log-interval", "1", "--seed", "7", "--threads", "2", "--keep-best", "--out", out, "--log", log]
    }

    func stepLosses(_ log: String) throws -> [Int: String] {
        var out: [Int: String] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if o["type"] as? String == "step" { out[o["step"] as! Int] = "\(o["loss"]!) \(o["grad_norm"]!)" }
        }
        return out
    }

    func tensorChecksums(_ file: String) throws -> [String] {
        let r = try run("g2w-inspect", ["--json", file])
        XCTAssertEqual(r.status, 0, r.err)
        let o = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        return (o["tensors"] as! [[String: Any]]).map { "\($0["name"]!) \($0["crc32c"]!)" }
    }

    func testTrainKillResumeIsBitIdentical() throws {
        try requireReleaseBuild("30 training steps, killed and resumed")
        // Uninterrupted.
        let a = try run("g2w-train", recipe(out: path("a"), log: path("a.jsonl")))
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertTrue(a.out.contains("step    30/30"), a.out)
        XCTAssertTrue(a.out.contains("eval  step    10"), a.out)
        let full = try stepLosses(path("a.jsonl"))
        XCTAssertEqual(full.count, 30)
        // The same run, killed with SIGKILL once it has passed step 13, then resumed.
        let p = Process()
        p.executableURL = CLITests.bin.appendingPathComponent("g2w-train")
        p.arguments = recipe(out: path("b"), log: path("b.jsonl"))
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline {
            if let s = try? stepLosses(path("b.jsonl")), s.count >= 13 { break }
            usleep(2000)
        }
        let killedEarly = p.isRunning
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let names = try FileManager.default.contentsOfDirectory(atPath: path("b")).filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".g2w") }.sorted()
        let last = try XCTUnwrap(names.last, "no checkpoint before the kill")
        if killedEarly { XCTAssertNotEqual(last, "ckpt-000030.g2w", "killed before the end") }
        let resumed = try run("g2w-train", ["--resume", path("b/" + last), "--log", path("c.jsonl")])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("resuming"), resumed.err)
        let again = try stepLosses(path("c.jsonl"))
        let from = Int(last.dropFirst(5).prefix(6))!
        XCTAssertEqual(Set(again.keys), Set((from + 1)...30))
        for (s, v) in again { XCTAssertEqual(v, full[s], "step \(s): loss and gradient norm after resuming") }
        // Final weights and optimizer state: every tensor bit-identical (CRC-32C of each blob).
        XCTAssertEqual(try tensorChecksums(path("a/ckpt-000030.g2w")), try tensorChecksums(path("b/ckpt-000030.g2w")))
        // A checkpoint is a model g2w-run runs.
        let gen = try run("g2w-run", ["-m", path("a/ckpt-000030.g2w"), "-p", "ROMEO:", "-n", "5", "--temp", "0", "-q"])
        XCTAssertEqual(gen.status, 0, gen.err)
        XCTAssertTrue(gen.out.hasPrefix("ROMEO:"), gen.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("a/loss.svg")))
        XCTAssertTrue(a.err.contains("best.g2w (best validation loss"), a.err)
        XCTAssertEqual(try run("g2w-inspect", ["--verify", path("a/best.g2w")]).status, 0)
        // Export: an f16 inference file without training state, and a Hugging Face directory that converts back to the same weights.
        let e = try run("g2w-train", ["--export", path("m.g2w"), "--dtype", "f32", path("a/ckpt-000030.g2w")])
        XCTAssertEqual(e.status, 0, e.err)
        let exported = try tensorChecksums(path("m.g2w"))
        XCTAssertEqual(exported, Array(try tensorChecksums(path("a/ckpt-000030.g2w")).prefix(exported.count)))
        XCTAssertFalse(exported.contains { $0.hasPrefix("train.") })
        let hf = try run("g2w-train", ["--export-hf", path("hf"), path("a/ckpt-000030.g2w")])
        XCTAssertEqual(hf.status, 0, hf.err)
        let back = try run("g2w-convert", [path("hf"), "-o", path("back.g2w"), "--dtype", "f32", "-q"])
        XCTAssertEqual(back.status, 0, back.err)
        XCTAssertEqual(try tensorChecksums(path("back.g2w")), exported)
        let same = try run("g2w-run", ["-m", path("back.g2w"), "-p", "ROMEO:", "-n", "5", "--temp", "0", "-q"])
        XCTAssertEqual(same.out, gen.out)
    }

    func testBadInputIsAPreciseErrorBeforeTraining() throws {
        let empty = path("empty.txt"), bad = path("bad.txt"), short = path("short.txt"), tokens = path("bad.bin")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        _ = FileManager.default.createFile(atPath: bad, contents: Data([0x61, 0x62, 0x63, 0xFF, 0x64]))
        _ = FileManager.default.createFile(atPath: short, contents: Data("Hello there.".utf8))
        _ = FileManager.default.createFile(atPath: tokens, contents: Data(repeating: 7, count: 1030))
        let scratch = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-ctx", "32", "--out", path("o")]
        let cases: [([String], Int32, String)] = [
            (["--train", empty] + scratch, 1, "empty"),
            (["--train", bad] + scratch, 1, "offset 3"),
            (["--train", short, "--ctx", "16", "--val-split", "0"] + scratch, 1, "tokens"),
            (["--train", tokens] + scratch, 1, "magic"),
            (["--train", path("missing.txt")] + scratch, 1, "missing.txt"),
            (["--train", text, "--ctx", "64"] + scratch, 2, "--ctx 64"),
            (["--train", text, "--batch", "0"] + scratch, 2, "--batch"),
            (["--train", text, "--max-steps", "0"] + scratch, 2, "--max-steps"),
            (["--train", text, "--epochs", "2", "--max-steps", "3"] + scratch, 2, "exclude each other"),
            (["--train", text, "--n-embd", "15", "--n-head", "2"], 2, "not a multiple"),
            (["--train", text, "--init", path("x.g2w"), "--n-layer", "2"], 2, "--n-layer"),
            (["--resume", Self.fixtures.appendingPathComponent("shakespeare.g2w").path], 1, "not a g2w-train checkpoint"),
            (["--resume", path("x.g2w"), "--lr", "1"], 2, "cannot change a resumed run"),
            ([], 2, "no training data"),
            (["--export", path("y.g2w")], 2, "checkpoint to export"),
        ]
        for (args, status, message) in cases {
            let r = try run("g2w-train", args)
            XCTAssertEqual(r.status, status, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains(message), "\(args): expected '\(message)' in: \(r.err)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("o/ckpt-000001.g2w")), "\(args): trained anyway")
        }
    }

    /// SIGTERM mid-run: the current step ends, a checkpoint is saved, exit 143; it resumes.
    func testSIGTERMSavesACheckpointAndExits143() throws {
        let p = Process()
        p.executableURL = CLITests.bin.appendingPathComponent("g2w-train")
        p.arguments = recipe(out: path("s"), log: path("s.jsonl"), steps: 2000)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let s = try? stepLosses(path("s.jsonl")), s.count >= 3 { break }
            usleep(2000)
        }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 143)
        let names = try FileManager.default.contentsOfDirectory(atPath: path("s"))
        XCTAssertFalse(names.contains { $0.hasPrefix(".") }, "temporary files left: \(names)")
        let ckpt = try XCTUnwrap(names.filter { $0.hasPrefix("ckpt-") }.sorted().last)
        let steps = try stepLosses(path("s.jsonl")).keys.max()!
        XCTAssertEqual(ckpt, String(format: "ckpt-%06d.g2w", steps), "the checkpoint is of the last finished step")
        let r = try run("g2w-train", ["--resume", path("s/" + ckpt), "--max-steps", "\(steps + 2)", "--log", path("s2.jsonl")])
        XCTAssertEqual(r.status, 0, r.err)
    }

    /// A file-size limit while saving (as a full disk): exit 1 naming the checkpoint, no partial file.
    func testFailedSaveIsAnErrorAndLeavesNothing() throws {
        let sh = Process()
        sh.executableURL = URL(fileURLWithPath: "/bin/sh")
        let args = recipe(out: path("f"), log: path("f.jsonl"), steps: 6).filter { $0 != "--keep-best" }.map { "'\($0)'" }.joined(separator: " ")
        sh.arguments = ["-c", "ulimit -f 2048; exec '\(CLITests.bin.appendingPathComponent("g2w-train").path)' \(args)"]
        let e = Pipe()
        sh.standardError = e
        sh.standardOutput = FileHandle.nullDevice
        try sh.run()
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        sh.waitUntilExit()
        XCTAssertEqual(sh.terminationStatus, 1, err)
        XCTAssertTrue(err.contains("ckpt-000004.g2w: cannot save the checkpoint at step 4") && err.contains("file size limit"), err)
        XCTAssertFalse(err.contains(".tmp-"), "the message names the checkpoint, not the temporary file: \(err)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path("f"))) ?? []
        XCTAssertFalse(names.contains { $0.hasPrefix(".") || $0.hasPrefix("ckpt-") }, "\(names)")
    }
}
