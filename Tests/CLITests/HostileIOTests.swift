import Foundation
import G2WFormat
import XCTest

/// Inputs and streams that are not what a tool expects: FIFOs and devices as paths, closed or
/// failing standard streams, endless input. Each is an error naming the path or stream, with
/// status 1, never a hang, a trap or output lost with status 0 (issue 17, items 3, 4, 5, 8).
final class HostileIOTests: XCTestCase {
    var dir: URL!
    let bin = CLITests.bin
    let model = CLITests.fixtures.appendingPathComponent("shakespeare.g2w").path

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-io-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Runs a shell command line (for redirections) under a 30 s timeout: (status, stderr).
    func sh(_ script: String) throws -> (status: Int32, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["30", "/bin/sh", "-c", script]
        p.environment = ProcessInfo.processInfo.environment.merging(["B": bin.path, "M": model, "D": dir.path]) { $1 }
        let e = Pipe()
        p.standardError = e
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: err, as: UTF8.self))
    }

    func testFIFOsAndDevicesAreRefusedNotWaitedOn() throws {
        let fifo = dir.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (cmd, what) in [("$B/g2w-run -m \(fifo) -n 1", "a FIFO"), ("$B/g2w-inspect \(fifo)", "a FIFO"), ("$B/g2w-convert \(fifo) -o $D/x.g2w", "a FIFO"),
                            ("$B/g2w-run -m $M --prompt-file \(fifo) -n 1", "a FIFO"), ("$B/g2w-run -m $M --perplexity \(fifo)", "a FIFO"),
                            ("$B/g2w-run -m /dev/zero -n 1", "a device"), ("$B/g2w-run -m $M --prompt-file /dev/zero -n 1", "a device"),
                            ("$B/g2w-convert $D -o $D/y.g2w", "No such file")] {
            let r = try sh(cmd)
            XCTAssertEqual(r.status, 1, "\(cmd): \(r.err)")  // 124 would be the timeout: a hang
            XCTAssertTrue(r.err.contains(what), "\(cmd): \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.g2w").path))
    }

    func testClosedAndFailingStreams() throws {
        // stdin closed: the prompt cannot be read.
        var r = try sh("$B/g2w-run -m $M -n 2 <&-")
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("stdin: read failed: Bad file descriptor"), r.err)
        // stderr closed: the timings cannot be written; generation still succeeds.
        r = try sh("$B/g2w-run -m $M --prompt hi -n 2 2>&-")
        XCTAssertEqual(r.status, 0, r.err)
        // stdout on a full device: status 1 naming standard output, for every tool that prints.
        for cmd in ["$B/g2w-run -m $M --prompt hi -n 5", "$B/g2w-run -m $M --tokenize hello", "$B/g2w-inspect $M", "$B/g2w-run -m $M --tokens 1,2 -n 3 --no-echo"] {
            r = try sh("\(cmd) > /dev/full")
            XCTAssertEqual(r.status, 1, "\(cmd): \(r.err)")
            XCTAssertTrue(r.err.contains("cannot write to standard output: No space left on device"), "\(cmd): \(r.err)")
        }
    }

    /// Endless input on stdin: bounded by what the context can use, an error at once.
    func testEndlessStdinIsBounded() throws {
        let r = try sh("$B/g2w-run -m $M -n 1 < /dev/zero")
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("the prompt is longer than the 1048576-byte limit"), r.err)
    }

    /// --force replaces regular files only, never the input itself, and a planted link at the
    /// temporary name is never followed (items 6 and 7).
    func testOutputsThatMustNotBeReplaced() throws {
        let src = CLITests.fixtures.appendingPathComponent("tiny-f32/model.safetensors").path
        let fifo = dir.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (out, what) in [(dir.path, "it is a directory"), (fifo, "it is a FIFO")] {
            let r = try sh("$B/g2w-convert \(src) -o \(out) --force -q")
            XCTAssertEqual(r.status, 1, r.err)
            XCTAssertTrue(r.err.contains(what) && r.err.contains("only a regular file may be replaced"), r.err)
        }
        var isDir: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) && isDir.boolValue)
        // The input as the output, even with --force: refused, the input intact.
        let copy = dir.appendingPathComponent("model.safetensors").path
        try FileManager.default.copyItem(atPath: src, toPath: copy)
        try FileManager.default.copyItem(atPath: CLITests.fixtures.appendingPathComponent("tiny-f32/config.json").path, toPath: dir.appendingPathComponent("config.json").path)
        let before = try Data(contentsOf: URL(fileURLWithPath: copy))
        let r = try sh("$B/g2w-convert \(copy) -o \(copy) --force -q --no-tokenizer")
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssertTrue(r.err.contains("is an input"), r.err)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: copy)), before)
    }

    func testPlantedTemporaryLinkIsNotFollowed() throws {
        let victim = dir.appendingPathComponent("victim").path
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let out = dir.appendingPathComponent("out.g2w").path
        let planted = dir.appendingPathComponent(".out.g2w.tmp-\(getpid())").path
        XCTAssertEqual(symlink(victim, planted), 0)
        let w = try G2WWriter(path: out, metadata: ["k": .string("v")], tensors: [.init(name: "t", dtype: .f32, shape: [2])])
        try w.write([Float(1), 2])
        try w.finish()
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
        XCTAssertEqual(try G2WFile(path: out).tensor(named: "t")?.floats(), [1, 2])
        // And the safetensors writer.
        let out2 = dir.appendingPathComponent("out.safetensors").path
        XCTAssertEqual(symlink(victim, dir.appendingPathComponent(".out.safetensors.tmp-\(getpid())").path), 0)
        try SafetensorsWriter.write(to: out2, tensors: [SafetensorsWriter.Tensor(name: "t", dtype: .f32, shape: [1]) { sink in try [Float(3)].withUnsafeBytes { try sink($0) } }], metadata: [:])
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
    }
}
