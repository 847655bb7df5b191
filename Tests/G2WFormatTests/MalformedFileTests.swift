import CG2W
import Foundation
import XCTest
import G2WFormat

/// Every way a file can be broken is rejected with a specific message, never a crash.
final class MalformedFileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try makeTemporaryDirectory(self) }

    /// A valid file with metadata and three tensors; returns its bytes.
    func validFile() throws -> [UInt8] {
        let path = dir.appendingPathComponent("valid-\(UUID().uuidString).g2w").path
        var m = G2WMetadata()
        m["g2w.architecture"] = .string("test")
        m["words"] = .stringArray(["a", "bc"])
        let w = try G2WWriter(path: path, metadata: m, tensors: [
            .init(name: "a", dtype: .f32, shape: [3]),
            .init(name: "b", dtype: .f16, shape: [2, 5]),
            .init(name: "c", dtype: .f32, shape: [4, 4]),
        ])
        try w.write((0..<3).map { Float($0) })
        try w.write((0..<10).map { UInt16($0) })
        try w.write((0..<16).map { Float($0) * 0.5 })
        try w.finish()
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Opens `bytes` from a file and from memory (`G2WFile(bytes:)`): both must give the same
    /// error, or the same file, byte for byte.
    func open(_ bytes: [UInt8]) throws -> G2WFile {
        let path = dir.appendingPathComponent("m-\(UUID().uuidString).g2w").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let disk = Result { try G2WFile(path: path) }, memory = Result { try G2WFile(bytes: bytes, name: path) }
        switch (disk, memory) {
        case let (.success(d), .success(m)):
            XCTAssertEqual(d.tensors.map(\.name), m.tensors.map(\.name))
            XCTAssertEqual(d.metadata, m.metadata)
            XCTAssertEqual(d.fileSize, m.fileSize)
            XCTAssertEqual(memcmp(d.baseAddress, m.baseAddress, Int(d.fileSize)), 0)
        case let (.failure(d), .failure(m)):
            XCTAssertEqual("\(d)", "\(m)", "file and memory give different errors")
        default:
            XCTFail("file: \(disk), memory: \(memory)")
        }
        return try disk.get()
    }

    func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
    func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
    func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
    func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { b[at] = UInt8(v & 0xFF); b[at + 1] = UInt8(v >> 8) }

    /// Recomputes the header CRC so a deliberate edit is tested by its own rule, not by the CRC.
    func reseal(_ b: inout [UInt8]) {
        let dataOffset = Int(u64(b, 72))
        var region = Array(b[0..<min(dataOffset, b.count)])
        put32(&region, 96, 0)
        put32(&b, 96, g2w_crc32c(0, region, region.count))
    }

    func expect(_ fragment: String, _ edit: (inout [UInt8]) -> Void, reseal doReseal: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        var b = try validFile()
        edit(&b)
        if doReseal { reseal(&b) }
        assertFormatError(fragment, file: file, line: line) { _ = try open(b) }
    }

    /// `string[]` values: each element's length and UTF-8 are checked, including an element cut
    /// inside a multi-byte character whose bytes are valid UTF-8 only when joined to the next one.
    func testStringArrayElementsAreChecked() throws {
        let path = dir.appendingPathComponent("words.g2w").path
        let w = try G2WWriter(path: path, metadata: ["words": .stringArray(["Ġa", "b"])], tensors: [.init(name: "t", dtype: .f32, shape: [1])])
        try w.write([Float(1)])
        try w.finish()
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(try open(good).metadata["words"]?.stringArrayValue.map(Array.init), ["Ġa", "b"])
        // count 2, [3]"Ġa", [1]"b"
        let value: [UInt8] = [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xC4, 0xA0, 0x61, 1, 0, 0, 0, 0x62]
        let at = try XCTUnwrap((0...(good.count - value.count)).first { Array(good[$0..<($0 + value.count)]) == value })
        func expectValue(_ fragment: String, _ edited: [UInt8], line: UInt = #line) {
            var b = good
            b.replaceSubrange(at..<(at + value.count), with: edited)
            reseal(&b)
            assertFormatError(fragment, line: line) { _ = try open(b) }
        }
        // [1]"\xC4", [3]"\xA0ab": the bytes still join to "Ġab", but element 1 starts inside a character.
        expectValue("element 1 at byte", [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xC4, 3, 0, 0, 0, 0xA0, 0x61, 0x62])
        expectValue("not valid UTF-8", [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xC4, 3, 0, 0, 0, 0xA0, 0x61, 0x62])
        expectValue("not valid UTF-8", [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xC4, 0xA0, 0x61, 1, 0, 0, 0, 0xFF])
        expectValue("element 1: 2 bytes run past the value", [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xC4, 0xA0, 0x61, 2, 0, 0, 0, 0x62])
        expectValue("bytes left after 1 strings", [1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xC4, 0xA0, 0x61, 1, 0, 0, 0, 0x62])
        expectValue("cannot fit", [9, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xC4, 0xA0, 0x61, 1, 0, 0, 0, 0x62])
    }

    func testValidFileOpens() throws {
        let f = try open(try validFile())
        XCTAssertEqual(f.tensors.map(\.name), ["a", "b", "c"])
        try f.verify()
    }

    func testBadMagic() throws {
        try expect("not a .g2w file", { $0[1] = 0x48 }, reseal: false)
        assertFormatError("not a .g2w file") { _ = try open(Array("{\"json\": true} and more bytes than a header needs".utf8)) }
    }

    func testUnknownMajorVersionRejectedNewerMinorAccepted() throws {
        try expect("unsupported .g2w version 2.0") { put16(&$0, 8, 2) }
        var b = try validFile()
        put16(&b, 10, 7)
        reseal(&b)
        XCTAssertEqual(try open(b).header.versionMinor, 7)
    }

    func testWrongByteOrder() throws {
        try expect("wrong byte order") { b in b.swapAt(12, 15); b.swapAt(13, 14) }
    }

    func testHeaderFieldsChecked() throws {
        try expect("alignment") { put32(&$0, 16, 32) }
        try expect("header_size") { put32(&$0, 20, 100) }
        try expect("trailing data") { $0 += [0, 0, 0] }
        try expect("metadata_offset") { put64(&$0, 24, 136) }
        try expect("tensor_table_offset") { put64(&$0, 32, self.u64($0, 32) + 1) }
        try expect("data_offset") { put64(&$0, 72, self.u64($0, 72) + 64) }
        try expect("data_size") { put64(&$0, 80, 1) }
    }

    func testAbsurdCountsAndLengths() throws {
        try expect("tensor_count is 1099511627776, over the limit") { put64(&$0, 64, 1 << 40) }
        try expect("metadata_count is 4294967296, over the limit") { put64(&$0, 40, 1 << 32) }
        // A key length past the section.
        try expect("needs 65535 bytes") { put16(&$0, 128, 0xFFFF) }
        // A value length past the section (first entry: 2 + 16 key bytes + 2 type).
        try expect("value_length") { put64(&$0, 128 + 2 + 16 + 2, UInt64.max) }
        // Metadata count larger than the entries present.
        try expect("needs 2 bytes") { put64(&$0, 40, 3) }
        // Tensor count larger than the entries present.
        try expect("tensor table") { put64(&$0, 64, 4) }
    }

    /// Offsets of the table entries: header says where the table is; entries are 56 + name bytes.
    func entryOffsets(_ b: [UInt8]) -> [Int] {
        var at = Int(u64(b, 48))
        var out: [Int] = []
        for _ in 0..<Int(u64(b, 64)) {
            out.append(at)
            at += 56 + Int(b[at]) + Int(b[at + 1]) << 8
        }
        return out
    }

    func testTensorTableRules() throws {
        let e = entryOffsets(try validFile())
        try expect("unknown dtype code 9") { $0[e[1] + 2] = 9 }
        try expect("rank 5") { $0[e[0] + 3] = 5 }
        try expect("rank 0") { $0[e[0] + 3] = 0 }
        try expect("dimension 0 is 0") { put64(&$0, e[0] + 8, 0) }
        try expect("beyond rank") { put64(&$0, e[0] + 16, 3) }
        try expect("does not match shape") { put64(&$0, e[0] + 8, 4) }                 // shape/byte-length mismatch
        // Element counts over the format's limit (2^60 - 1) are said to be so, with the limit,
        // whether or not the product fits 64 bits (issue 17 item 12: both were "overflows").
        try expect("shape 4611686018427387904x4611686018427387904 has more elements than the format's limit of 1152921504606846975 (2^60 - 1)") {
            put64(&$0, e[2] + 8, 1 << 62); put64(&$0, e[2] + 16, 1 << 62)
        }
        try expect("shape 1073741824x1073741824 has more elements than the format's limit of 1152921504606846975 (2^60 - 1)") {
            put64(&$0, e[2] + 8, 1 << 30); put64(&$0, e[2] + 16, 1 << 30)
        }
        try expect("not a multiple of 64") { put64(&$0, e[1] + 40, self.u64($0, e[1] + 40) + 8) }
        try expect("overlaps the previous blob") { put64(&$0, e[1] + 40, self.u64($0, e[0] + 40)) }
        try expect("leaves a hole") { put64(&$0, e[1] + 40, self.u64($0, e[1] + 40) + 64) }
        try expect("duplicate name 'a'") { $0[e[1] + 56] = UInt8(ascii: "a") }
        try expect("name_length at byte") { put16(&$0, e[0], 0) }
        try expect("not valid UTF-8") { $0[e[0] + 56] = 0xFF }
        // Out of bounds: the last blob claims more bytes than the file has.
        try expect("truncated") { b in
            put64(&b, e[2] + 8, 400)  // 400 x 4 elements x 4 bytes = 6400
            put64(&b, e[2] + 48, 6400)
        }
    }

    func testEveryPrefixIsRejected() throws {
        let b = try validFile()
        for n in 0..<b.count {
            do {
                _ = try open(Array(b[0..<n]))
                XCTFail("prefix of \(n) bytes accepted")
            } catch let e as G2WFormatError {
                let d = e.description
                XCTAssertTrue(d.contains("truncated") || d.contains("not a .g2w file"), "prefix \(n): \(d)")
            }
        }
    }

    func testEverySingleByteCorruptionOfTheHeaderRegionIsRejected() throws {
        let b = try validFile()
        let dataOffset = Int(u64(b, 72))
        for i in 0..<dataOffset {
            var c = b
            c[i] ^= 0x5A
            XCTAssertThrowsError(try open(c), "corruption at byte \(i) accepted")
        }
    }

    func testFlippedBlobByteIsCaughtByVerify() throws {
        var b = try validFile()
        let e = entryOffsets(b)
        let blobB = Int(u64(b, e[1] + 40))
        b[blobB + 3] ^= 1
        let f = try open(b)  // opening does not read blobs
        assertFormatError("tensor 'b' (blob at byte \(blobB)) is corrupt") { try f.verify() }
        // Non-zero padding between blobs is caught too.
        var p = try validFile()
        let endA = Int(u64(p, e[0] + 40)) + 12
        p[endA + 1] = 7
        assertFormatError("padding: non-zero byte at offset \(endA + 1)") { try self.open(p).verify() }
    }

    func testNotARegularFile() {
        assertFormatError("not a regular file") { _ = try G2WFile(path: "/tmp") }
        assertFormatError("open failed: No such file or directory") { _ = try G2WFile(path: "/nonexistent/model.g2w") }
    }
}
