// Why the forward pass has its own worker pool (Sources/CG2W/pool.c): times
// DispatchQueue.concurrentPerform(iterations: 2) over sections of busy work of a given length, with
// a short serial gap between them, as decoding runs them (~60 sections of 30-300 us per token).
// Ideal: piece + gap; fully serial: 2 x piece + gap. Dev-time only.
//
//   swiftc -O tools/dispatch_latency.swift -o /tmp/dispatch_latency && /tmp/dispatch_latency
import Dispatch

func spin(_ ns: UInt64) { let s = DispatchTime.now().uptimeNanoseconds; while DispatchTime.now().uptimeNanoseconds - s < ns {} }

for (piece, gap) in [(100_000, 0), (100_000, 2_000), (300_000, 2_000), (50_000, 5_000)] as [(UInt64, UInt64)] {
    let n = 1000
    let t0 = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<n {
        DispatchQueue.concurrentPerform(iterations: 2) { _ in spin(piece) }
        if gap > 0 { spin(gap) }
    }
    let per = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(n) / 1000
    print("section \(piece / 1000) us, gap \(gap / 1000) us: \(Int(per)) us per step (ideal \((piece + gap) / 1000), serial \((2 * piece + gap) / 1000))")
}
