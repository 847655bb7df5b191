import Foundation
import G2WFormat
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Faults while writing: interrupts, a full disk, a file-size limit, an unwritable directory.
/// No partial or corrupt .g2w ever remains under the target name, and existing files are intact.
final class FaultTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-fault-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A GPT-2-shaped checkpoint of about `megabytes` MB (zeros: sparse on disk, values don't matter).
    func bigCheckpoint(embd: Int = 512, layers: Int = 6) throws -> String {
        let vocab = 50257, ctx = 1024
        var entries: [String] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            let n = shape.reduce(1, *) * 4
            entries.append("\"transformer.\(name)\":{\"dtype\":\"F32\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + n)]}")
            offset += n
        }
        add("wte.weight", [vocab, embd]); add("wpe.weight", [ctx, embd])
        for l in 0..<layers {
            let p = "h.\(l)."
            add(p + "ln_1.weight", [embd]); add(p + "ln_1.bias", [embd])
            add(p + "attn.c_attn.weight", [embd, 3 * embd]); add(p + "attn.c_attn.bias", [3 * embd])
            add(p + "attn.c_proj.weight", [embd, embd]); add(p + "attn.c_proj.bias", [embd])
            add(p + "ln_2.weight", [embd]); add(p + "ln_2.bias", [embd])
            add(p + "mlp.c_fc.weight", [embd, 4 * embd]); add(p + "mlp.c_fc.bias", [4 * embd])
            add(p + "mlp.c_proj.weight", [4 * embd, embd]); add(p + "mlp.c_proj.bias", [embd])
        }
        add("ln_f.weight", [embd]); add("ln_f.bias", [embd])
        let header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        var bytes: [UInt8] = []
        var n = UInt64(header.count)
        for _ in 0..<8 { bytes.append(UInt8(n & 0xFF)); n >>= 8 }
        bytes += header
        let path = dir.appendingPathComponent("model.safetensors").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(truncate(path, off_t(bytes.count + offset)), 0)
        try "{\"n_layer\": \(layers), \"n_head\": 8, \"n_embd\": \(embd), \"n_positions\": \(ctx), \"vocab_size\": \(vocab)}"
            .write(toFile: dir.appendingPathComponent("config.json").path, atomically: true, encoding: .utf8)
        return path
    }

    func converter(_ args: [String], shell: String? = nil) throws -> Process {
        let p = Process()
        let exe = CLITests.bin.appendingPathComponent("g2w-convert").path
        if let shell {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", shell + " exec \"$0\" \"$@\"", exe] + args
        } else {
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
        }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = Pipe()
        return p
    }

    func stderr(_ p: Process) -> String {
        String(decoding: (p.standardError as! Pipe).fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() }

    /// Interrupt a conversion in the middle (the temporary file exists and is growing).
    func interrupt(with signal: Int32) throws -> (status: Int32, reason: Process.TerminationReason, err: String) {
        let model = try bigCheckpoint()
        let out = dir.appendingPathComponent("model.g2w").path
        let p = try converter([model, "--dtype", "f32", "-q", "--no-tokenizer"])
        try p.run()
        let tmp = dir.appendingPathComponent(".model.g2w.tmp-\(p.processIdentifier)").path
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let size = try? FileManager.default.attributesOfItem(atPath: tmp)[.size] as? Int, size > 20_000_000 { break }
            usleep(2000)
        }
        kill(p.processIdentifier, signal)
        let err = stderr(p)
        p.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a partial .g2w exists under the target name")
        return (p.terminationStatus, p.terminationReason, err)
    }

    func testSIGINTAndSIGTERMLeaveNothing() throws {
        for sig in [SIGINT, SIGTERM] {
            let r = try interrupt(with: sig)
            XCTAssertEqual(r.status, 128 + sig, r.err)
            XCTAssertTrue(r.err.contains("interrupted; removed the partial output"), r.err)
            XCTAssertEqual(try files(), ["config.json", "model.safetensors"], "signal \(sig)")
            try FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
    }

    /// SIGKILL cannot be caught: the temporary file stays (never the target name), and the next
    /// conversion into the same directory removes it.
    func testSIGKILLLeavesOnlyATemporaryThatTheNextRunRemoves() throws {
        let r = try interrupt(with: SIGKILL)
        XCTAssertEqual(r.reason, .uncaughtSignal)
        let left = try files().filter { $0.hasPrefix(".model.g2w.tmp-") }
        XCTAssertEqual(left.count, 1)
        let again = try converter([dir.appendingPathComponent("model.safetensors").path, "--dtype", "f16", "-q", "--no-tokenizer"])
        try again.run()
        again.waitUntilExit()
        XCTAssertEqual(again.terminationStatus, 0)
        XCTAssertEqual(try files(), ["config.json", "model.g2w", "model.safetensors"])
        XCTAssertNoThrow(try G2WFile(path: dir.appendingPathComponent("model.g2w").path).verify())
    }

    func testFileSizeLimitIsAnErrorAndLeavesNothing() throws {
        let model = try bigCheckpoint(embd: 64, layers: 1)
        let p = try converter([model, "-q", "--no-tokenizer"], shell: "ulimit -f 2048;")  // 1 MB
        try p.run()
        let err = stderr(p)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, err)
        XCTAssertTrue(err.contains("file size limit exceeded"), err)
        // The message names the output, not the temporary file (issue 17 item 12).
        XCTAssertTrue(err.contains(dir.appendingPathComponent("model.g2w").path + ": write failed: file size limit exceeded"), err)
        XCTAssertFalse(err.contains(".tmp-"), err)
        XCTAssertEqual(try files(), ["config.json", "model.safetensors"])
    }

    func testFullDiskIsAnErrorAndLeavesNothing() throws {
        let mnt = dir.appendingPathComponent("small").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = Process()
        m.executableURL = URL(fileURLWithPath: "/bin/mount")
        m.arguments = ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]
        m.standardError = FileHandle.nullDevice
        try m.run(); m.waitUntilExit()
        guard m.terminationStatus == 0 else { throw XCTSkip("cannot mount a small tmpfs here (needs root)") }
        defer { let u = Process(); u.executableURL = URL(fileURLWithPath: "/bin/umount"); u.arguments = [mnt]; try? u.run(); u.waitUntilExit() }
        let model = try bigCheckpoint(embd: 64, layers: 1)
        let p = try converter([model, "-o", mnt + "/model.g2w", "-q", "--no-tokenizer"])
        try p.run()
        let err = stderr(p)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, err)
        XCTAssertTrue(err.contains("no space left on the device"), err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mnt), [])
    }

    func testUnwritableDirectory() throws {
        let model = try bigCheckpoint(embd: 64, layers: 1)
        for out in ["/proc/self/model.g2w", dir.appendingPathComponent("no/such/dir/model.g2w").path] {
            let p = try converter([model, "-o", out, "-q", "--no-tokenizer"])
            try p.run()
            let err = stderr(p)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 1, err)
            XCTAssertTrue(err.contains("create failed"), err)
        }
    }
}
