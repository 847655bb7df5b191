import Foundation
import G2W
import G2WFormat
import XCTest

/// Runs the built executables as a user would.
final class CLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    /// The executables sit beside the test bundle in the build folder.
    static let bin: URL = {
        var u = Bundle.main.bundleURL
        if u.pathExtension == "xctest" { u = u.deletingLastPathComponent() }
        return u
    }()
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    struct Output { var status: Int32; var out: String; var err: String }

    @discardableResult
    func run(_ tool: String, _ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Output {
        let p = Process()
        p.executableURL = Self.bin.appendingPathComponent(tool)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let o = Pipe(), e = Pipe(), i = Pipe()
        p.standardOutput = o
        p.standardError = e
        p.standardInput = i
        try p.run()
        if let s = stdin { i.fileHandleForWriting.write(s.data(using: .utf8)!) }
        try i.fileHandleForWriting.close()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, out: String(decoding: out, as: UTF8.self), err: String(decoding: err, as: UTF8.self))
    }

    /// The tiny reference model converted with the CLI (f32).
    func tinyModel() throws -> String {
        let out = dir.appendingPathComponent("tiny.g2w").path
        let r = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path, "-o", out, "--dtype", "f32", "-q"])
        XCTAssertEqual(r.status, 0, r.err)
        return out
    }

    func testConvertInspectVerifyRoundTrip() throws {
        let model = try tinyModel()
        let r = try run("g2w-inspect", [model, "--verify"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("verify: all 28 tensor checksums match"), r.out)
        XCTAssertTrue(r.out.contains("totals: 28 tensors, 3,320,640 parameters"), r.out)
        let j = try run("g2w-inspect", [model, "--json", "--verify"])
        let obj = try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as! [String: Any]
        XCTAssertEqual((obj["tensors"] as! [Any]).count, 28)
        XCTAssertEqual(obj["verified"] as? Bool, true)
        // Flip one byte in a blob: --verify names the tensor, exit 1.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        let f = try G2WFile(path: model)
        let t = f.info(named: "h.1.mlp.c_fc.weight")!
        bytes[Int(t.offset) + 100] ^= 0x40
        let bad = dir.appendingPathComponent("bad.g2w").path
        try bytes.write(to: URL(fileURLWithPath: bad))
        let v = try run("g2w-inspect", [bad, "--verify"])
        XCTAssertEqual(v.status, 1)
        XCTAssertTrue(v.err.contains("tensor 'h.1.mlp.c_fc.weight'") && v.err.contains("is corrupt"), v.err)
    }

    func testInspectEscapesControlCharacters() throws {
        let path = dir.appendingPathComponent("ctl.g2w").path
        let w = try G2WWriter(path: path, metadata: ["note": .string("line1\nline2\u{1B}[31m")], tensors: [.init(name: "evil\u{1B}[2J\nname", dtype: .f32, shape: [1])])
        try w.write([Float(1)])
        try w.finish()
        let r = try run("g2w-inspect", [path])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertFalse(r.out.contains("\u{1B}"), "raw escape character printed")
        XCTAssertTrue(r.out.contains("evil\\u{1b}[2J\\nname"), r.out)
        let j = try run("g2w-inspect", [path, "--json"])
        XCTAssertTrue(j.out.contains("evil\\u001b[2J\\nname"), j.out)
    }

    func testRunGreedyMatchesTransformersAndTokenize() throws {
        let model = try tinyModel()
        let r = try run("g2w-run", ["--model", model, "--prompt", "Hello, world!", "-n", "3", "--temp", "0", "--no-echo"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out, " DM DM DM\n")  // transformers' greedy: 14848 x 3
        XCTAssertTrue(r.err.contains("prompt") && r.err.contains("tok/s"), r.err)
        let t = try run("g2w-run", ["--model", model, "--tokenize", "Hello, world!"])
        XCTAssertEqual(t.out, "15496,11,995,0\n")
        // Prompt from stdin, and as ids.
        let s = try run("g2w-run", ["--model", model, "-n", "2", "--temp", "0", "-q"], stdin: "Hello, world!")
        XCTAssertEqual(s.out, "Hello, world! DM DM\n")
        let ids = try run("g2w-run", ["--model", model, "--tokens", "15496,11,995,0", "-n", "2", "--temp", "0", "-q", "--no-echo"])
        XCTAssertEqual(ids.out, " DM DM\n")
    }

    /// `--bench --json`: one JSON object whose figures are consistent with each other.
    func testBenchJSON() throws {
        let model = try tinyModel()
        let r = try run("g2w-run", ["--model", model, "--bench", "--pp", "8", "--tg", "4", "--reps", "1", "--threads", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], r.out)
        let pp = try XCTUnwrap(j["pp"] as? [String: Any]), tg = try XCTUnwrap(j["tg"] as? [String: Any])
        XCTAssertEqual(pp["tokens"] as? Int, 8)
        XCTAssertEqual(tg["tokens"] as? Int, 4)
        XCTAssertEqual(j["threads"] as? Int, 2)
        for (name, v) in [("pp tok/s", pp["tok_s"]), ("tg tok/s", tg["tok_s"]), ("bandwidth", j["bandwidth_gb_s"]), ("peak", j["peak_gflops"]),
                          ("mapped file bandwidth", tg["mapped_file_bandwidth_gb_s"]), ("open", j["open_ms"]), ("reopen", j["reopen_ms"])] {
            let x = try XCTUnwrap(v as? Double, name)
            XCTAssertTrue(x.isFinite && x > 0, "\(name): \(x)")
        }
        let bytes = try XCTUnwrap(j["weight_bytes_per_token"] as? Int), tgs = try XCTUnwrap(tg["tok_s"] as? Double)
        XCTAssertEqual(try XCTUnwrap(tg["gb_s"] as? Double), tgs * Double(bytes) / 1e9, accuracy: 1e-9 * tgs * Double(bytes))
        // The mapped file is read around each counted tg pass: one ratio per pass, the median reported.
        let fractions = try XCTUnwrap(tg["mapped_file_fractions"] as? [Double])
        XCTAssertEqual(fractions.count, 1)
        XCTAssertEqual(try XCTUnwrap(tg["mapped_file_fraction"] as? Double), fractions[0], accuracy: 1e-12)
        XCTAssertTrue(fractions[0].isFinite && fractions[0] > 0)
        // The machine's prefetch distance, where it came from, and the sweep that includes it.
        let prefetch = try XCTUnwrap(j["prefetch"] as? [String: Any])
        let chosen = try XCTUnwrap(prefetch["bytes"] as? Int)
        XCTAssertTrue((256...16384).contains(chosen) && chosen % 64 == 0, "\(chosen)")
        XCTAssertFalse(try XCTUnwrap(prefetch["source"] as? String).isEmpty)
        let sweep = try XCTUnwrap(prefetch["sweep"] as? [[String: Any]])
        XCTAssertTrue(sweep.contains { $0["bytes"] as? Int == chosen }, "\(sweep)")
        for point in sweep { XCTAssertGreaterThan(try XCTUnwrap(point["tok_s"] as? Double), 0) }
        // The split: attention is part of the rest of the forward pass; hand-offs counted and timed.
        let split = try XCTUnwrap(j["token_split_ms"] as? [String: Double])
        XCTAssertGreaterThan(try XCTUnwrap(split["attention"]), 0)
        XCTAssertLessThanOrEqual(try XCTUnwrap(split["attention"]), try XCTUnwrap(split["other_forward"]))
        XCTAssertGreaterThan(try XCTUnwrap(split["parallel_sections"]), 0)
        XCTAssertGreaterThan(try XCTUnwrap(split["hand_off_us"]), 0)
    }

    func testBadFilesAreOneLineErrors() throws {
        let notG2W = dir.appendingPathComponent("x.g2w").path
        try Data("hello, I am not a model file at all, but long enough".utf8).write(to: URL(fileURLWithPath: notG2W))
        for (path, fragment) in [("/nonexistent/m.g2w", "No such file"), (notG2W, "not a .g2w file")] {
            let r = try run("g2w-run", ["--model", path, "--prompt", "hi"])
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.err.contains(fragment), r.err)
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            XCTAssertEqual(r.out, "")
        }
        // A newer major version.
        var b = try Data(contentsOf: URL(fileURLWithPath: try tinyModel()))
        b[8] = 2
        let v2 = dir.appendingPathComponent("v2.g2w").path
        try b.write(to: URL(fileURLWithPath: v2))
        let r = try run("g2w-run", ["--model", v2, "--prompt", "hi"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("unsupported .g2w version 2.0"), r.err)
        // Text with a file that has no tokenizer.
        let st = dir.appendingPathComponent("notok").path
        try FileManager.default.createDirectory(atPath: st, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path, toPath: st + "/model.safetensors")
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("tiny-f32/config.json").path, toPath: st + "/config.json")
        let c = try run("g2w-convert", [st + "/model.safetensors", "-q"])
        XCTAssertEqual(c.status, 0)
        XCTAssertTrue(c.err.contains("warning: no tokenizer found"), c.err)
        let n = try run("g2w-run", ["--model", st + "/model.g2w", "--prompt", "hi"])
        XCTAssertEqual(n.status, 1)
        XCTAssertTrue(n.err.contains("has no embedded tokenizer"), n.err)
    }

    /// Every numeric flag with a missing, non-numeric, negative, NaN or out-of-range value,
    /// unknown flags and contradictory flags: one-line error, the usage, exit status 2.
    func testBadFlagsAreUsageErrors() throws {
        let model = try tinyModel()
        let cases: [[String]] = [
            ["--top-p", "1.5"], ["--top-p", "0"], ["--top-p", "nan"], ["-n", "-1"], ["-n", "x"], ["--temp", "nan"],
            ["--temperature", "-1"], ["--temp", "inf"], ["-t", "0"], ["--top-k", "-3"], ["--min-p", "2"], ["--repeat-penalty", "0"],
            ["--threads", "0"], ["--threads", "abc"], ["--seed", "-5"], ["--repeat-last-n", "-1"], ["--bogus"], ["-n"],
            ["--prompt", "a", "--tokens", "1"], ["--tokenize", "a", "--bench"], ["--ctx", "1"], ["-c", "65"], ["--json", "--jsonl"], ["--tokens", "1,x"],
            ["--n-probs", "2", "-p", "a"], ["--n-probs", "101", "--json", "-p", "a"], ["-i", "--json"], ["--special", "--tokens", "1"], ["-p", "a", "--ppl-stride", "2"],
            ["--stop", ""], ["--prompt", "a", "--prompt", "b"], ["stray"],
        ]
        for args in cases {
            let r = try run("g2w-run", ["--model", model] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.err)")
            XCTAssertTrue(r.err.hasPrefix("g2w-run: "), "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains("usage: g2w-run"), "\(args): \(r.err)")
            XCTAssertEqual(r.out, "", "\(args)")
        }
        // An unknown kernel level is a usage error (the kernels would ignore it); the known ones run.
        let kernels = try run("g2w-run", ["--model", model, "--tokens", "1,2", "-n", "2"], environment: ["G2W_KERNELS": "avx512vnni"])
        XCTAssertEqual(kernels.status, 2, kernels.err)
        XCTAssertTrue(kernels.err.hasPrefix("g2w-run: G2W_KERNELS=avx512vnni: expected generic, avx2 or avx512"), kernels.err)
        for level in ["generic", "avx2", "avx512"] {
            let r = try run("g2w-run", ["--model", model, "--tokens", "1,2", "-n", "2", "--temp", "0"], environment: ["G2W_KERNELS": level])
            XCTAssertEqual(r.status, 0, "\(level): \(r.err)")
        }
        for args in [["--dtype", "f8", "x.safetensors"], [], ["a", "b"], ["--n-head", "0", "x"], ["--vocab", "v.json", "x"], ["--head-dtype", "q5_1", "x"]] {
            let r = try run("g2w-convert", args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.err)")
        }
        // An unknown type names the valid ones.
        let bad = try run("g2w-convert", ["--dtype", "q3_k", "x.safetensors"])
        XCTAssertTrue(bad.err.contains("invalid value for --dtype: 'q3_k' (expected one of f32, f16, q8_0, q4_0)"), bad.err)
        XCTAssertEqual(try run("g2w-inspect", []).status, 2)
        for tool in ["g2w-run", "g2w-convert", "g2w-inspect"] {
            let h = try run(tool, ["--help"])
            XCTAssertEqual(h.status, 0)
            XCTAssertTrue(h.out.contains("usage: \(tool)"), h.out)
        }
        // A prompt that does not fit: an error before any output.
        let long = try run("g2w-run", ["--model", model, "--tokens", Array(repeating: "1", count: 60).joined(separator: ","), "-n", "10"])
        XCTAssertEqual(long.status, 1)
        XCTAssertTrue(long.err.contains("exceeds the model's context of 64 tokens"), long.err)
        XCTAssertEqual(long.out, "")
    }

    /// Quantized files from the command line: converted, re-encoded from a .g2w, listed, verified,
    /// run, and benchmarked with the time split of a token.
    func testQuantizedFilesEndToEnd() throws {
        let q8 = dir.appendingPathComponent("tiny-q8_0.g2w").path
        let c = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32").path, "-o", q8, "--dtype", "q8_0", "-q"])
        XCTAssertEqual(c.status, 0, c.err)
        let f16 = try tinyModel()
        let r = try run("g2w-convert", [f16, "--dtype", "q4_0"])  // default output beside it: NAME-q4_0.g2w
        XCTAssertEqual(r.status, 0, r.err)
        let q4 = (f16 as NSString).deletingPathExtension + "-q4_0.g2w"
        XCTAssertTrue(r.err.contains("wrote \(q4)"), r.err)
        XCTAssertTrue(r.err.contains("(q4_0 layers, q8_0 embeddings and head)"), r.err)
        let again = try run("g2w-convert", [q4, "--dtype", "q8_0", "-o", dir.appendingPathComponent("x.g2w").path])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("is already q"), again.err)
        for m in [q8, q4] {
            let i = try run("g2w-inspect", [m, "--verify"])
            XCTAssertEqual(i.status, 0, i.err)
            XCTAssertTrue(i.out.contains("g2w 1.1"), i.out)
            let g = try run("g2w-run", ["--model", m, "--tokens", "1,2,3", "-n", "5", "--temp", "0", "--no-echo"])
            XCTAssertEqual(g.status, 0, g.err)
        }
        let b = try run("g2w-run", ["--model", q4, "--bench", "--pp", "8", "--tg", "8", "--reps", "1", "--json"])
        XCTAssertEqual(b.status, 0, b.err)
        let j = try JSONSerialization.jsonObject(with: Data(b.out.utf8)) as! [String: Any]
        XCTAssertEqual(j["types"] as? String, "q4_0 (wte q8_0)")
        let split = j["token_split_ms"] as! [String: Double]
        XCTAssertGreaterThan(split["layer_products"]!, 0)
        XCTAssertGreaterThan(split["lm_head"]!, 0)
    }

    /// Issue 17 item 13: rates only over passes that ran, -q silences perplexity's stderr, the
    /// quote token is escaped in g2w-inspect's preview.
    func testSmallMessages() throws {
        let demo = Self.fixtures.appendingPathComponent("shakespeare.g2w").path
        let zero = try run("g2w-run", ["--model", demo, "--prompt", "hi", "-n", "0"])
        XCTAssertEqual(zero.status, 0, zero.err)
        XCTAssertTrue(zero.err.contains("(not run: -n 0)"), zero.err)
        XCTAssertFalse(zero.err.contains("tok/s"), zero.err)
        let three = try run("g2w-run", ["--model", demo, "--prompt", "hi", "-n", "3", "--temp", "0"])
        XCTAssertTrue(three.err.contains("/     3 tokens, 2 steps after the prompt pass"), three.err)
        let text = dir.appendingPathComponent("t.txt")
        try String(repeating: "To be, or not to be, that is the question. ", count: 40).write(to: text, atomically: true, encoding: .utf8)
        let q = try run("g2w-run", ["--model", demo, "--perplexity", text.path, "--ctx", "64", "-q"])
        XCTAssertEqual(q.status, 0, q.err)
        XCTAssertEqual(q.err, "")
        XCTAssertTrue(q.out.hasPrefix("perplexity: "), q.out)
        for (ids, message) in [("1,,2", "item 2 is empty"), ("+1", "invalid token id '+1'"), ("1,2,", "item 3 is empty"), ("99999999999999999999", "out of range")] {
            let r = try run("g2w-run", ["--model", demo, "--tokens", ids, "-n", "1"])
            XCTAssertEqual(r.status, 2, "\(ids): \(r.err)")
            XCTAssertTrue(r.err.contains(message), "\(ids): \(r.err)")
        }
        let i = try run("g2w-inspect", [demo])
        XCTAssertTrue(i.out.contains(##"["!", "\"", "#", "$", ..."##), i.out)
    }

    func testConvertNeverOverwritesWithoutForce() throws {
        let model = try tinyModel()
        let before = try Data(contentsOf: URL(fileURLWithPath: model))
        let r = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path, "-o", model])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("already exists (use --force to overwrite)"), r.err)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: model)), before)
        let f = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path, "-o", model, "--force", "--dtype", "f16", "-q"])
        XCTAssertEqual(f.status, 0, f.err)
        XCTAssertEqual(try G2WFile(path: model).info(named: "wte.weight")!.dtype, .f16)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
    }

    /// `--perplexity FILE --kl-base BASE`: a model against itself (zero), f16 against f32 (the
    /// tested model's perplexity is plain `--perplexity`'s), and the errors.
    func testPerplexityKLBase() throws {
        let f32 = try tinyModel()
        let f16 = dir.appendingPathComponent("tiny16.g2w").path
        let c = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path, "-o", f16, "--dtype", "f16", "-q"])
        XCTAssertEqual(c.status, 0, c.err)
        let text = dir.appendingPathComponent("text.txt").path
        try String(repeating: "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n", count: 4)
            .write(toFile: text, atomically: true, encoding: .utf8)
        func json(_ args: [String]) throws -> [String: Any] {
            let r = try run("g2w-run", args + ["--json", "--threads", "2"])
            XCTAssertEqual(r.status, 0, r.err)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], r.out)
        }
        let same = try json(["--model", f32, "--perplexity", text, "--ctx", "32", "--kl-base", f32])
        XCTAssertEqual(same["kld_mean"] as? Double, 0)
        XCTAssertEqual(same["kld_max"] as? Double, 0)
        XCTAssertEqual(same["same_top"] as? Double, 1)
        XCTAssertEqual(same["ppl_change_percent"] as? Double, 0)
        XCTAssertEqual(same["perplexity"] as? Double, same["base_perplexity"] as? Double)
        for method in [["--ctx", "32"], ["--ctx", "24", "--ppl-method", "sliding", "--stride", "10"]] {
            let kl = try json(["--model", f16, "--perplexity", text, "--kl-base", f32] + method)
            let plain = try json(["--model", f16, "--perplexity", text] + method)
            let plainBase = try json(["--model", f32, "--perplexity", text] + method)
            XCTAssertEqual(kl["perplexity"] as? Double, plain["perplexity"] as? Double, "\(method)")
            XCTAssertEqual(kl["standard_error"] as? Double, plain["standard_error"] as? Double)
            XCTAssertEqual(kl["base_perplexity"] as? Double, plainBase["perplexity"] as? Double)
            XCTAssertEqual(kl["scored"] as? Int, plain["scored"] as? Int)
            let kld = try XCTUnwrap(kl["kld_mean"] as? Double)
            XCTAssertTrue(kld > 0 && kld < 1e-4, "\(kld)")
            for key in ["kld_standard_error", "kld_median", "kld_p99", "kld_max", "same_top", "delta_p_rms", "ln_ppl_ratio_standard_error"] {
                XCTAssertNotNil(kl[key] as? Double, key)
            }
        }
        // Text output: the perplexities, then the KL figures.
        let t = try run("g2w-run", ["--model", f16, "--perplexity", text, "--ctx", "32", "--kl-base", f32])
        XCTAssertEqual(t.status, 0, t.err)
        for label in ["PPL(Q)", "PPL(base)", "ln(PPL(Q)/PPL(base))", "PPL(Q)/PPL(base) - 1", "KLD mean", "KLD median", "KLD 99%", "KLD max", "Same top token", "RMS \u{394}p"] {
            XCTAssertTrue(t.out.contains("\n" + label + " ") || t.out.hasPrefix(label + " "), "\(label): \(t.out)")
        }
        // A missing base, a base with another vocabulary: one-line errors, exit 1.
        let missing = try run("g2w-run", ["--model", f32, "--perplexity", text, "--kl-base", "/nonexistent/base.g2w"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.hasPrefix("g2w-run: error: --kl-base /nonexistent/base.g2w: ") && missing.err.contains("No such file"), missing.err)
        XCTAssertEqual(missing.err.split(separator: "\n").count, 1, missing.err)
        XCTAssertEqual(missing.out, "")
        let small = dir.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: small, withIntermediateDirectories: true)
        let (v, e, n) = (37, 8, 16)
        let shapes: [(String, [Int])] = [("wte.weight", [v, e]), ("wpe.weight", [n, e]), ("h.0.ln_1.weight", [e]), ("h.0.ln_1.bias", [e]),
                                         ("h.0.attn.c_attn.weight", [e, 3 * e]), ("h.0.attn.c_attn.bias", [3 * e]), ("h.0.attn.c_proj.weight", [e, e]),
                                         ("h.0.attn.c_proj.bias", [e]), ("h.0.ln_2.weight", [e]), ("h.0.ln_2.bias", [e]), ("h.0.mlp.c_fc.weight", [e, 4 * e]),
                                         ("h.0.mlp.c_fc.bias", [4 * e]), ("h.0.mlp.c_proj.weight", [4 * e, e]), ("h.0.mlp.c_proj.bias", [e]),
                                         ("ln_f.weight", [e]), ("ln_f.bias", [e])]
        var tensors: [SafetensorsWriter.Tensor] = []
        for (name, shape) in shapes {
            let count: Int = shape.reduce(1, *)
            let values: [Float] = (0..<count).map { (i: Int) -> Float in Float((i * 7919) % 13) / 13 - 0.5 }
            tensors.append(SafetensorsWriter.Tensor(name: name, dtype: .f32, shape: shape) { sink in try values.withUnsafeBytes { try sink($0) } })
        }
        try SafetensorsWriter.write(to: small.appendingPathComponent("model.safetensors").path, tensors: tensors, metadata: ["format": "pt"])
        try "{\"model_type\": \"gpt2\", \"n_layer\": 1, \"n_head\": 2, \"n_embd\": \(e), \"n_positions\": \(n), \"vocab_size\": \(v), \"layer_norm_epsilon\": 1e-05}"
            .write(to: small.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let sc = try run("g2w-convert", [small.appendingPathComponent("model.safetensors").path, "-q"])
        XCTAssertEqual(sc.status, 0, sc.err)
        let smallModel = small.appendingPathComponent("model.g2w").path
        let mismatch = try run("g2w-run", ["--model", f32, "--perplexity", text, "--kl-base", smallModel])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertEqual(mismatch.err, "g2w-run: error: --kl-base \(smallModel): the base model's vocabulary has 37 tokens and the tested model's 50257: KL divergence needs the same vocabulary\n")
        XCTAssertEqual(mismatch.out, "")
        // --kl-base without --perplexity: a usage error.
        let usage = try run("g2w-run", ["--model", f32, "--prompt", "hi", "--kl-base", f32])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.err.hasPrefix("g2w-run: --kl-base goes with --perplexity"), usage.err)
    }
}
