import CG2W
import Foundation

/// The worker threads that computations run on (the calling thread is one of them). Sessions,
/// `logits(for:)` and trainers share one per thread count (``shared(threads:)``) unless given
/// their own; computations started from several threads take turns section by section.
public final class ComputeContext: @unchecked Sendable {
    /// Threads that take part in a computation, the caller included.
    public let threads: Int
    /// The C pool; nil when it could not be created (then everything runs on the calling thread).
    /// Valid while this object lives: hold the context across calls that use it (or use
    /// ``withPool(_:)``), since Swift may release an object right after its last use.
    public let pool: OpaquePointer?

    /// Calls `body` with the pool, keeping the context alive until it returns.
    public func withPool<R>(_ body: (OpaquePointer?) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(pool) }
    }

    /// A context with a pool of its own (not the shared one). ``threads`` reports the threads
    /// that actually started: 1, the caller's, if no pool could be made.
    /// - Parameter threads: worker threads (default: the number of active processors).
    public init(threads: Int? = nil) {
        pool = g2w_pool_create(max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount))
        self.threads = pool.map { g2w_pool_threads($0) } ?? 1
    }

    deinit { g2w_pool_destroy(pool) }

    private static let sharedLock = NSLock()
    nonisolated(unsafe) private static var sharedContexts: [Int: ComputeContext] = [:]

    /// The process's context for `threads` workers (default: the number of active processors),
    /// created on first use and kept for the life of the process. Idle workers spin for a few
    /// milliseconds after a computation, then sleep: an unused context costs no CPU.
    public static func shared(threads: Int? = nil) -> ComputeContext {
        let n = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        sharedLock.lock()
        defer { sharedLock.unlock() }
        if let c = sharedContexts[n] { return c }
        let c = ComputeContext(threads: n)
        sharedContexts[n] = c
        return c
    }
}
