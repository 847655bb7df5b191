import CG2W
import Foundation
import XCTest
@preconcurrency import G2WFormat

/// What a hostile or broken input is told (issue 17 item 12): the field, the value, the limit, and
/// names from the file escaped and cut short.
final class HostileInputMessageTests: XCTestCase {
    /// A u64 count above Int.max read as a count said "expected u64, found u64".
    func testMetadataCountOverTheLimitSaysSo() {
        XCTAssertEqual(try G2WMetadataValue.uint(12).count(), 12)
        XCTAssertThrowsError(try G2WMetadataValue.uint(.max).count()) { error in
            XCTAssertEqual("\(error)", "is 18446744073709551615, over the limit of 9223372036854775807")
        }
        XCTAssertThrowsError(try G2WMetadataValue.uint(1 << 20 + 1).count(limit: 1 << 20)) { error in
            XCTAssertEqual("\(error)", "is 1048577, over the limit of 1048576")
        }
        XCTAssertThrowsError(try G2WMetadataValue.string("12").count()) { error in
            XCTAssertEqual("\(error)", "expected u64, found string")
        }
    }

    /// A shape over 2^60 - 1 elements was "too large" or an "overflow" for the writer.
    func testWriterShapeOverTheLimitSaysSo() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("big.g2w").path
        assertFormatError("tensor #0 'a': shape [1073741824, 1073741824] has 1152921504606846976 elements, over the limit of 1152921504606846975 (2^60 - 1)") {
            _ = try G2WWriter(path: path, metadata: .init(), tensors: [.init(name: "a", dtype: .f32, shape: [1 << 30, 1 << 30])])
        }
        assertFormatError("tensor #0 'a': shape [4294967296, 4294967296] has more than 2^64 - 1 elements, over the limit of 1152921504606846975 (2^60 - 1)") {
            _ = try G2WWriter(path: path, metadata: .init(), tensors: [.init(name: "a", dtype: .f32, shape: [1 << 32, 1 << 32])])
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    private func safetensors(_ header: String, data: Int = 0, in dir: URL) throws -> String {
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
        bytes += [UInt8](repeating: 0, count: data)
        let path = dir.appendingPathComponent("t-\(UUID().uuidString).safetensors").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func safetensorsError(_ header: String, in dir: URL) throws -> String {
        let path = try safetensors(header, in: dir)
        do {
            _ = try SafetensorsFile(path: path)
            XCTFail("accepted: \(header.prefix(200))")
            return ""
        } catch let e as SafetensorsError {
            XCTAssertTrue(e.description.hasPrefix("\(path): invalid safetensors file: "), e.description)
            return String(e.description.dropFirst("\(path): invalid safetensors file: ".count))
        }
    }

    /// Tensor names, metadata keys and dtypes from a safetensors header were printed raw: ESC and
    /// U+202E reached the terminal and a 100 KB key was printed in full.
    func testSafetensorsNamesAreEscapedAndCutShort() throws {
        let dir = try makeTemporaryDirectory(self)
        let evil = "h.0\\u001b[2J\\u202e" + String(repeating: "k", count: 100_000)
        var m = try safetensorsError("{\"\(evil)\":{\"dtype\":\"F99\\u001b\",\"shape\":[1],\"data_offsets\":[0,4]}}", in: dir)
        XCTAssertEqual(m, "tensor 'h.0\\u{1b}[2J\\u{202e}" + String(repeating: "k", count: 92) + "... (100010 bytes)': unknown dtype \"F99\\u{1b}\" (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2)")
        m = try safetensorsError("{\"__metadata__\":{\"\(evil)\":1}}", in: dir)
        XCTAssertTrue(m.hasPrefix("__metadata__[\"h.0\\u{1b}[2J\\u{202e}kkk"), m)
        XCTAssertTrue(m.hasSuffix("k... (100010 bytes)\"] is a number, expected a string"), m)
        // Shape entries: which one, and what it is.
        m = try safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]}}", in: dir)
        XCTAssertEqual(m, "tensor 'w': shape entry 1 is -3, expected a non-negative integer")
        // A product past 2^64 is over the limit, said with the limit (not "overflows").
        m = try safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", in: dir)
        XCTAssertEqual(m, "tensor 'w': shape [4294967296, 4294967296] has more elements than the limit of 2^64 - 1 (18446744073709551615)")
        // A duplicate key names it, escaped.
        m = try safetensorsError("{\"a\\u001b\":{},\"a\\u001b\":{}}", in: dir)
        XCTAssertEqual(m, "header is not JSON: duplicate key \"a\\u{1b}\" at header byte 14")
    }

    /// `JSONValue.parse` is the package's one parser (G2WSupport, shared with the tokenizer files)
    /// with the converter's rules: no duplicate keys, at most 64 nested levels, no byte order mark,
    /// exact 64-bit integers, offsets inside the input.
    func testJSONValueParseRules() throws {
        XCTAssertEqual(try JSONValue.parse(Array(" {\"a\": [1, -0, 2.5e1, \"\\u00e9\\ud83d\\ude00\", true, null]} ".utf8)),
                       .object([("a", .array([.number(1, integer: 1), .number(-0.0, integer: 0), .number(25, integer: nil), .string("é😀"), .bool(true), .null]))]))
        XCTAssertEqual(try JSONValue.parse(Array("-9223372036854775808".utf8)), .number(-9_223_372_036_854_775_808, integer: .min))
        XCTAssertEqual(try JSONValue.parse(Array("9223372036854775808".utf8)), .number(9_223_372_036_854_775_808, integer: nil))
        func error(_ text: [UInt8]) -> String? {
            do { _ = try JSONValue.parse(text); return nil } catch { return (error as? JSONError)?.description ?? "not a JSONError: \(error)" }
        }
        XCTAssertEqual(error(Array("{\"k\": 1, \"k\": 2}".utf8)), "invalid JSON at byte 9: duplicate key \"k\"")
        XCTAssertEqual(error([0xEF, 0xBB, 0xBF] + Array("{}".utf8)), "invalid JSON at byte 0: unexpected byte 0xEF, expected a value")
        XCTAssertEqual(error(Array("{\"a\": \"".utf8) + [0xFF] + Array("\"}".utf8)), "invalid JSON at byte 7: invalid UTF-8")
        XCTAssertEqual(error(Array((String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).utf8)), nil)
        XCTAssertEqual(error(Array((String(repeating: "[", count: 65) + String(repeating: "]", count: 65)).utf8)),
                       "invalid JSON at byte 64: arrays and objects nested deeper than 64 levels")
        XCTAssertEqual(error(Array("{} x".utf8)), "invalid JSON at byte 3: unexpected data after the JSON value")
        XCTAssertEqual(error(Array("[1,".utf8)), "invalid JSON at byte 3: unexpected end of input, expected a value")
    }

    /// `g2w_utf8_first_invalid` (the one UTF-8 locator, behind the tokenizer's and the JSON
    /// parser's messages) against a plain scan of Unicode Table 3-7, on every short sequence at the
    /// vector block boundaries.
    func testFirstInvalidUTF8Offset() {
        func reference(_ p: [UInt8]) -> Int {
            var i = 0
            while i < p.count {
                let c = p[i]
                if c < 0x80 { i += 1; continue }
                var n = 0, lo: UInt8 = 0x80, hi: UInt8 = 0xBF
                switch c {
                case 0xC2...0xDF: n = 2
                case 0xE0: n = 3; lo = 0xA0
                case 0xE1...0xEC, 0xEE, 0xEF: n = 3
                case 0xED: n = 3; hi = 0x9F
                case 0xF0: n = 4; lo = 0x90
                case 0xF1...0xF3: n = 4
                case 0xF4: n = 4; hi = 0x8F
                default: return i
                }
                if i + n > p.count || p[i + 1] < lo || p[i + 1] > hi { return i }
                for k in 2..<n where p[i + k] & 0xC0 != 0x80 { return i }
                i += n
            }
            return p.count
        }
        var failures = 0
        for a in 0x80...0xFF {
            for b in [0x00, 0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                for offset in [0, 1, 30, 31, 62, 63] {
                    let text = [UInt8](repeating: 0x61, count: offset) + [UInt8(a), UInt8(b), 0x80, 0x80] + Array("é end".utf8)
                    let got = text.withUnsafeBufferPointer { g2w_utf8_first_invalid($0.baseAddress!, $0.count) }
                    if got != reference(text) {
                        failures += 1
                        if failures < 5 { XCTFail("\(text.map { String($0, radix: 16) }): \(got), expected \(reference(text))") }
                    }
                }
            }
        }
        let valid = Array("plain ASCII, é, 世界, 😀".utf8)
        XCTAssertEqual(valid.withUnsafeBufferPointer { g2w_utf8_first_invalid($0.baseAddress!, $0.count) }, valid.count)
    }
}
