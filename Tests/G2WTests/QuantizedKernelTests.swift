import CG2W
import Foundation
import G2W
import G2WFormat
import XCTest

/// The quantized types' kernels (q8_0, q4_0) against plain dequantize-then-Double references, on
/// odd sizes (block counts of every remainder mod 4, row ranges of every remainder mod 4, single
/// rows), at every kernel level the CPU has.
final class QuantizedKernelTests: XCTestCase {
    var rng = SeededGenerator(seed: 11)
    func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Double(rng.next() >> 11) * 0x1.0p-53 * 2 - 1) } }

    var levels: [Int32] { Array(0...g2w_force_isa(-1)) }
    let types: [G2WDType] = [.q8_0, .q4_0]

    /// Encodes `w` ([rows, cols]) as `t`: quants then scales, as in a file.
    func encode(_ w: [Float], rows: Int, cols: Int, as t: G2WDType) -> [UInt8] {
        let k = t.traits.pointee
        var blob = [UInt8](repeating: 0, count: Int(t.byteCount(elements: UInt64(w.count))!))
        blob.withUnsafeMutableBytes { b in
            let scales = (b.baseAddress! + t.scalesOffset(elements: w.count)).assumingMemoryBound(to: UInt16.self)
            k.quantize(w, w.count, b.baseAddress!, scales)
        }
        return blob
    }

    func dequantize(_ blob: [UInt8], rows: Int, cols: Int, as t: G2WDType) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * cols)
        blob.withUnsafeBytes { b in t.traits.pointee.dequantize(b.baseAddress!, rows, cols, 0, rows, &out) }
        return out
    }

    /// The activation as the decoding kernels see it: per block dx * xq (read back from the
    /// prepared buffer; its layout is dx[nb], cx[nb], then xq at a 64-byte aligned offset, q4_0's
    /// xq in groups of four blocks, low halves then high halves).
    func preparedActivation(_ x: [Float], as t: G2WDType) -> [Float] {
        let k = t.traits.pointee, cols = x.count, nb = cols / 32
        let bytes = k.prepared_bytes(cols)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { buf.deallocate() }
        k.prepare!(x, cols, buf)
        let dx = buf.assumingMemoryBound(to: Float.self)
        let xq = (buf + ((2 * nb * 4 + 63) & ~63)).assumingMemoryBound(to: Int8.self)
        let nb4 = t == .q4_0 ? nb & ~3 : 0
        return (0..<cols).map { i in
            let b = i / 32, j = i % 32
            let at = b >= nb4 ? i : (b / 4) * 128 + (j < 16 ? 0 : 64) + (b % 4) * 16 + (j & 15)
            return dx[b] * Float(xq[at])
        }
    }

    /// Dequantization is exact: d * q with d the binary16 scale (checked on hand-made blocks).
    func testDequantizeHandMadeBlocks() {
        // q8_0: one block with scale 0.5 (0x3800) and quants -127, 0, 1, ..., then a block with scale 2^-24.
        var q8 = [UInt8](repeating: 0, count: 2 * 34)
        for j in 0..<32 { q8[j] = UInt8(bitPattern: Int8(j == 0 ? -127 : j - 1)); q8[32 + j] = UInt8(bitPattern: Int8(j)) }
        q8[64] = 0x00; q8[65] = 0x38; q8[66] = 0x01; q8[67] = 0x00
        let d8 = dequantize(q8, rows: 1, cols: 64, as: .q8_0)
        XCTAssertEqual(d8[0], -63.5); XCTAssertEqual(d8[1], 0); XCTAssertEqual(d8[31], 15)
        XCTAssertEqual(d8[33], 0x1.0p-24); XCTAssertEqual(d8[63], 31 * 0x1.0p-24)
        // q4_0: byte j holds element j (low nibble) and j + 16 (high); value = d * (nibble - 8).
        var q4 = [UInt8](repeating: 0, count: 18)
        for j in 0..<16 { q4[j] = UInt8(j) | UInt8(15 - j) << 4 }
        q4[16] = 0x00; q4[17] = 0xC0  // -2.0
        let d4 = dequantize(q4, rows: 1, cols: 32, as: .q4_0)
        for j in 0..<16 {
            XCTAssertEqual(d4[j], -2 * Float(j - 8))
            XCTAssertEqual(d4[16 + j], -2 * Float(15 - j - 8))
        }
    }

    /// Quantize -> dequantize stays within half a quantization step per element (a step is d:
    /// max|x| / 127 for q8_0, |max| / 8 for q4_0), plus the binary16 rounding of the scale;
    /// q4_0's nibbles span -8...7 steps, so values of the other sign than the largest one reach
    /// 7 steps only: up to a whole step off there.
    func testRoundTripError() {
        for t in types {
            let rows = 7, cols = 96
            var w = rand(rows * cols)
            w[5] = 0; for j in 32..<64 { w[j] = 0 }  // an all-zero block
            let back = dequantize(encode(w, rows: rows, cols: cols, as: t), rows: rows, cols: cols, as: t)
            for b in 0..<(rows * cols / 32) {
                let block = w[(b * 32)..<(b * 32 + 32)]
                let amax = block.map { abs($0) }.max()!
                let step = t == .q8_0 ? amax / 127 : amax / 8
                for i in (b * 32)..<(b * 32 + 32) {
                    let clipped = t == .q4_0 && abs(w[i]) > 7.5 * step
                    XCTAssertLessThanOrEqual(abs(back[i] - w[i]), step * (clipped ? 1 : 0.5) * 1.002 + amax * 1e-3 + 1e-30, "\(t) element \(i)")
                }
            }
            XCTAssertEqual(Array(back[32..<64]), [Float](repeating: 0, count: 32), "\(t): zero block")
        }
    }

    /// matvec (decoding): against Double of the dequantized weights and the kernel's own int8
    /// activation (tight), and against the exact f32 activation (the activation rounding only).
    func testMatvecAgainstDequantizedReference() {
        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for t in types {
                for nb in [1, 2, 3, 4, 5, 6, 7, 8, 24, 25] {
                    let cols = nb * 32, rows = 37
                    let w = rand(rows * cols), bias = rand(rows), x = rand(cols)
                    let blob = encode(w, rows: rows, cols: cols, as: t)
                    let wd = dequantize(blob, rows: rows, cols: cols, as: t)
                    let xd = preparedActivation(x, as: t)
                    let k = t.traits.pointee
                    let xp = UnsafeMutableRawPointer.allocate(byteCount: k.prepared_bytes(cols), alignment: 64)
                    defer { xp.deallocate() }
                    k.prepare!(x, cols, xp)
                    for (r0, r1) in [(0, 1), (0, 4), (3, 8), (1, 10), (5, 30), (0, 37), (2, 35)] {
                        var y = [Float](repeating: .nan, count: rows)
                        blob.withUnsafeBytes { k.matvec($0.baseAddress!, rows, cols, xp, bias, &y, r0, r1) }
                        for r in 0..<rows {
                            guard r >= r0 && r < r1 else { XCTAssertTrue(y[r].isNaN, "row \(r) outside \(r0)..<\(r1) written"); continue }
                            var s = Double(bias[r]), mag = abs(Double(bias[r])), exact = Double(bias[r])
                            for c in 0..<cols {
                                s += Double(wd[r * cols + c]) * Double(xd[c]); mag += abs(Double(wd[r * cols + c]) * Double(xd[c]))
                                exact += Double(wd[r * cols + c]) * Double(x[c])
                            }
                            XCTAssertEqual(Double(y[r]), s, accuracy: 2e-6 * mag + 1e-6, "\(t) level \(level) nb \(nb) rows \(r0)..<\(r1) at \(r)")
                            // int8 activations: each term off by at most |w| dx / 2.
                            XCTAssertEqual(Double(y[r]), exact, accuracy: 0.01 * mag + 1e-5, "\(t) level \(level) nb \(nb): activation rounding")
                        }
                    }
                }
            }
        }
    }

    /// The machine's prefetch distance (isa.c's table or G2W_PREFETCH) is reported, can be set
    /// for the process (rounded to a cache line, clamped) and restored, and changes no result: the
    /// decoding kernels of every type give the same bits at the shortest and the longest distance.
    func testPrefetchDistanceIsReportedAndChangesNoResult() {
        let chosen = g2w_get_tuning()
        XCTAssertTrue((256...16384).contains(chosen.prefetch_bytes) && chosen.prefetch_bytes % 64 == 0, "\(chosen.prefetch_bytes)")
        let source = withUnsafeBytes(of: chosen.source) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        XCTAssertFalse(source.isEmpty)
        defer { g2w_set_prefetch_bytes(0) }
        g2w_set_prefetch_bytes(5000)
        XCTAssertEqual(g2w_get_tuning().prefetch_bytes, 4992)
        g2w_set_prefetch_bytes(1)
        XCTAssertEqual(g2w_get_tuning().prefetch_bytes, 256)
        g2w_set_prefetch_bytes(1 << 40)
        XCTAssertEqual(g2w_get_tuning().prefetch_bytes, 16384)
        g2w_set_prefetch_bytes(0)
        XCTAssertEqual(g2w_get_tuning().prefetch_bytes, chosen.prefetch_bytes)

        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for t in [G2WDType.f32, .f16, .q8_0, .q4_0] {
                let rows = 203, cols = 25 * 32, k = t.traits.pointee
                let w = rand(rows * cols), x = rand(cols)
                let blob = encode(w, rows: rows, cols: cols, as: t)
                let bytes = max(k.prepared_bytes(cols), cols * 4)
                let xp = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { xp.deallocate() }
                if let prepare = k.prepare { prepare(x, cols, xp) } else { xp.copyMemory(from: x, byteCount: cols * 4) }
                var results: [[Float]] = []
                for distance in [256, 16384] {
                    g2w_set_prefetch_bytes(distance)
                    var y = [Float](repeating: .nan, count: rows)
                    blob.withUnsafeBytes { k.matvec($0.baseAddress!, rows, cols, xp, nil, &y, 0, rows) }
                    results.append(y)
                }
                g2w_set_prefetch_bytes(0)
                XCTAssertFalse(results[0].contains { $0.isNaN }, "\(t) level \(level)")
                XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern), "\(t) level \(level)")
            }
        }
    }

    /// matmul (prompts): the dequantized weights in f32 kernels, so as tight as f32 itself; T
    /// around the packed kernel's 8-row tiles and 32-row threshold, rows around the 32-row panels
    /// and the dequantized groups.
    func testMatmulAgainstDequantizedReference() {
        for level in levels {
            XCTAssertEqual(g2w_force_isa(level), level)
            defer { _ = g2w_force_isa(-1) }
            for t in types {
                for (rows, cols) in [(5, 32), (33, 96), (70, 160), (130, 288)] {
                    let w = rand(rows * cols), bias = rand(rows)
                    let blob = encode(w, rows: rows, cols: cols, as: t)
                    let wd = dequantize(blob, rows: rows, cols: cols, as: t)
                    for T in [2, 5, 9, 33, 40] {
                        let x = rand(T * cols)
                        var y = [Float](repeating: .nan, count: T * rows)
                        let mid = rows / 3
                        for (r0, r1) in [(0, mid), (mid, rows)] where r0 < r1 {
                            blob.withUnsafeBytes { t.traits.pointee.matmul($0.baseAddress!, rows, cols, x, bias, &y, T, rows, r0, r1) }
                        }
                        var bad = 0
                        for i in 0..<T { for r in 0..<rows {
                            var s = Double(bias[r]), mag = abs(Double(bias[r]))
                            for c in 0..<cols { let p = Double(wd[r * cols + c]) * Double(x[i * cols + c]); s += p; mag += abs(p) }
                            if !(abs(Double(y[i * rows + r]) - s) <= 1e-6 * mag + 1e-7) { bad += 1 }
                        } }
                        XCTAssertEqual(bad, 0, "\(t) level \(level) rows \(rows) cols \(cols) T \(T)")
                    }
                }
            }
        }
    }

    /// Preparing the activation (int8 per block, roundf's rounding) gives the same bytes at every
    /// level: half-points, values that round to +-127, zeros, NaN and infinities included.
    func testPreparedActivationIsTheSameAtEveryLevel() {
        let cols = 9 * 32
        var x = rand(cols)
        // Block 1: exact half-points of the step (amax 127 -> d = 1): 0.5, 1.5, -2.5, ...
        for j in 0..<32 { x[32 + j] = (Float(j) - 16) + 0.5 }
        x[32] = 127
        // Block 2: zeros; block 3: a NaN; block 4: an infinity; block 5: tiny values.
        for j in 0..<32 { x[64 + j] = 0 }
        x[96 + 5] = .nan
        x[128 + 7] = -.infinity
        for j in 0..<32 { x[160 + j] = Float(j) * 1e-30 }
        for t in types {
            let k = t.traits.pointee
            var outputs: [[UInt8]] = []
            for level in levels {
                _ = g2w_force_isa(level)
                defer { _ = g2w_force_isa(-1) }
                var buf = [UInt8](repeating: 0xAA, count: k.prepared_bytes(cols))
                buf.withUnsafeMutableBytes { k.prepare!(x, cols, $0.baseAddress!) }
                outputs.append(buf)
            }
            for (i, o) in outputs.enumerated().dropFirst() { XCTAssertEqual(o, outputs[0], "\(t): level \(levels[i]) vs portable") }
        }
    }

    /// The same int8 products at every level give the same sums (integer dot products are exact;
    /// only the f32 sums of the blocks' scaled results may differ in rounding).
    func testLevelsAgree() {
        let rows = 50, cols = 25 * 32
        let w = rand(rows * cols), x = rand(cols)
        for t in types {
            let blob = encode(w, rows: rows, cols: cols, as: t)
            var results: [[Float]] = []
            for level in levels {
                _ = g2w_force_isa(level)
                defer { _ = g2w_force_isa(-1) }
                let k = t.traits.pointee
                let xp = UnsafeMutableRawPointer.allocate(byteCount: k.prepared_bytes(cols), alignment: 64)
                defer { xp.deallocate() }
                k.prepare!(x, cols, xp)
                var y = [Float](repeating: 0, count: rows)
                blob.withUnsafeBytes { k.matvec($0.baseAddress!, rows, cols, xp, nil, &y, 0, rows) }
                results.append(y)
            }
            for r in results.dropFirst() {
                for i in 0..<rows { XCTAssertEqual(r[i], results[0][i], accuracy: 1e-5 * max(1, abs(results[0][i])), "\(t) row \(i)") }
            }
        }
    }
}

/// Our quantizer against ggml's own (gguf.quants, `tools/make_quant_fixtures.py`): the bytes of
/// awkward blocks (outliers, signed zeros, ties, rounding half-points, subnormals, binary16 ties
/// of the scale) bit for bit, and dequantization equal to gguf's.
final class QuantizerParityTests: XCTestCase {
    func testBitIdenticalToGGUF() throws {
        let dir = Fixtures.path("quant")
        let manifest = try Fixtures.json(dir + "/manifest.json")
        let fixtures = manifest["fixtures"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(fixtures.count, 3)
        for f in fixtures {
            let name = f["name"] as! String, shape = f["shape"] as! [Int]
            let platformDependent = (f["platform_dependent"] as? Bool) ?? false
            let x = try Fixtures.floats("\(dir)/\(name).f32")
            XCTAssertEqual(x.count, shape.reduce(1, *))
            for t in [G2WDType.q8_0, .q4_0] {
                let expected = Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).\(t)")))
                var got = [UInt8](repeating: 0, count: expected.count)
                XCTAssertEqual(UInt64(expected.count), t.byteCount(elements: UInt64(x.count)))
                got.withUnsafeMutableBytes { b in
                    t.traits.pointee.quantize(x, x.count, b.baseAddress!, (b.baseAddress! + t.scalesOffset(elements: x.count)).assumingMemoryBound(to: UInt16.self))
                }
                let differing = zip(got, expected).enumerated().filter { $1.0 != $1.1 }.map(\.offset)
                XCTAssertEqual(differing, [], "\(name) \(t): bytes differ from gguf's at \(differing.prefix(8))\(platformDependent ? " (platform-dependent fixture)" : "")")
                // Dequantized values equal gguf's, bit for bit (signed zeros included).
                let deq = try Fixtures.floats("\(dir)/\(name).\(t).dequant.f32")
                let cols = shape.last!, rows = x.count / cols
                var ours = [Float](repeating: .nan, count: x.count)
                expected.withUnsafeBytes { t.traits.pointee.dequantize($0.baseAddress!, rows, cols, 0, rows, &ours) }
                XCTAssertEqual(ours.map(\.bitPattern), deq.map(\.bitPattern), "\(name) \(t): dequantized values")
            }
        }
    }
}
