import CG2W
import Foundation
import G2WFormat
import XCTest

/// Format 1.1's quantized element types: byte lengths per type, version rules, and the checks at
/// open (row length a multiple of the block, every scale finite, unknown type codes).
final class QuantizedFormatTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try makeTemporaryDirectory(self) }

    func values(_ n: Int) -> [Float] { (0..<n).map { Float(($0 * 7919) % 101) / 50 - 1 } }

    /// Writes tensors "q" (q8_0 [3, 64]), "r" (q4_0 [2, 96]) and "v" (f32 [5]) through the encoder.
    func writeFile(_ name: String = "q.g2w") throws -> String {
        let path = dir.appendingPathComponent(name).path
        let w = try G2WWriter(path: path, metadata: ["k": .string("v")], tensors: [
            .init(name: "q", dtype: .q8_0, shape: [3, 64]), .init(name: "r", dtype: .q4_0, shape: [2, 96]), .init(name: "v", dtype: .f32, shape: [5]),
        ])
        for (n, t, shape) in [("q", G2WDType.q8_0, [3, 64]), ("r", .q4_0, [2, 96]), ("v", .f32, [5])] {
            var e = G2WTensorEncoder(writer: w, name: n, dtype: t, shape: shape)
            let v = values(shape.reduce(1, *))
            try v.withUnsafeBufferPointer { try e.append($0) }
            try e.finish()
        }
        try w.finish()
        return path
    }

    func testTypesTable() {
        XCTAssertEqual(G2WDType.q8_0.rawValue, 3); XCTAssertEqual(G2WDType.q4_0.rawValue, 4)
        XCTAssertEqual(G2WDType.q8_0.blockBytes, 34); XCTAssertEqual(G2WDType.q4_0.blockBytes, 18)
        XCTAssertEqual(G2WDType.q8_0.bitsPerElement, 8.5); XCTAssertEqual(G2WDType.q4_0.bitsPerElement, 4.5)
        XCTAssertEqual(G2WDType.q8_0.byteCount(elements: 64), 68)
        XCTAssertNil(G2WDType.q4_0.byteCount(elements: 48))
        XCTAssertEqual(G2WDType(name: "Q8_0"), .q8_0); XCTAssertNil(G2WDType(name: "q5_0"))
        XCTAssertNil(g2w_type(2)); XCTAssertNil(g2w_type(5))
    }

    func testRoundTripAndVersion() throws {
        let f = try G2WFile(path: try writeFile())
        XCTAssertEqual(f.header.versionMinor, 1, "a file with quantized tensors is 1.1")
        let q = f.tensor(named: "q")!, r = f.tensor(named: "r")!
        XCTAssertEqual(q.info.byteCount, 6 * 34); XCTAssertEqual(r.info.byteCount, 6 * 18)
        try f.verify()
        let v = values(192), back = q.floats()
        for i in 0..<192 { XCTAssertEqual(back[i], v[i], accuracy: 1.0 / 127 * 0.51 + 1e-3) }
        let v4 = values(192), back4 = r.floats()
        for i in 0..<192 { XCTAssertEqual(back4[i], v4[i], accuracy: 1.0 / 8 * 1.01 + 1e-3) }  // up to one step where clipped at +7
        // f32/f16-only files stay 1.0, so 1.0 readers open them.
        let p = dir.appendingPathComponent("plain.g2w").path
        let w = try G2WWriter(path: p, metadata: [:], tensors: [.init(name: "a", dtype: .f16, shape: [2])])
        try w.write([UInt16(0), UInt16(0)]); try w.finish()
        XCTAssertEqual(try G2WFile(path: p).header.versionMinor, 0)
    }

    /// Edits a tensor-table field of the first tensor ("q") and reseals the header.
    func edited(_ edit: (inout [UInt8], _ entry: Int) -> Void) throws -> String {
        var b = Array(try Data(contentsOf: URL(fileURLWithPath: try writeFile("base-\(UUID().uuidString).g2w"))))
        let le64 = { (at: Int) in (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
        let entry = Int(le64(48))  // tensor_table_offset
        edit(&b, entry)
        let dataOffset = Int(le64(72))
        var region = Array(b[0..<dataOffset])
        for i in 96..<100 { region[i] = 0 }
        let crc = g2w_crc32c(0, region, region.count)
        for i in 0..<4 { b[96 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        let p = dir.appendingPathComponent("edited-\(UUID().uuidString).g2w").path
        try Data(b).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testRowLengthNotAMultipleOfTheBlock() throws {
        // shape [3, 64] -> [6, 32] is fine (same bytes); [2, 96] keeps 192 elements but 96 % 32 == 0,
        // so use [4, 48]: 192 elements, 48 columns.
        let p = try edited { b, e in b[e + 8] = 4; b[e + 16] = 48 }
        assertFormatError("multiple of 32, is 48") { _ = try G2WFile(path: p) }
    }

    func testUnknownTypeCode() throws {
        let p = try edited { b, e in b[e + 2] = 5 }
        assertFormatError("unknown dtype code 5") { _ = try G2WFile(path: p) }
        let p2 = try edited { b, e in b[e + 2] = 2 }
        assertFormatError("unknown dtype code 2") { _ = try G2WFile(path: p2) }
    }

    func testQuantizedTypeInA10File() throws {
        let p = try edited { b, _ in b[10] = 0 }  // version_minor
        assertFormatError("q8_0 needs format version 1.1") { _ = try G2WFile(path: p) }
    }

    func testWrongByteLength() throws {
        let p = try edited { b, e in b[e + 56 - 8] = 6 * 32 }  // byte_length of "q": 192 instead of 204
        assertFormatError("byte_length 192 does not match") { _ = try G2WFile(path: p) }
    }

    /// A NaN or infinite scale is rejected at open, naming the tensor and the block.
    func testNonFiniteScales() throws {
        for (bits, word) in [(UInt16(0x7E00), "NaN"), (0x7C00, "infinite"), (0xFC00, "infinite")] {
            var b = Array(try Data(contentsOf: URL(fileURLWithPath: try writeFile("s-\(UUID().uuidString).g2w"))))
            let f = try G2WFile(path: try writeFile("s2-\(UUID().uuidString).g2w"))
            let q = f.info(named: "r")!
            let at = Int(q.offset) + G2WDType.q4_0.scalesOffset(elements: 192) + 2 * 4  // block 4's scale
            b[at] = UInt8(bits & 0xFF); b[at + 1] = UInt8(bits >> 8)
            let p = dir.appendingPathComponent("nan-\(UUID().uuidString).g2w").path
            try Data(b).write(to: URL(fileURLWithPath: p))
            assertFormatError("tensor #1 'r': the scale of block 4 is \(word)") { _ = try G2WFile(path: p) }
        }
    }

    /// The encoder refuses values a binary16 scale cannot hold, naming the block.
    func testEncoderRejectsUnrepresentableValues() throws {
        let path = dir.appendingPathComponent("big.g2w").path
        let w = try G2WWriter(path: path, metadata: [:], tensors: [.init(name: "big", dtype: .q4_0, shape: [2, 32])])
        var e = G2WTensorEncoder(writer: w, name: "big", dtype: .q4_0, shape: [2, 32])
        var v = [Float](repeating: 0.5, count: 64)
        v[40] = 1e6  // d = 1e6 / 8 > 65504
        assertFormatError("block 1 (elements 32...63)") { try v.withUnsafeBufferPointer { try e.append($0) } }
        for bad in [Float.nan, .infinity, -.infinity] {
            for t in [G2WDType.q4_0, .q8_0] {
                var e2 = G2WTensorEncoder(writer: w, name: "big", dtype: t, shape: [2, 32])
                v[40] = bad
                assertFormatError("element 40 is \(bad) (block 1)") { try v.withUnsafeBufferPointer { try e2.append($0) } }
            }
        }
        w.cancel()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    /// Writers refuse a quantized shape whose rows are not whole blocks.
    func testWriterRejectsPartialBlocks() {
        let path = dir.appendingPathComponent("w.g2w").path
        assertFormatError("multiple of 32, is 40") { _ = try G2WWriter(path: path, metadata: [:], tensors: [.init(name: "x", dtype: .q8_0, shape: [4, 40])]) }
    }
}
