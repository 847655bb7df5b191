import CG2W
import XCTest

/// `g2w_utf8_valid` (AVX2 on this CPU, 32 bytes per step) and its portable version against the
/// standard library's validator, on every short sequence and on random text with corruptions,
/// placed at every offset around the 32-byte block boundaries.
final class UTF8ValidationTests: XCTestCase {
    func expected(_ bytes: [UInt8]) -> Bool { String(validating: bytes, as: UTF8.self) != nil }

    func check(_ bytes: [UInt8], _ what: @autoclosure () -> String, failures: inout Int) {
        let want = expected(bytes)
        let fast = bytes.withUnsafeBufferPointer { g2w_utf8_valid($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) == 1 }
        let portable = bytes.withUnsafeBufferPointer { g2w_utf8_valid_portable($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) == 1 }
        if fast != want || portable != want {
            failures += 1
            if failures <= 5 { XCTFail("\(what()): \(bytes.map { String($0, radix: 16) }) expected \(want), fast \(fast), portable \(portable)") }
        }
    }

    /// Every 1- and 2-byte sequence, and every 3-byte one whose first byte is not ASCII, alone and
    /// at offsets 29-33 and 61-64 (across the first and second block boundaries) in ASCII text.
    func testEveryShortSequenceAtTheBlockBoundaries() {
        var failures = 0
        check([], "empty", failures: &failures)
        for a in 0...255 {
            check([UInt8(a)], "1 byte", failures: &failures)
            for b in 0...255 {
                let s: [UInt8] = [UInt8(a), UInt8(b)]
                check(s, "2 bytes", failures: &failures)
                for offset in [30, 31, 62, 63] {
                    let text = [UInt8](repeating: 0x61, count: offset) + s + [0x62]
                    check(text, "2 bytes at \(offset)", failures: &failures)
                    check([UInt8](repeating: 0x61, count: offset) + s, "2 bytes at the end, \(offset)", failures: &failures)
                }
            }
        }
        for a in 0x80...0xFF {
            for b in stride(from: 0, through: 255, by: 1) {
                for c in [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xE0, 0xF0, 0xFF] {
                    let s: [UInt8] = [UInt8(a), UInt8(b), UInt8(c)]
                    check(s, "3 bytes", failures: &failures)
                    check([UInt8](repeating: 0x61, count: 30) + s, "3 bytes at 30", failures: &failures)
                }
            }
        }
        XCTAssertEqual(failures, 0)
    }

    /// Random text of 1- to 4-byte characters (lengths around the block size), valid and then
    /// with one byte changed, one byte removed or cut short.
    func testRandomTextAndCorruptions() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        func scalar() -> Unicode.Scalar {
            while true {
                let v: UInt32
                switch next() % 4 {
                case 0: v = UInt32(next() % 0x80)
                case 1: v = 0x80 + UInt32(next() % (0x800 - 0x80))
                case 2: v = 0x800 + UInt32(next() % (0x10000 - 0x800))
                default: v = 0x10000 + UInt32(next() % (0x110000 - 0x10000))
                }
                if let s = Unicode.Scalar(v) { return s }
            }
        }
        var failures = 0, invalid = 0
        for round in 0..<20_000 {
            let count = Int(next() % 70)
            var bytes: [UInt8] = []
            for _ in 0..<count { bytes.append(contentsOf: Array(String(Character(scalar())).utf8)) }
            check(bytes, "valid, round \(round)", failures: &failures)
            guard !bytes.isEmpty else { continue }
            var changed = bytes
            let at = Int(next() % UInt64(bytes.count))
            changed[at] = UInt8(truncatingIfNeeded: next())
            check(changed, "changed byte, round \(round)", failures: &failures)
            var removed = bytes
            removed.remove(at: at)
            check(removed, "removed byte, round \(round)", failures: &failures)
            let cut = Array(bytes[..<at])
            check(cut, "cut, round \(round)", failures: &failures)
            if !expected(changed) { invalid += 1 }
        }
        XCTAssertEqual(failures, 0)
        XCTAssertGreaterThan(invalid, 5_000)  // the corruptions do produce invalid text
    }
}
