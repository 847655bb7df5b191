import CG2W
import Foundation
import XCTest

/// The worker pool behind the forward pass's parallel sections (Sources/CG2W/pool.c).
final class PoolTests: XCTestCase {
    /// Per job: how many times it ran and which worker ran it.
    final class Record {
        var runs: [Int]
        var workers: [Int]
        init(_ n: Int) { runs = Array(repeating: 0, count: n); workers = Array(repeating: -1, count: n) }
    }

    func run(_ pool: OpaquePointer, _ record: Record, jobs: Int) {
        // Each job writes only its own slots, so the threads never write the same element.
        record.runs.withUnsafeMutableBufferPointer { runs in
            record.workers.withUnsafeMutableBufferPointer { workers in
                var slots = (runs.baseAddress!, workers.baseAddress!)
                withUnsafeMutablePointer(to: &slots) { context in
                    g2w_pool_run(pool, jobs, { context, job, worker in
                        let s = context!.assumingMemoryBound(to: (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>).self).pointee
                        s.0[job] += 1
                        s.1[job] = worker
                    }, context)
                }
            }
        }
    }

    func testEveryJobRunsExactlyOnceOnAValidWorker() throws {
        for threads in [1, 2, 3, 5, 16] {  // more threads than CPUs: workers sleep instead of spinning
            let pool = try XCTUnwrap(g2w_pool_create(threads))
            defer { g2w_pool_destroy(pool) }
            XCTAssertEqual(g2w_pool_threads(pool), threads)
            for jobs in [0, 1, 2, 3, 7, 64, 1000, 5000] {
                let record = Record(jobs)
                run(pool, record, jobs: jobs)
                XCTAssertEqual(record.runs, Array(repeating: 1, count: jobs), "threads \(threads), jobs \(jobs)")
                XCTAssertTrue(record.workers.allSatisfy { (0..<threads).contains($0) }, "threads \(threads), jobs \(jobs)")
            }
        }
    }

    func testRunsAfterTheWorkersWentToSleep() throws {
        let pool = try XCTUnwrap(g2w_pool_create(2))
        defer { g2w_pool_destroy(pool) }
        for _ in 0..<3 {
            usleep(10_000)  // longer than the workers spin (3 ms): they wait on the condition variable
            let record = Record(100)
            run(pool, record, jobs: 100)
            XCTAssertEqual(record.runs, Array(repeating: 1, count: 100))
        }
    }

    /// A pool destroyed at once, before its threads have started (it used to hang in join).
    func testCreateAndDestroyAtOnce() throws {
        for _ in 0..<200 {
            let pool = try XCTUnwrap(g2w_pool_create(4))
            g2w_pool_destroy(pool)
        }
        for _ in 0..<50 {
            let pool = try XCTUnwrap(g2w_pool_create(3))
            let record = Record(5)
            run(pool, record, jobs: 5)
            g2w_pool_destroy(pool)
            XCTAssertEqual(record.runs, Array(repeating: 1, count: 5))
        }
    }
}
