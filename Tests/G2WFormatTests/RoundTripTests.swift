import CG2W
import Foundation
import XCTest
import G2WFormat

final class RoundTripTests: XCTestCase {
    /// Writes tensors of several shapes and both dtypes, reads them back through the mapping.
    func testRoundTripIsBitExact() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("t.g2w").path
        var meta = G2WMetadata()
        meta["g2w.architecture"] = .string("test")
        meta["n"] = .uint(42)
        meta["neg"] = .int(-7)
        meta["eps"] = .float(1e-5)
        meta["flag"] = .bool(true)
        meta["blob"] = .bytes([0, 1, 2, 255])
        meta["words"] = .stringArray(["Ġthe", "", "日本", "a b"])
        let shapes: [[Int]] = [[1], [3], [5, 7], [2, 3, 4], [2, 1, 3, 5], [65], [17, 33]]
        var descriptors: [G2WTensorDescriptor] = []
        var payloads: [[UInt8]] = []
        var rng = SystemRandomNumberGenerator()
        for (i, s) in shapes.enumerated() {
            let dtype: G2WDType = i % 2 == 0 ? .f32 : .f16
            descriptors.append(.init(name: "t\(i).weight", dtype: dtype, shape: s))
            let n = s.reduce(1, *) * dtype.size
            payloads.append((0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
        let writer = try G2WWriter(path: path, metadata: meta, tensors: descriptors)
        // Stream in odd-sized chunks that cross tensor boundaries.
        let all = payloads.flatMap { $0 }
        var at = 0
        while at < all.count {
            let n = min(13, all.count - at)
            try all[at..<(at + n)].withUnsafeBytes { try writer.write($0) }
            at += n
        }
        try writer.finish()
        XCTAssertFalse(FileManager.default.fileExists(atPath: writer.temporaryPath))

        let file = try G2WFile(path: path)
        XCTAssertEqual(file.metadata, meta)
        XCTAssertEqual(file.tensors.count, shapes.count)
        for (i, t) in file.tensors.enumerated() {
            XCTAssertEqual(t.shape, shapes[i])
            XCTAssertEqual(t.offset % 64, 0)
            XCTAssertEqual(Array(file.bytes(of: t)), payloads[i], "tensor \(i)")
            // The view points into the mapping: no copy.
            XCTAssertEqual(file.tensor(named: t.name)!.baseAddress, file.baseAddress + Int(t.offset))
        }
        try file.verify()
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
        XCTAssertEqual(size, file.tensors.last!.offset + file.tensors.last!.byteCount, "the file ends where the last blob ends")
    }

    func testEmptyFileWithNoTensors() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("e.g2w").path
        let w = try G2WWriter(path: path, metadata: G2WMetadata(), tensors: [])
        try w.finish()
        let f = try G2WFile(path: path)
        XCTAssertEqual(f.tensors.count, 0)
        XCTAssertEqual(f.fileSize, 128)
    }

    func testWriterRefusesToOverwriteAndLeavesNoTemporary() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("x.g2w").path
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        assertFormatError("already exists") { _ = try G2WWriter(path: path, metadata: .init(), tensors: []) }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "precious")
        // With overwrite, replaced atomically.
        let w = try G2WWriter(path: path, metadata: .init(), tensors: [], overwrite: true)
        try w.finish()
        XCTAssertNoThrow(try G2WFile(path: path))
    }

    func testIncompleteWriteRemovesTemporaryFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("p.g2w").path
        let w = try G2WWriter(path: path, metadata: .init(), tensors: [.init(name: "a", dtype: .f32, shape: [4])])
        try w.write([Float(1), 2])
        assertFormatError("has 8 of 16 bytes") { try w.finish() }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.temporaryPath))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testWriteToUnwritableDirectoryFails() {
        assertFormatError("create failed") {
            _ = try G2WWriter(path: "/proc/g2w-no/such.g2w", metadata: .init(), tensors: [])
        }
    }

    func testWriterRejectsBadDescriptors() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("b.g2w").path
        assertFormatError("duplicate name") {
            _ = try G2WWriter(path: path, metadata: .init(), tensors: [.init(name: "a", dtype: .f32, shape: [1]), .init(name: "a", dtype: .f32, shape: [1])])
        }
        assertFormatError("rank 1...4") { _ = try G2WWriter(path: path, metadata: .init(), tensors: [.init(name: "a", dtype: .f32, shape: [1, 1, 1, 1, 1])]) }
        assertFormatError("not 1...255 bytes") {
            var m = G2WMetadata(); m["bad key"] = .uint(1)
            _ = try G2WWriter(path: path, metadata: m, tensors: [])
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    /// f16 conversion kernels against Swift's own Float16 (IEEE, round to nearest even), both the
    /// vector path and the portable path.
    func testHalfConversionsMatchSwiftFloat16() {
        for generic in [0, 1] {
            _ = g2w_force_isa(generic == 1 ? 0 : -1)
            defer { _ = g2w_force_isa(-1) }
            let all = (0...UInt16.max).map { $0 }
            var out = [Float](repeating: 0, count: all.count)
            g2w_f16_to_f32(all, &out, all.count)
            for (h, f) in zip(all, out) {
                let expected = Float(Float16(bitPattern: h))
                if expected.isNaN { XCTAssertTrue(f.isNaN) } else { XCTAssertEqual(f.bitPattern, expected.bitPattern, "half \(h)") }
            }
            var rng = SystemRandomNumberGenerator()
            var floats: [Float] = (0..<200_000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)) }
            // Exact ties and boundaries.
            floats += [65504, 65519.99, 65520, -65520, 5.960464477539063e-08, 2.9802322387695312e-08, 2.98023259e-08, 6.103515625e-05, 0, -0, .infinity, -.infinity]
            for h in stride(from: UInt16(0), to: 0x7C00, by: 7) {
                let a = Float(Float16(bitPattern: h)), b = Float(Float16(bitPattern: h + 1))
                floats.append((a + b) / 2)  // halfway between neighbours: ties to even
            }
            var halves = [UInt16](repeating: 0, count: floats.count)
            g2w_f32_to_f16(floats, &halves, floats.count)
            for (f, h) in zip(floats, halves) {
                let expected = Float16(f)
                if expected.isNaN { XCTAssertTrue(Float16(bitPattern: h).isNaN) } else {
                    XCTAssertEqual(h, expected.bitPattern, "float \(f) generic=\(generic)")
                }
            }
        }
    }

    func testCRC32CKnownValue() {
        // The standard check value of CRC-32C.
        XCTAssertEqual(g2w_crc32c(0, Array("123456789".utf8), 9), 0xE306_9283)
        // Incremental equals one-shot.
        let data = (0..<1000).map { UInt8($0 % 251) }
        let one = g2w_crc32c(0, data, data.count)
        let half = g2w_crc32c(0, data, 500)
        XCTAssertEqual(data.withUnsafeBytes { g2w_crc32c(half, $0.baseAddress! + 500, 500) }, one)
    }
}
