import CG2W
import Dispatch
import Foundation
import G2W
import G2WFormat

/// A token of a prompt or a completion with its log-probability and the most likely
/// alternatives at its position (OpenAI's `logprobs`). The first prompt token has none.
struct LogprobEntry {
    var token: Int
    var logProbability: Double?
    var top: [TokenLogProbability]
}

/// What the engine tells a request's connection, in order per choice.
enum EngineEvent {
    /// The prompt has been run (the first generated token follows); with the prompt's
    /// log-probabilities when they were asked for (`echo` with `logprobs`).
    case started(choice: Int, prompt: [LogprobEntry]?)
    /// A generated token (or, with token -1, text released at the end).
    case piece(choice: Int, GeneratedPiece)
    /// The choice is complete.
    case finished(choice: Int, reason: StopReason, completionTokens: Int)
    /// The request failed (all its choices end).
    case failed(String)
}

/// One sequence to generate: a choice of a completion request.
final class GenerationTask {
    let job: CompletionJob
    let choice: Int
    var state: GenerationState
    /// Input tokens (`state.input`) not yet run through the model.
    var pending: [Int]
    /// Tokens of the input already run.
    var processed = 0
    /// Report the prompt's log-probabilities (echo + logprobs): every prompt row's logits are computed.
    let promptLogprobs: Int?
    var promptEntries: [LogprobEntry] = []
    var admitted: UInt64 = 0

    init(job: CompletionJob, choice: Int, state: GenerationState, promptLogprobs: Int?) {
        self.job = job
        self.choice = choice
        self.state = state
        pending = state.input
        self.promptLogprobs = promptLogprobs
    }
}

/// A completion request in flight: its tasks (one per choice) and the events the engine posts
/// for the connection that waits on them.
final class CompletionJob {
    let id: String
    let created: Int
    private let condition = NSCondition()
    private var events: [EngineEvent] = []
    private var cancelledFlag = false

    init(id: String) {
        self.id = id
        created = Int(Date().timeIntervalSince1970)
    }

    func post(_ event: EngineEvent) {
        condition.lock()
        events.append(event)
        condition.signal()
        condition.unlock()
    }

    /// The events posted since the last call, waiting up to `timeout` seconds for one.
    func take(timeout: Double) -> [EngineEvent] {
        condition.lock()
        defer { condition.unlock() }
        if events.isEmpty { _ = condition.wait(until: Date(timeIntervalSinceNow: timeout)) }
        let out = events
        events.removeAll()
        return out
    }

    /// The client has gone: the engine drops the job's sequences at its next step.
    func cancel() {
        condition.lock()
        cancelledFlag = true
        condition.unlock()
    }

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelledFlag
    }
}

/// Why a request was not taken.
enum EngineRefusal: Error {
    /// All slots busy and the queue full: try again later (503 + Retry-After).
    case busy
    /// The server is shutting down.
    case stopping
}

/// Continuous batching: up to `parallel` sequences (slots), each with its own KV cache and position
/// (``GPT2BatchSequence``), advance together. Every step is one forward pass (``GPT2Session/forward(_:tokens:logitRowsFrom:)``)
/// for the next token of every decoding sequence plus a chunk of the prompts being read, so the
/// weights are streamed once per step for all of them. New sequences take a free slot at the
/// next step; the others wait in a bounded queue (FIFO).
final class Engine: @unchecked Sendable {
    let model: GPT2Model
    let parallel: Int
    let queueCapacity: Int
    /// Prompt tokens run per step while other sequences are decoding (their time between tokens
    /// grows with it); when nobody decodes, up to ``idlePromptChunk``.
    let promptChunk: Int
    let idlePromptChunk = 512
    private let sequences: [GPT2BatchSequence]
    /// Lends the scratch buffers, the pool and the products to every step.
    let worker: GPT2Session
    private var active: [GenerationTask?]
    private var queue: [GenerationTask] = []
    private let lock = NSCondition()
    private var stopping = false
    private var finished = false
    private var thread: Thread?

    /// Counters for /health and the logs.
    private(set) var steps = 0
    private(set) var generatedTokens = 0
    private(set) var promptTokens = 0

    init(model: GPT2Model, parallel: Int, queueCapacity: Int, promptChunk: Int, compute: ComputeContext, kvType: G2WDType) throws {
        self.model = model
        self.parallel = parallel
        self.queueCapacity = queueCapacity
        self.promptChunk = max(1, promptChunk)
        sequences = try (0..<parallel).map { _ in try GPT2BatchSequence(model: model, kvType: kvType) }
        worker = try GPT2Session(model: model, compute: compute, kvType: kvType)
        active = Array(repeating: nil, count: parallel)
    }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "g2w-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Takes a request's tasks (all of them, or none).
    func submit(_ tasks: [GenerationTask]) throws {
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { throw EngineRefusal.stopping }
        let free = active.filter { $0 == nil }.count
        guard queue.count + tasks.count <= queueCapacity + free else { throw EngineRefusal.busy }
        queue += tasks
        lock.signal()
    }

    /// Slots in use, slots idle, sequences waiting.
    var status: (processing: Int, idle: Int, queued: Int) {
        lock.lock()
        defer { lock.unlock() }
        let busy = active.filter { $0 != nil }.count
        return (busy, parallel - busy, queue.count)
    }

    /// Refuses new requests; the engine finishes those it has (active and queued), then stops.
    func beginStop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        lock.unlock()
    }

    /// Waits until the engine has finished everything after ``beginStop()``.
    func waitStopped() {
        lock.lock()
        while !finished && thread != nil { lock.wait() }
        lock.unlock()
    }

    // MARK: The loop

    private func run() {
        while true {
            lock.lock()
            // Sequences whose client has gone free their slot now (within one step).
            for i in active.indices {
                if let t = active[i], t.job.isCancelled { release(i) }
            }
            queue.removeAll { $0.job.isCancelled }
            for i in active.indices where active[i] == nil && !queue.isEmpty {
                let t = queue.removeFirst()
                sequences[i].reset()
                t.admitted = now()
                active[i] = t
            }
            if active.allSatisfy({ $0 == nil }) {
                if stopping && queue.isEmpty {
                    finished = true
                    lock.broadcast()
                    lock.unlock()
                    return
                }
                lock.wait()
                lock.unlock()
                continue
            }
            let batch = active.enumerated().compactMap { i, t in t.map { (i, $0) } }
            lock.unlock()
            step(batch)
        }
    }

    /// Frees slot `i` (lock held).
    private func release(_ i: Int) {
        active[i] = nil
        sequences[i].reset()
    }

    private func done(_ slot: Int) {
        lock.lock()
        release(slot)
        lock.unlock()
    }

    /// One forward pass: the next token of every decoding sequence, then prompt chunks.
    private func step(_ batch: [(slot: Int, task: GenerationTask)]) {
        var entries: [(slot: Int, task: GenerationTask, tokens: [Int], first: Int, prompt: Bool)] = []
        // A sequence with nothing to compute (max_tokens 0 without prompt log-probabilities) ends now.
        for (slot, t) in batch where t.pending.count == t.state.input.count && t.state.stopReason != nil && t.promptLogprobs == nil {
            t.job.post(.started(choice: t.choice, prompt: nil))
            t.job.post(.finished(choice: t.choice, reason: t.state.stopReason!, completionTokens: 0))
            done(slot)
        }
        let live = batch.filter { $0.task.pending.count < $0.task.state.input.count || $0.task.state.stopReason == nil || $0.task.promptLogprobs != nil }
        for (slot, t) in live where t.pending.isEmpty {
            if let next = t.state.nextInput { entries.append((slot, t, [next], 0, false)) }
        }
        var budget = entries.isEmpty ? idlePromptChunk : promptChunk
        for (slot, t) in live.sorted(by: { $0.task.admitted < $1.task.admitted }) where !t.pending.isEmpty && budget > 0 {
            let n = min(budget, t.pending.count)
            let last = n == t.pending.count
            let first = t.promptLogprobs != nil ? 0 : (last && t.state.stopReason == nil ? n - 1 : n)
            entries.append((slot, t, Array(t.pending.prefix(n)), first, true))
            budget -= n
        }
        guard !entries.isEmpty else { return }

        let logits: [Float]
        do {
            logits = try worker.forward(entries.map { sequences[$0.slot] }, tokens: entries.map(\.tokens), logitRowsFrom: entries.map(\.first))
        } catch {
            for e in entries {
                e.task.job.post(.failed("the forward pass failed: \(error)"))
                e.task.job.cancel()
                done(e.slot)
            }
            return
        }
        steps += 1
        let V = model.configuration.vocabularySize
        var row = 0
        for e in entries {
            let t = e.task
            let wanted = e.tokens.count - e.first
            defer { row += wanted }
            func rowLogits(_ k: Int) -> [Float] { Array(logits[((row + k) * V)..<((row + k + 1) * V)]) }
            var generationLogits: [Float]?
            if e.prompt {
                let start = t.processed
                t.pending.removeFirst(e.tokens.count)
                t.processed += e.tokens.count
                promptTokens += e.tokens.count
                if let n = t.promptLogprobs {
                    if start == 0 { t.promptEntries.append(LogprobEntry(token: t.state.input[0], logProbability: nil, top: [])) }
                    for k in 0..<wanted {
                        let position = start + e.first + k  // this row predicts the token after it
                        if position + 1 < t.state.input.count {
                            let l = rowLogits(k)
                            let next = t.state.input[position + 1]
                            let (lp, top) = GenerationState.logProbabilities(l, chosen: next, top: n)
                            t.promptEntries.append(LogprobEntry(token: next, logProbability: lp, top: top))
                        }
                    }
                }
                guard t.pending.isEmpty else { continue }
                t.job.post(.started(choice: t.choice, prompt: t.promptLogprobs != nil ? t.promptEntries : nil))
                if t.state.stopReason != nil {  // nothing to generate (max_tokens 0)
                    t.job.post(.finished(choice: t.choice, reason: t.state.stopReason!, completionTokens: 0))
                    done(e.slot)
                    continue
                }
                generationLogits = rowLogits(wanted - 1)
            } else {
                generationLogits = rowLogits(0)
            }
            do {
                if let piece = try t.state.accept(logits: generationLogits!) {
                    if piece.token >= 0 { generatedTokens += 1 }
                    t.job.post(.piece(choice: t.choice, piece))
                }
            } catch {
                t.job.post(.failed("generation failed: \(error)"))
                t.job.cancel()
                done(e.slot)
                continue
            }
            if let reason = t.state.stopReason {
                t.job.post(.finished(choice: t.choice, reason: reason, completionTokens: t.state.tokens.count))
                done(e.slot)
            }
        }
    }

}
