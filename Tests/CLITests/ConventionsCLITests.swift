import Foundation
import G2W
import G2WFormat
import XCTest

/// Issue 18, command line: llama.cpp's spellings, wrong kinds of files, sharded checkpoints, the
/// empty prompt and `--special`, JSON generation with log-probabilities, interactive mode.
extension CLITests {
    var demo: String { Self.fixtures.appendingPathComponent("shakespeare.g2w").path }

    /// The first line of a usage error (the message; the usage follows).
    func firstLine(_ s: String) -> String { String(s.split(separator: "\n", omittingEmptySubsequences: false).first ?? "") }

    // MARK: llama.cpp's spellings

    func testLlamaCppSpellings() throws {
        // -t is threads; --temp the temperature (--temperature kept), -n/--n-predict (--max-tokens kept).
        let a = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "-t", "1"])
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertTrue(a.err.contains("f16 weights, 1 threads"), a.err)
        let b = try run("g2w-run", ["--model", demo, "--prompt", "ROMEO:", "--max-tokens", "12", "--temperature", "0", "--threads", "2"])
        XCTAssertEqual(b.out, a.out)
        XCTAssertTrue(b.err.contains("2 threads"), b.err)
        let c = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "--n-predict", "12", "--temp", "0", "-q"])
        XCTAssertEqual(c.out, a.out)
        XCTAssertTrue(a.out.hasPrefix("ROMEO:\n") && a.out.count > 20, a.out)
        // -t 4 no longer means temperature 4: -t 0 is an invalid thread count, named as typed.
        let t0 = try run("g2w-run", ["-m", demo, "-p", "x", "-t", "0"])
        XCTAssertEqual(t0.status, 2)
        XCTAssertEqual(firstLine(t0.err), "g2w-run: invalid value for -t: '0' (expected an integer in 1...1024)")
        // --no-display-prompt = --no-echo.
        let quiet = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "--no-display-prompt", "-q"])
        XCTAssertEqual("ROMEO:" + quiet.out, a.out)
        XCTAssertEqual(try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "--no-echo", "-q"]).out, quiet.out)
        // -r/--reverse-prompt = --stop: the output ends before the string, which is not printed.
        let words = quiet.out.split(separator: " ")
        XCTAssertGreaterThan(words.count, 3, quiet.out)
        let stop = String(words[2])
        let r = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "-r", stop, "--no-echo", "-q"])
        let expected = String(quiet.out[..<quiet.out.range(of: stop)!.lowerBound]) + "\n"
        XCTAssertEqual(r.out, expected)
        XCTAssertEqual(try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "--reverse-prompt", stop, "--no-echo", "-q"]).out, expected)
        XCTAssertEqual(try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "12", "--temp", "0", "--stop", stop, "--no-echo", "-q"]).out, expected)
        // -f/--file = --prompt-file.
        let promptFile = dir.appendingPathComponent("p.txt").path
        try "ROMEO:".write(toFile: promptFile, atomically: true, encoding: .utf8)
        XCTAssertEqual(try run("g2w-run", ["-m", demo, "-f", promptFile, "-n", "12", "--temp", "0", "-q"]).out, a.out)
        XCTAssertEqual(try run("g2w-run", ["-m", demo, "--file", promptFile, "-n", "12", "--temp", "0", "-q"]).out, a.out)
        // -c/--ctx-size: the context for generation (messages name it), the window for perplexity (= --ctx).
        let small = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-c", "8", "-n", "10"])
        XCTAssertEqual(small.status, 1)
        XCTAssertEqual(small.err, "g2w-run: error: the prompt (3 tokens) plus -n 10 exceeds the context of 8 tokens (-c 8); use -n 5 or less, or a shorter prompt\n")
        let fits = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "--ctx-size", "8", "--temp", "0", "-q"])
        XCTAssertEqual(fits.status, 0, fits.err)
        XCTAssertEqual(fits.out, String(a.out.prefix(fits.out.count - 1)) + "\n")  // 5 tokens: what the context holds
        let text = dir.appendingPathComponent("t.txt").path
        // About 240 tokens: five windows of 48 (two, about 100 tokens, in a debug build, whose kernels are unoptimised).
        #if DEBUG
        let repeats = 8
        #else
        let repeats = 20
        #endif
        try String(repeating: "To be, or not to be, that is the question. ", count: repeats).write(toFile: text, atomically: true, encoding: .utf8)
        let p1 = try run("g2w-run", ["-m", demo, "--perplexity", text, "-c", "48", "--json"])
        let p2 = try run("g2w-run", ["-m", demo, "--perplexity", text, "--ctx", "48", "--json"])
        XCTAssertEqual(p1.status, 0, p1.err)
        let j1 = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(p1.out.utf8)) as? [String: Any])
        let j2 = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(p2.out.utf8)) as? [String: Any])
        XCTAssertEqual(j1["ctx"] as? Int, 48)
        XCTAssertEqual(j1["perplexity"] as? Double, j2["perplexity"] as? Double)
        let s1 = try run("g2w-run", ["-m", demo, "--perplexity", text, "-c", "48", "--ppl-method", "sliding", "--ppl-stride", "16", "--json"])
        let s2 = try run("g2w-run", ["-m", demo, "--perplexity", text, "-c", "48", "--ppl-method", "sliding", "--stride", "16", "--json"])
        XCTAssertEqual(s1.status, 0, s1.err)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(s1.out.utf8)) as? [String: Any])?["stride"] as? Int, 16)
        XCTAssertEqual(s1.out.split(separator: ",").filter { $0.contains("perplexity") }, s2.out.split(separator: ",").filter { $0.contains("perplexity") })
        // The same option twice under two spellings is one option given twice.
        let twice = try run("g2w-run", ["-m", demo, "-p", "x", "-n", "2", "--max-tokens", "3"])
        XCTAssertEqual(firstLine(twice.err), "g2w-run: option --max-tokens given more than once (-n is the same option)")
    }

    func testVersionOnEveryTool() throws {
        for tool in ["g2w-run", "g2w-convert", "g2w-inspect", "g2w-train"] {
            let r = try run(tool, ["--version"])
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(r.out, "\(tool) \(G2WVersion.string)\n")
        }
    }

    /// An unknown option suggests the nearest known one (its preferred spelling), and llama.cpp
    /// options g2w does not have say what to do instead.
    func testUnknownOptionsSuggestTheNearest() throws {
        let cases: [(String, [String], String)] = [
            ("g2w-run", ["--temperatur", "0.5"], "unknown option --temperatur; did you mean --temp?"),
            ("g2w-run", ["--n-predic", "5"], "unknown option --n-predic; did you mean --n-predict?"),
            ("g2w-run", ["--treads", "2"], "unknown option --treads; did you mean --threads?"),
            ("g2w-run", ["-temp", "0.5"], "unknown option -temp; did you mean --temp?"),
            ("g2w-run", ["--promt", "hi"], "unknown option --promt; did you mean --prompt?"),
            ("g2w-run", ["--n-gpu-layers", "99"], "unknown option --n-gpu-layers: g2w runs on the CPU; there are no GPU layers to offload"),
            ("g2w-run", ["-ngl", "99"], "unknown option -ngl: g2w runs on the CPU; there are no GPU layers to offload"),
            ("g2w-run", ["-ctk", "q8_0"], "unknown option -ctk: use --kv-type f32|f16 (one type for keys and values)"),
            ("g2w-run", ["--frobnicate"], "unknown option --frobnicate"),
            ("g2w-run", ["-x"], "unknown option -x"),
            ("g2w-convert", ["--outtyp", "q8_0", "x"], "unknown option --outtyp; did you mean --outtype?"),
            ("g2w-convert", ["--forse", "x"], "unknown option --forse; did you mean --force?"),
            ("g2w-inspect", ["--verfy", "x"], "unknown option --verfy; did you mean --verify?"),
            ("g2w-train", ["--temperatur", "1"], "unknown option --temperatur; did you mean --temp?"),
            ("g2w-train", ["--max-step", "1"], "unknown option --max-step; did you mean --max-steps?"),
        ]
        for (tool, args, message) in cases {
            let r = try run(tool, (tool == "g2w-run" ? ["-m", demo] : []) + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.err)")
            XCTAssertEqual(firstLine(r.err), "\(tool): \(message)", "\(args)")
            XCTAssertTrue(r.err.contains("usage: \(tool)"), r.err)
        }
    }

    /// g2w-train follows the same spellings: -t threads, --temp the samples' temperature,
    /// -c/--ctx-size the window, -f/--file the training text.
    func testTrainSpellings() throws {
        let text = dir.appendingPathComponent("train.txt").path
        try String(repeating: "First Citizen:\nBefore we proceed any further, hear me speak.\n", count: 30).write(toFile: text, atomically: true, encoding: .utf8)
        let args = ["-f", text, "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-ctx", "32", "-c", "16", "-b", "2", "--max-steps", "2",
                    "--eval-interval", "0", "--sample-tokens", "4", "--temp", "0", "-t", "1", "-s", "3", "-o", dir.appendingPathComponent("o").path]
        let r = try run("g2w-train", args)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains(", 1 threads"), r.err)
        XCTAssertTrue(r.err.contains("32 tokens per step"), r.err)  // -c 16 x -b 2
        let long = try run("g2w-train", ["--file", text, "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-ctx", "32", "--ctx-size", "16", "--batch-size", "2",
                                         "--max-steps", "2", "--eval-interval", "0", "--sample-tokens", "4", "--temperature", "0", "--threads", "1", "--seed", "3",
                                         "--out", dir.appendingPathComponent("o2").path])
        XCTAssertEqual(long.status, 0, long.err)
        // The same run: the same losses and samples (timings aside).
        func losses(_ s: String) -> [String] {
            s.split(separator: "\n").flatMap { line in line.split(separator: "|").filter { $0.contains("loss") || $0.contains("sample") } }.map(String.init)
        }
        XCTAssertEqual(losses(long.out), losses(r.out))
        XCTAssertFalse(losses(r.out).isEmpty, r.out)
        let t0 = try run("g2w-train", ["-f", text, "-t", "0"])
        XCTAssertEqual(t0.status, 2)
        XCTAssertEqual(firstLine(t0.err), "g2w-train: invalid value for -t: '0' (expected an integer in 1...1024)")
    }

    /// Every option `--help` lists is in the README's command-line reference, and vice versa for
    /// the g2w-run table: the two never drift apart.
    func testHelpAndReadmeAgree() throws {
        let readme = try String(contentsOf: Self.fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        for tool in ["g2w-run", "g2w-convert", "g2w-inspect", "g2w-train"] {
            let h = try run(tool, ["--help"])
            XCTAssertEqual(h.status, 0)
            // "  -n, --n-predict, --max-tokens N   help": the names before the help text.
            let names = h.out.split(separator: "\n").filter { $0.hasPrefix("  -") }.flatMap { line -> [String] in
                let head = line.dropFirst(2).components(separatedBy: "  ")[0]
                return head.components(separatedBy: ", ").map { String($0.split(separator: " ")[0]) }
            }
            XCTAssertGreaterThan(names.count, 3, h.out)
            for n in names where n != "-h" && n != "--help" {
                let pattern = "(^|[ `\\[(,/])" + NSRegularExpression.escapedPattern(for: n) + "($|[ `\\],=)/])"
                XCTAssertNotNil(readme.range(of: pattern, options: .regularExpression), "\(tool) \(n) is not in README.md")
            }
        }
        let h = try run("g2w-run", ["--help"])
        for line in ["-t, --threads N", "--temp, --temperature T", "-n, --n-predict, --max-tokens N", "-c, --ctx-size, --ctx N",
                     "-r, --reverse-prompt, --stop STRING", "--no-display-prompt, --no-echo", "-sp, --special", "--version"] {
            XCTAssertTrue(h.out.contains("  " + line), "\(line) in \(h.out)")
        }
    }

    // MARK: Wrong kinds of files

    func testWrongFileKindsSayWhatToRun() throws {
        // A Hugging Face directory and its safetensors file given to g2w-run: the exact command, which works.
        let hf = dir.appendingPathComponent("hf").path
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("tiny-f32").path, toPath: hf)
        for input in [hf + "/model.safetensors", hf] {
            let r = try run("g2w-run", ["-m", input, "-p", "hi"])
            XCTAssertEqual(r.status, 1)
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            XCTAssertTrue(r.err.contains(input == hf ? "\(hf) is a Hugging Face checkpoint directory, not a .g2w file; convert it first: "
                                                    : "\(input) is a safetensors checkpoint (Hugging Face), not a .g2w file; convert it first: "), r.err)
            let command = try XCTUnwrap(r.err.range(of: "g2w-convert ").map { r.err[$0.lowerBound...] }?.split(separator: " (then").first, r.err)
            XCTAssertEqual(String(command), "g2w-convert \(input) -o \(hf)/model.g2w")
            XCTAssertTrue(r.err.hasSuffix("(then g2w-run -m \(hf)/model.g2w)\n"), r.err)
        }
        let convert = try run("g2w-convert", [hf, "-o", hf + "/model.g2w", "-q"])
        XCTAssertEqual(convert.status, 0, convert.err)
        XCTAssertEqual(try run("g2w-run", ["-m", hf + "/model.g2w", "--tokens", "15496,11,995,0", "-n", "3", "--temp", "0", "--no-echo", "-q"]).out, " DM DM DM\n")
        // A directory holding one .g2w: named.
        let onlyG2W = dir.appendingPathComponent("one").path
        try FileManager.default.createDirectory(atPath: onlyG2W, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: hf + "/model.g2w", toPath: onlyG2W + "/tiny.g2w")
        XCTAssertEqual(try run("g2w-run", ["-m", onlyG2W, "-p", "hi"]).err,
                       "g2w-run: error: \(onlyG2W) is a directory, not a .g2w file; it holds tiny.g2w: g2w-run -m \(onlyG2W)/tiny.g2w\n")
        // g2w-inspect and --kl-base too.
        let i = try run("g2w-inspect", [hf + "/model.safetensors"])
        XCTAssertEqual(i.status, 1)
        XCTAssertTrue(i.err.hasSuffix("(then g2w-inspect \(hf)/model.g2w)\n"), i.err)
        let text = dir.appendingPathComponent("t.txt").path
        try String(repeating: "Hello, world! ", count: 40).write(toFile: text, atomically: true, encoding: .utf8)
        let kl = try run("g2w-run", ["-m", hf + "/model.g2w", "--perplexity", text, "-c", "16", "--kl-base", hf])
        XCTAssertEqual(kl.status, 1)
        XCTAssertTrue(kl.err.hasPrefix("g2w-run: error: --kl-base \(hf) is a Hugging Face checkpoint directory"), kl.err)
        // A PyTorch-only directory: safetensors only, why, and the transformers line to re-save it.
        let pt = dir.appendingPathComponent("pt").path
        try FileManager.default.createDirectory(atPath: pt, withIntermediateDirectories: true)
        try Data([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 60)).write(to: URL(fileURLWithPath: pt + "/pytorch_model.bin"))
        try FileManager.default.copyItem(atPath: hf + "/config.json", toPath: pt + "/config.json")
        let resave = "python3 -c 'from transformers import AutoModelForCausalLM as M; M.from_pretrained(\"\(pt)\").save_pretrained(\"\(pt)\", safe_serialization=True)'"
        for (tool, args) in [("g2w-convert", [pt]), ("g2w-run", ["-m", pt, "-p", "hi"]), ("g2w-convert", [pt + "/pytorch_model.bin"])] {
            let r = try run(tool, args)
            XCTAssertEqual(r.status, 1, r.err)
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            XCTAssertTrue(r.err.contains("g2w reads safetensors only: a PyTorch .bin file is a Python pickle, and loading a pickle can run arbitrary code"), r.err)
            XCTAssertTrue(r.err.contains(resave), r.err)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: pt).sorted(), ["config.json", "pytorch_model.bin"])
        // A .g2w given to g2w-convert: recognised; --dtype re-encodes it.
        let g = try run("g2w-convert", [hf + "/model.g2w"])
        XCTAssertEqual(g.status, 1)
        XCTAssertEqual(g.err, "g2w-convert: error: \(hf)/model.g2w is already a .g2w file (f16 weights): nothing to convert. To re-encode it with another weight type, give --dtype: g2w-convert \(hf)/model.g2w --dtype q8_0 (writes \(hf)/model-q8_0.g2w)\n")
        let q = try run("g2w-convert", [hf + "/model.g2w", "--outtype", "q8_0", "-q"])
        XCTAssertEqual(q.status, 0, q.err)
        let quantized = try run("g2w-convert", [hf + "/model-q8_0.g2w"])
        XCTAssertTrue(quantized.err.contains("is already a .g2w file (q8_0 weights): nothing to convert (a quantized file is not re-encoded: start from the f32 or f16 file)"), quantized.err)
        // GGUF.
        let gguf = dir.appendingPathComponent("m.gguf").path
        try Data(Array("GGUF".utf8) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 24)).write(to: URL(fileURLWithPath: gguf))
        let gr = try run("g2w-run", ["-m", gguf, "-p", "hi"])
        XCTAssertTrue(gr.err.contains("is a GGUF file (llama.cpp's format), not a .g2w file"), gr.err)
        let gc = try run("g2w-convert", [gguf])
        XCTAssertTrue(gc.err.contains("is a GGUF file (llama.cpp's format); g2w-convert reads the Hugging Face checkpoint"), gc.err)
    }

    // MARK: Sharded checkpoints

    /// Splits the tiny checkpoint into two shards with an index, like transformers'
    /// `save_pretrained(max_shard_size=...)`; returns the directory.
    func shardedCopy(_ name: String, index: (([String: String]) -> String)? = nil) throws -> String {
        let src = Self.fixtures.appendingPathComponent("tiny-f32")
        let out = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        for f in ["config.json", "vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: out.appendingPathComponent(f))
        }
        let st = try SafetensorsFile(path: src.appendingPathComponent("model.safetensors").path)
        let names = st.entries.map(\.name).sorted()
        let half = names.count / 2
        var map: [String: String] = [:]
        for (k, part) in [names[..<half], names[half...]].enumerated() {
            let shard = "model-0000\(k + 1)-of-00002.safetensors"
            let tensors = part.map { n -> SafetensorsWriter.Tensor in
                let e = st.entry(named: n)!
                return SafetensorsWriter.Tensor(name: n, dtype: e.dtype, shape: e.shape, bytes: st.bytes(of: e))
            }
            try SafetensorsWriter.write(to: out.appendingPathComponent(shard).path, tensors: tensors, metadata: ["format": "pt"])
            for n in part { map[n] = shard }
        }
        let json = index?(map) ?? "{\"metadata\": {\"total_size\": 13284000}, \"weight_map\": {" + map.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ") + "}}"
        try json.write(to: out.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        return out.path
    }

    func testShardedCheckpointConvertsToTheSameBytes() throws {
        let sharded = try shardedCopy("sharded")
        let single = dir.appendingPathComponent("single").path
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("tiny-f32").path, toPath: single)
        for dtype in ["f32", "q8_0"] {
            let a = try run("g2w-convert", [single, "-o", dir.appendingPathComponent("a-\(dtype).g2w").path, "--dtype", dtype, "-q"])
            XCTAssertEqual(a.status, 0, a.err)
            let b = try run("g2w-convert", [sharded, "-o", dir.appendingPathComponent("b-\(dtype).g2w").path, "--dtype", dtype])
            XCTAssertEqual(b.status, 0, b.err)
            XCTAssertTrue(b.err.contains("28 tensors"), b.err)
            let c = try run("g2w-convert", [sharded + "/model.safetensors.index.json", "-o", dir.appendingPathComponent("c-\(dtype).g2w").path, "--dtype", dtype, "-q"])
            XCTAssertEqual(c.status, 0, c.err)
            let bytes = try Data(contentsOf: dir.appendingPathComponent("a-\(dtype).g2w"))
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("b-\(dtype).g2w")), bytes, dtype)
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("c-\(dtype).g2w")), bytes, dtype)
        }
        // Default output: DIR/model.g2w; and it runs.
        XCTAssertEqual(try run("g2w-convert", [sharded, "-q"]).status, 0)
        XCTAssertEqual(try run("g2w-run", ["-m", sharded + "/model.g2w", "--tokens", "15496,11,995,0", "-n", "3", "--temp", "0", "--no-echo", "-q"]).out, " DM DM DM\n")
        // One shard alone: the whole checkpoint is its directory.
        let one = try run("g2w-convert", [sharded + "/model-00001-of-00002.safetensors", "-o", dir.appendingPathComponent("x.g2w").path])
        XCTAssertEqual(one.status, 1)
        XCTAssertEqual(one.err, "g2w-convert: error: \(sharded)/model-00001-of-00002.safetensors is one shard of a sharded checkpoint (model.safetensors.index.json lists the shards); convert them all together: g2w-convert \(sharded)\n")
    }

    /// The index is validated before anything is written: plain shard names in the directory,
    /// every tensor in exactly one listed shard.
    func testShardedIndexIsValidated() throws {
        let s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors"
        func mapJSON(_ m: [String: String]) -> String {
            "{\"weight_map\": {" + m.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ") + "}}"
        }
        let cases: [(String, ([String: String]) -> String, String)] = [
            ("traversal", { m in var m = m; m[m.keys.sorted()[0]] = "../" + s1; return mapJSON(m) }, "shard '../\(s1)' (of tensor 'h.0.attn.c_attn.bias') is not a plain file name in the index's directory"),
            ("absolute", { m in var m = m; m[m.keys.sorted()[0]] = "/etc/passwd"; return mapJSON(m) }, "shard '/etc/passwd' (of tensor 'h.0.attn.c_attn.bias') is not a plain file name"),
            ("dotdot", { m in var m = m; m[m.keys.sorted()[0]] = ".."; return mapJSON(m) }, "shard '..' (of tensor 'h.0.attn.c_attn.bias') is not a plain file name"),
            ("unlisted", { m in var m = m; m["wte.weight"] = nil; return mapJSON(m) }, "tensor 'wte.weight' of \(s2) is not in \"weight_map\""),
            ("wrong shard", { m in var m = m; m["wte.weight"] = s1; return mapJSON(m) }, "tensor 'wte.weight' is in \(s2), but \"weight_map\" puts it in \(s1)"),
            ("phantom", { m in var m = m; m["h.9.ln_1.weight"] = s1; return mapJSON(m) }, "\"weight_map\" puts tensor 'h.9.ln_1.weight' in \(s1), which does not hold it"),
            ("missing file", { m in var m = m; m["h.9.ln_1.weight"] = "model-00003-of-00002.safetensors"; return mapJSON(m) }, "model-00003-of-00002.safetensors: open failed: No such file or directory"),
            ("no map", { _ in "{\"metadata\": {}}" }, "no \"weight_map\""),
            ("not text", { _ in "{\"weight_map\": {\"wte.weight\": 3}}" }, "tensor 'wte.weight' maps to a number, not a file name"),
            ("empty", { _ in "{\"weight_map\": {}}" }, "\"weight_map\" is empty"),
        ]
        for (name, index, message) in cases {
            let d = try shardedCopy(name.replacingOccurrences(of: " ", with: "-"), index: index)
            let r = try run("g2w-convert", [d, "-o", d + "/out.g2w"])
            XCTAssertEqual(r.status, 1, "\(name): \(r.err)")
            XCTAssertTrue(r.err.contains(message), "\(name): \(r.err)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/out.g2w"), name)
        }
        // A tensor in two shards.
        let d = try shardedCopy("twice")
        let st = try SafetensorsFile(path: d + "/" + s2)
        let extra = try SafetensorsFile(path: d + "/" + s1).entries.first { $0.name == "h.0.attn.c_attn.bias" }!
        let f1 = try SafetensorsFile(path: d + "/" + s1)
        var tensors = st.entries.map { SafetensorsWriter.Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, bytes: st.bytes(of: $0)) }
        tensors.append(SafetensorsWriter.Tensor(name: extra.name, dtype: extra.dtype, shape: extra.shape, bytes: f1.bytes(of: extra)))
        try SafetensorsWriter.write(to: d + "/" + s2, tensors: tensors, metadata: [:], overwrite: true)
        let r = try run("g2w-convert", [d, "-o", d + "/out.g2w"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("tensor 'h.0.attn.c_attn.bias' is in two shards, \(s1) and \(s2)"), r.err)
    }

    // MARK: Empty prompt, --special, small things

    func testEmptyPromptStartsFromEndOfText() throws {
        let model = try tinyModel()
        let fromEOS = try run("g2w-run", ["-m", model, "--tokens", "50256", "-n", "4", "--temp", "0", "--no-echo", "-q"])
        XCTAssertEqual(fromEOS.status, 0, fromEOS.err)
        let empty = try run("g2w-run", ["-m", model, "-p", "", "-n", "4", "--temp", "0", "-q"])
        XCTAssertEqual(empty.status, 0, empty.err)
        XCTAssertEqual(empty.out, fromEOS.out)
        XCTAssertEqual(try run("g2w-run", ["-m", model, "-n", "4", "--temp", "0", "-q"], stdin: "").out, fromEOS.out)  // empty stdin too
        let j = try run("g2w-run", ["-m", model, "-p", "", "-n", "4", "--temp", "0", "--json"])
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any], j.out)
        XCTAssertEqual(o["prompt_ids"] as? [Int], [])
        XCTAssertEqual(o["input_ids"] as? [Int], [50256])
        XCTAssertEqual(o["prompt"] as? String, "")
        // --special: <|endoftext|> in the text is the token; without it, ordinary text.
        let plain = try run("g2w-run", ["-m", model, "--tokenize", "<|endoftext|>Hello"])
        XCTAssertEqual(plain.out, "27,91,437,1659,5239,91,29,15496\n")
        let special = try run("g2w-run", ["-m", model, "--tokenize", "<|endoftext|>Hello", "--special"])
        XCTAssertEqual(special.out, "50256,15496\n")
        let sp = try run("g2w-run", ["-m", model, "-p", "<|endoftext|>", "-sp", "-n", "4", "--temp", "0", "--no-echo", "-q"])
        XCTAssertEqual(sp.out, fromEOS.out)
    }

    func testSmallMessagesOfIssue18() throws {
        // "1 token", not "1 tokens"; the -n spelling the user typed.
        let one = try run("g2w-run", ["-m", demo, "--tokens", "5", "-n", "300"])
        XCTAssertEqual(one.err, "g2w-run: error: the prompt (1 token) plus -n 300 exceeds the model's context of 256 tokens; use -n 255 or less, or a shorter prompt\n")
        let long = try run("g2w-run", ["-m", demo, "--tokens", "5,6", "--max-tokens", "300"])
        XCTAssertEqual(long.err, "g2w-run: error: the prompt (2 tokens) plus --max-tokens 300 exceeds the model's context of 256 tokens; use --max-tokens 254 or less, or a shorter prompt\n")
        // Greedy decoding prints no seed (it has no effect); sampling prints the one used.
        let greedy = try run("g2w-run", ["-m", demo, "-p", "hi", "-n", "2", "--temp", "0"])
        XCTAssertTrue(greedy.err.contains("; greedy; f16 weights"), greedy.err)
        XCTAssertFalse(greedy.err.contains("seed"), greedy.err)
        let topk1 = try run("g2w-run", ["-m", demo, "-p", "hi", "-n", "2", "--top-k", "1"])
        XCTAssertTrue(topk1.err.contains("; greedy;"), topk1.err)
        let sampled = try run("g2w-run", ["-m", demo, "-p", "hi", "-n", "2", "-s", "77"])
        XCTAssertTrue(sampled.err.contains("; seed 77; f16 weights"), sampled.err)
        // An existing output names the flag that replaces it.
        let model = try tinyModel()
        let exists = try run("g2w-convert", [Self.fixtures.appendingPathComponent("tiny-f32").path, "-o", model])
        XCTAssertTrue(exists.err.contains("already exists (use --force to overwrite)"), exists.err)
        // A text shorter than one window names -c.
        let text = dir.appendingPathComponent("short.txt").path
        try "To be, or not to be.".write(toFile: text, atomically: true, encoding: .utf8)
        let p = try run("g2w-run", ["-m", demo, "--perplexity", text])
        XCTAssertEqual(p.status, 1)
        XCTAssertTrue(p.err.contains("fewer than one window of 256") && p.err.hasSuffix("use a smaller window (-c N)\n"), p.err)
    }

    /// A model that does not open (missing, a directory, not a .g2w file): every tool names it
    /// once, as g2w-run does ("PATH: open failed: ...", never "PATH: PATH: ...").
    func testAFileThatDoesNotOpenIsNamedOnceByEveryTool() throws {
        let directory = dir.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let notG2W = dir.appendingPathComponent("x.g2w").path
        try Data("hello, I am not a model file at all, but long enough".utf8).write(to: URL(fileURLWithPath: notG2W))
        let text = Self.fixtures.appendingPathComponent("training/shakespeare-6k.txt").path
        for (path, fragment) in [("/nonexistent/m.g2w", "open failed: No such file"), (directory, "open failed: a directory"), (notG2W, "not a .g2w file")] {
            for (tool, args) in [("g2w-run", ["-m", path, "-p", "hi"]), ("g2w-inspect", [path]), ("g2w-server", ["-m", path, "--port", "0", "-q"]),
                                 ("g2w-train", ["--init", path, "--train", text]), ("g2w-train", ["--resume", path]),
                                 ("g2w-train", ["--export", dir.appendingPathComponent("out.g2w").path, path])] {
                let r = try run(tool, args)
                XCTAssertEqual(r.status, 1, "\(tool) \(args): \(r.err)")
                XCTAssertTrue(r.err.hasPrefix("\(tool): error: \(path): "), "\(tool) \(args): \(r.err)")
                XCTAssertTrue(r.err.contains(fragment), "\(tool) \(args): \(r.err)")
                XCTAssertEqual(r.err.components(separatedBy: path).count, 2, "\(tool) \(args): the path more than once: \(r.err)")
                XCTAssertEqual(r.err.split(separator: "\n").count, 1, "\(tool) \(args): \(r.err)")
            }
        }
    }

    /// The library's settings errors name no flags; the tools say them with theirs.
    func testLibrarySettingsErrorsGetTheirFlags() throws {
        let server = try run("g2w-server", ["-m", demo, "--port", "0", "-q", "-c", "5000"])
        XCTAssertEqual(server.status, 1, server.err)
        XCTAssertEqual(server.err, "g2w-server: error: --ctx-size must be in 1...256 (the model's context), is 5000\n")
        let text = Self.fixtures.appendingPathComponent("training/shakespeare-6k.txt").path
        let scratch = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--n-ctx", "32", "--ctx", "16", "--out", dir.appendingPathComponent("o").path]
        let epoch = try run("g2w-train", ["--train", text, "--batch", "4", "--grad-accum", "1000"] + scratch)
        XCTAssertEqual(epoch.status, 2, epoch.err)
        XCTAssertTrue(firstLine(epoch.err).hasPrefix("g2w-train: one epoch has ") && firstLine(epoch.err).hasSuffix("micro-batches, fewer than --grad-accum 1000: give --max-steps"), epoch.err)
        let mixed = try run("g2w-train", ["--train", text, "--train", dir.appendingPathComponent("t.bin").path] + scratch)
        XCTAssertEqual(mixed.status, 1, mixed.err)
        XCTAssertEqual(mixed.err, "g2w-train: error: --train mixes text files and llm.c token files\n")
        let model = try run("g2w-train", ["--resume", demo])
        XCTAssertEqual(model.err, "g2w-train: error: \(demo): not a g2w-train checkpoint (no training state); to fine-tune a model, use --init\n")
    }

    // MARK: JSON

    /// log-softmax of transformers' logits for "Hello, world!" (the tiny model's reference).
    func referenceLogProbabilities() throws -> [Double] {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny-f32/logits_last.f32"))
        let logits: [Double] = (0..<50257).map { i in Double(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }) }
        let m = logits.max()!
        let lse = m + log(logits.reduce(0) { $0 + exp($1 - m) })
        return logits.map { $0 - lse }
    }

    func testJSONGenerationWithLogProbabilities() throws {
        let model = try tinyModel()
        let ref = try referenceLogProbabilities()
        let order = ref.indices.sorted { ref[$0] > ref[$1] || (ref[$0] == ref[$1] && $0 < $1) }
        let r = try run("g2w-run", ["-m", model, "-p", "Hello, world!", "-n", "3", "--temp", "0", "--json", "--n-probs", "5"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out.split(separator: "\n").count, 1, r.out)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], r.out)
        XCTAssertEqual(o["prompt"] as? String, "Hello, world!")
        XCTAssertEqual(o["prompt_ids"] as? [Int], [15496, 11, 995, 0])
        XCTAssertNil(o["input_ids"])
        XCTAssertEqual(o["ids"] as? [Int], [14848, 14848, 14848])  // transformers' greedy
        XCTAssertEqual(o["text"] as? String, " DM DM DM")
        XCTAssertEqual(o["stop_reason"] as? String, "max_tokens")
        XCTAssertTrue(o["seed"] is NSNull, "greedy: no seed")
        let timings = try XCTUnwrap(o["timings"] as? [String: Any])
        XCTAssertEqual(timings["prompt_tokens"] as? Int, 4)
        XCTAssertEqual(timings["generated_tokens"] as? Int, 3)
        XCTAssertEqual(timings["evaluated_tokens"] as? Int, 2)
        for k in ["load_ms", "prompt_ms", "generate_ms", "prompt_tokens_per_second"] { XCTAssertNotNil(timings[k] as? Double, k) }
        let pieces = try XCTUnwrap(o["pieces"] as? [[String: Any]])
        XCTAssertEqual(pieces.count, 3)
        XCTAssertEqual(pieces.map { $0["text"] as? String ?? "?" }.joined(), " DM DM DM")
        // The first token's log-probability and its 5 alternatives are transformers' log-softmax.
        let first = pieces[0]
        XCTAssertEqual(first["id"] as? Int, 14848)
        XCTAssertEqual(try XCTUnwrap(first["logprob"] as? Double), ref[14848], accuracy: 1e-4)
        let top = try XCTUnwrap(first["top_logprobs"] as? [[String: Any]])
        XCTAssertEqual(top.map { $0["id"] as? Int ?? -1 }, Array(order.prefix(5)))
        for t in top { XCTAssertEqual(try XCTUnwrap(t["logprob"] as? Double), ref[t["id"] as! Int], accuracy: 1e-4) }
        XCTAssertEqual(top[0]["text"] as? String, " DM")
        for p in pieces { XCTAssertLessThanOrEqual(p["logprob"] as! Double, 0) }

        // --jsonl: one object per token as produced, then the summary; the same ids and text.
        let l = try run("g2w-run", ["-m", model, "-p", "Hello, world!", "-n", "3", "--temp", "0", "--jsonl", "--n-probs", "2"])
        XCTAssertEqual(l.status, 0, l.err)
        let lines = try l.out.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], String($0)) }
        XCTAssertEqual(lines.count, 4, l.out)
        XCTAssertEqual(lines.prefix(3).map { $0["id"] as? Int }, [14848, 14848, 14848])
        XCTAssertEqual(try XCTUnwrap(lines[0]["logprob"] as? Double), ref[14848], accuracy: 1e-4)
        XCTAssertEqual((lines[0]["top_logprobs"] as? [[String: Any]])?.count, 2)
        XCTAssertEqual(lines[3]["stop_reason"] as? String, "max_tokens")
        XCTAssertEqual(lines[3]["ids"] as? [Int], o["ids"] as? [Int])
        XCTAssertEqual(lines[3]["text"] as? String, " DM DM DM")
        // Without --n-probs: the chosen token's log-probability only; sampling reports its seed.
        let s = try run("g2w-run", ["-m", model, "-p", "Hello", "-n", "4", "-s", "9", "--jsonl"])
        let sl = s.out.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertNil(sl[0]?["top_logprobs"])
        XCTAssertNotNil(sl[0]?["logprob"] as? Double)
        XCTAssertEqual(sl.last??["seed"] as? Int, 9)
        // A stop string: the reason and the string.
        let stop = try run("g2w-run", ["-m", model, "-p", "Hello, world!", "-n", "3", "--temp", "0", "--json", "-r", " DM DM"])
        let so = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stop.out.utf8)) as? [String: Any], stop.out)
        XCTAssertEqual(so["stop_reason"] as? String, "stop_string")
        XCTAssertEqual(so["stop_string"] as? String, " DM DM")
        XCTAssertEqual(so["text"] as? String, "")
    }

    // MARK: Interactive mode

    /// A running g2w-run whose stdin we write and whose output we read as it comes.
    final class LiveProcess {
        let process = Process()
        let input = Pipe(), output = Pipe(), error = Pipe()
        private let lock = NSLock()
        private var outBytes = Data(), errBytes = Data()

        init(_ tool: URL, _ args: [String]) throws {
            process.executableURL = tool
            process.arguments = args
            process.standardInput = input
            process.standardOutput = output
            process.standardError = error
            output.fileHandleForReading.readabilityHandler = { [weak self] h in let d = h.availableData; self?.lock.withLock { self?.outBytes.append(d) } }
            error.fileHandleForReading.readabilityHandler = { [weak self] h in let d = h.availableData; self?.lock.withLock { self?.errBytes.append(d) } }
            try process.run()
        }
        var out: String { lock.withLock { String(decoding: outBytes, as: UTF8.self) } }
        var err: String { lock.withLock { String(decoding: errBytes, as: UTF8.self) } }
        func write(_ s: String) { input.fileHandleForWriting.write(Data(s.utf8)) }
        func closeInput() { try? input.fileHandleForWriting.close() }
        /// Waits (up to 60 s) until `condition` holds.
        func wait(until condition: (LiveProcess) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if condition(self) { return true }
                usleep(2000)
            }
            return false
        }
        func finish() -> Int32 {
            process.waitUntilExit()
            output.fileHandleForReading.readabilityHandler = nil
            error.fileHandleForReading.readabilityHandler = nil
            lock.withLock {
                outBytes.append(output.fileHandleForReading.readDataToEndOfFile())
                errBytes.append(error.fileHandleForReading.readDataToEndOfFile())
            }
            return process.terminationStatus
        }
    }

    func testInteractiveLinesAndConversation() throws {
        // -i with stdin not a terminal: a prompt per line, each fresh; the load line once.
        let r = try run("g2w-run", ["-m", demo, "-i", "-n", "6", "--temp", "0"], stdin: "ROMEO:\nJULIET:\n")
        XCTAssertEqual(r.status, 0, r.err)
        let romeo = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "6", "--temp", "0", "--no-echo", "-q"]).out
        let juliet = try run("g2w-run", ["-m", demo, "-p", "JULIET:", "-n", "6", "--temp", "0", "--no-echo", "-q"]).out
        XCTAssertEqual(r.out, "> ROMEO:\n" + romeo + "> JULIET:\n" + juliet + "> \n")
        XCTAssertEqual(r.err.components(separatedBy: "g2w-run: load ").count - 1, 1, r.err)
        XCTAssertEqual(r.err.components(separatedBy: "g2w-run: prompt ").count - 1, 2, r.err)
        // With -p: that prompt first (echoed), then the lines.
        let p = try run("g2w-run", ["-m", demo, "-i", "-p", "ROMEO:", "-n", "6", "--temp", "0", "-q"], stdin: "JULIET:\n")
        XCTAssertEqual(p.out, "ROMEO:" + romeo + "> JULIET:\n" + juliet + "> \n")

        // --conversation: the second line continues the text so far (on a new line), in the same
        // session: the same tokens as one generation from the whole text's ids.
        let c = try run("g2w-run", ["-m", demo, "-cnv", "-n", "6", "--temp", "0", "-q"], stdin: "ROMEO:\nJULIET:\n")
        XCTAssertEqual(c.status, 0, c.err)
        let first = try run("g2w-run", ["-m", demo, "-p", "ROMEO:", "-n", "6", "--temp", "0", "--json"])
        let fo = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(first.out.utf8)) as? [String: Any])
        let firstText = fo["text"] as! String
        let sep = firstText.hasSuffix("\n") ? "" : "\n"
        let next = try run("g2w-run", ["-m", demo, "--tokenize", sep + "JULIET:"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let all = (fo["prompt_ids"] as! [Int]) + (fo["ids"] as! [Int])
        let whole = try run("g2w-run", ["-m", demo, "--tokens", all.map(String.init).joined(separator: ",") + "," + next, "-n", "6", "--temp", "0", "--no-echo", "-q"])
        XCTAssertEqual(c.out, "> ROMEO:\n" + firstText + "\n> JULIET:\n" + whole.out + "> \n")

        // A full context keeps the most recent half and goes on.
        let full = try run("g2w-run", ["-m", demo, "-cnv", "-c", "40", "-n", "10", "--temp", "0"], stdin: "ROMEO:\nJULIET:\nROMEO:\nJULIET:\n")
        XCTAssertEqual(full.status, 0, full.err)
        XCTAssertTrue(full.err.contains("g2w-run: context full: keeping the last 20 tokens of "), full.err)
        XCTAssertEqual(full.out.components(separatedBy: "> ").count - 1, 5, full.out)
        XCTAssertFalse(full.err.contains("error"), full.err)
    }

    /// Ctrl-C stops the current answer and returns to the prompt; Ctrl-C at the prompt quits
    /// (130); without interaction it ends the generation with its output complete.
    func testCtrlC() throws {
        let p = try LiveProcess(Self.bin.appendingPathComponent("g2w-run"), ["-m", demo, "-i", "-n", "250", "--ignore-eos", "-t", "1", "--temp", "0"])
        p.write("ROMEO:\n")
        XCTAssertTrue(p.wait { $0.out.count > "> ROMEO:\n".count + 2 }, p.out)
        kill(p.process.processIdentifier, SIGINT)
        XCTAssertTrue(p.wait { $0.err.contains("stopped (Ctrl-C)") && $0.out.hasSuffix("\n> ") }, p.out + p.err)
        XCTAssertTrue(p.err.contains("stopped at cancelled"), p.err)
        XCTAssertTrue(p.process.isRunning)
        kill(p.process.processIdentifier, SIGINT)  // at the prompt: quit
        XCTAssertEqual(p.finish(), 130)
        // Ctrl-D after a cancelled answer: a clean exit.
        let q = try LiveProcess(Self.bin.appendingPathComponent("g2w-run"), ["-m", demo, "-i", "-n", "250", "--ignore-eos", "-t", "1", "--temp", "0", "-q"])
        q.write("ROMEO:\n")
        XCTAssertTrue(q.wait { $0.out.count > "> ROMEO:\n".count + 2 })
        kill(q.process.processIdentifier, SIGINT)
        XCTAssertTrue(q.wait { $0.out.hasSuffix("\n> ") }, q.out)
        q.closeInput()
        XCTAssertEqual(q.finish(), 0)
        // --json: Ctrl-C still prints one complete object, stop reason "cancelled", status 130.
        let j = try LiveProcess(Self.bin.appendingPathComponent("g2w-run"), ["-m", demo, "-p", "ROMEO:", "-n", "250", "--ignore-eos", "-t", "1", "--jsonl"])
        XCTAssertTrue(j.wait { $0.out.split(separator: "\n").count > 2 })
        kill(j.process.processIdentifier, SIGINT)
        XCTAssertEqual(j.finish(), 130)
        let last = try XCTUnwrap(j.out.split(separator: "\n").last)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], String(last))
        XCTAssertEqual(o["stop_reason"] as? String, "cancelled")
        XCTAssertLessThan((o["ids"] as? [Int])?.count ?? 250, 250)
    }
}
