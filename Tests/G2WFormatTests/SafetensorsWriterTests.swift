import Foundation
import XCTest
@preconcurrency import G2WFormat

/// `SafetensorsWriter` against `SafetensorsFile`: what is written reads back identically, the
/// header follows the format (length prefix, space padding to 8, back-to-back offsets), bad input
/// is refused before anything is created, and no temporary file survives an error.
final class SafetensorsWriterTests: XCTestCase {
    /// Files in `dir` other than the expected ones (temporaries included).
    func listing(_ dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    func testRoundTrip() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("m.safetensors").path
        let a: [Float] = [1, -2.5, 3.25, .pi, -0, 1e-30]
        let b: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001]
        let c: [Int32] = []
        let d: [UInt8] = [7]
        let names = ["h.0.attn.c_attn.weight", "quote\"back\\slash", "ctl\u{01}\n\té€😀", "scalar"]
        let meta = ["format": "pt", "note": "line\nbreak \"quoted\" \\ é 😀 \u{7F}", "": "empty key"]
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBytes { pb in
                try c.withUnsafeBytes { pc in
                    try d.withUnsafeBytes { pd in
                        try SafetensorsWriter.write(to: path, tensors: [
                            .f32(name: names[0], shape: [2, 3], pa),
                            .init(name: names[1], dtype: .f16, shape: [4], bytes: pb),
                            .init(name: names[2], dtype: .i32, shape: [0, 5], bytes: pc),
                            .init(name: names[3], dtype: .u8, shape: [], bytes: pd),
                        ], metadata: meta)
                    }
                }
            }
        }
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, meta)
        XCTAssertEqual(f.entries.map(\.name), names)
        XCTAssertEqual(f.entries.map(\.shape), [[2, 3], [4], [0, 5], []])
        XCTAssertEqual(f.entries.map(\.dtype), [.f32, .f16, .i32, .u8])
        XCTAssertEqual(f.entries.map(\.dataRange), [0..<24, 24..<32, 32..<32, 32..<33])
        XCTAssertEqual(Array(f.bytes(of: f.entries[0])), a.withUnsafeBytes { Array($0) })
        XCTAssertEqual(Array(f.bytes(of: f.entries[1])), b.withUnsafeBytes { Array($0) })
        XCTAssertEqual(Array(f.bytes(of: f.entries[2])), [])
        XCTAssertEqual(Array(f.bytes(of: f.entries[3])), [7])

        // The header: little-endian length, a multiple of 8, JSON padded with spaces.
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = raw.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(raw.count, 8 + n + 33)
        let header = raw[8..<(8 + n)]
        let json = header.reversed().drop(while: { $0 == 0x20 })
        XCTAssertEqual(json.first, UInt8(ascii: "}"))
        XCTAssertNoThrow(try JSONValue.parse(header))
        XCTAssertEqual(try listing(dir), ["m.safetensors"])
    }

    func testEmptyFileAndStreamedF16() throws {
        let dir = try makeTemporaryDirectory(self)
        let empty = dir.appendingPathComponent("empty.safetensors").path
        try SafetensorsWriter.write(to: empty, tensors: [])
        let e = try SafetensorsFile(path: empty)
        XCTAssertTrue(e.entries.isEmpty)
        XCTAssertTrue(e.metadata.isEmpty)
        XCTAssertEqual(e.fileSize, 16)  // 8 + "{}" padded to 8

        // More values than one conversion slice (2^18), so the producer streams in pieces.
        let values = (0..<300_000).map { Float($0 % 1000) * 0.01 - 5 }
        let path = dir.appendingPathComponent("h.safetensors").path
        try values.withUnsafeBufferPointer {
            try SafetensorsWriter.write(to: path, tensors: [.f16(name: "x", shape: [600, 500], converting: $0)])
        }
        let f = try SafetensorsFile(path: path)
        let entry = try XCTUnwrap(f.entry(named: "x"))
        XCTAssertEqual(entry.dtype, .f16)
        XCTAssertEqual(entry.shape, [600, 500])
        let bytes = f.bytes(of: entry)
        for i in stride(from: 0, to: values.count, by: 997) {
            XCTAssertEqual(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self), Float16(values[i]).bitPattern, "element \(i)")
        }
    }

    func testRefusesToOverwriteUnlessAsked() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("m.safetensors").path
        let one: [Float] = [1], two: [Float] = [2, 3]
        try one.withUnsafeBufferPointer { try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [1], $0)]) }
        assertFormatError("already exists") {
            try two.withUnsafeBufferPointer { try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [2], $0)]) }
        }
        XCTAssertEqual(try SafetensorsFile(path: path).entries.first?.shape, [1], "the original is untouched")
        try two.withUnsafeBufferPointer {
            try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [2], $0)], overwrite: true)
        }
        XCTAssertEqual(try SafetensorsFile(path: path).entries.first?.shape, [2])
        XCTAssertEqual(try listing(dir), ["m.safetensors"])
    }

    struct Interrupted: Error {}

    func testNoTemporaryFileAfterErrors() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("m.safetensors").path
        let values: [Float] = [1, 2, 3, 4]
        try values.withUnsafeBufferPointer { v in
            // Failures found before anything is created.
            assertFormatError("needs 12") { try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [3], v)]) }
            assertFormatError("duplicate name 'a'") {
                try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [4], v), .f32(name: "a", shape: [4], v)])
            }
            assertFormatError("reserved") { try SafetensorsWriter.write(to: path, tensors: [.f32(name: "__metadata__", shape: [4], v)]) }
            assertFormatError("name is empty") { try SafetensorsWriter.write(to: path, tensors: [.f32(name: "", shape: [4], v)]) }
            assertFormatError("negative") { try SafetensorsWriter.write(to: path, tensors: [.init(name: "a", dtype: .f32, shape: [-1, -4], bytes: UnsafeRawBufferPointer(v))]) }
            assertFormatError("overflows") {
                try SafetensorsWriter.write(to: path, tensors: [.init(name: "a", dtype: .f32, shape: [1 << 40, 1 << 30], producer: { _ in })])
            }
            // Failures in the middle of the data: the temporary file exists by then.
            assertFormatError("wrote 8 bytes, shape [4] x F32 needs 16") {
                try SafetensorsWriter.write(to: path, tensors: [.f32(name: "a", shape: [4], v), .init(name: "b", dtype: .f32, shape: [4]) { sink in
                    try sink(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(v)[0..<8]))
                }])
            }
            assertFormatError("more than the 16 bytes") {
                try SafetensorsWriter.write(to: path, tensors: [.init(name: "b", dtype: .f32, shape: [4]) { sink in
                    try sink(UnsafeRawBufferPointer(v))
                    try sink(UnsafeRawBufferPointer(v))
                }])
            }
            XCTAssertThrowsError(try SafetensorsWriter.write(to: path, tensors: [.init(name: "b", dtype: .f32, shape: [4]) { sink in
                try sink(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(v)[0..<4]))
                throw Interrupted()
            }])) { XCTAssertTrue($0 is Interrupted, "the producer's error is passed on: \($0)") }
            // A directory that does not exist.
            assertFormatError("create failed") {
                try SafetensorsWriter.write(to: dir.appendingPathComponent("missing/m.safetensors").path, tensors: [.f32(name: "a", shape: [4], v)])
            }
        }
        XCTAssertEqual(try listing(dir), [], "no output and no temporary file")
    }

    func testAtomicFileWriter() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("x.txt").path
        do {
            let w = try AtomicFileWriter(path: path)
            try w.write(Array("partial".utf8))
            XCTAssertEqual(try listing(dir), [".x.txt.tmp-\(getpid())"])
        }  // dropped without commit()
        XCTAssertEqual(try listing(dir), [])
        try AtomicFileWriter.write("hello", to: path)
        assertFormatError("already exists") { try AtomicFileWriter.write("again", to: path) }
        // The destination appearing while the file is written is caught at the move.
        let y = dir.appendingPathComponent("y.txt").path
        let w = try AtomicFileWriter(path: y)
        try w.write(Array("late".utf8))
        // A second writer of the same file in this process is refused (they would share the temporary file).
        assertFormatError("another writer") { _ = try AtomicFileWriter(path: y, overwrite: true) }
        try Data("first".utf8).write(to: URL(fileURLWithPath: y))
        assertFormatError("already exists") { try w.commit() }
        XCTAssertEqual(try String(contentsOfFile: y, encoding: .utf8), "first")
        // A temporary file left by a killed process with this process's id is replaced.
        let stale = dir.appendingPathComponent(".z.txt.tmp-\(getpid())").path
        try Data("stale".utf8).write(to: URL(fileURLWithPath: stale))
        try AtomicFileWriter.write("fresh", to: dir.appendingPathComponent("z.txt").path)
        XCTAssertEqual(try String(contentsOfFile: dir.appendingPathComponent("z.txt").path, encoding: .utf8), "fresh")
        try AtomicFileWriter.write("replaced", to: path, overwrite: true)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "replaced")
        XCTAssertEqual(try listing(dir), ["x.txt", "y.txt", "z.txt"])
        assertFormatError("names a directory") { _ = try AtomicFileWriter(path: dir.path + "/") }
    }

    func testJSONSerialization() throws {
        let tricky = ["", "plain", "quote\" backslash\\ slash/", "\u{00}\u{01}\u{08}\u{0C}\u{1F}\u{7F}", "é Ġ \u{2028} 😀", "\r\n\t"]
        for s in tricky {
            for ascii in [false, true] {
                let q = JSONValue.quoted(s, asciiOnly: ascii)
                XCTAssertEqual(try JSONValue.parse(Array(q.utf8)), .string(s), "\(q)")
                if ascii { XCTAssertTrue(q.utf8.allSatisfy { $0 < 0x80 }, q) }
            }
        }
        XCTAssertEqual(JSONValue.quoted("😀Ġ", asciiOnly: true), "\"\\ud83d\\ude00\\u0120\"")
        let doc = JSONValue.object([("a", .number(1e-5, integer: nil)), ("b", .array([.number(3, integer: 3), .null, .bool(true)])),
                                    ("c", .object([])), ("d", .array([])), ("e", .string("x\"y")), ("f", .number(.infinity, integer: nil))])
        XCTAssertEqual(doc.serialized(), #"{"a":1e-05,"b":[3,null,true],"c":{},"d":[],"e":"x\"y","f":null}"#)
        XCTAssertEqual(JSONValue.object([("a", .array([.number(1, integer: 1)]))]).serialized(indent: 2), "{\n  \"a\": [\n    1\n  ]\n}")
        for indent in [nil, 0, 2] {
            let back = try JSONValue.parse(Array(doc.serialized(indent: indent).utf8))
            XCTAssertEqual(back["b"], doc["b"])
            XCTAssertEqual(back["a"]?.double, 1e-5)
        }
    }
}
