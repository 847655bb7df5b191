#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import G2W
import G2WFormat

/// How a ``G2WServer`` runs.
public struct ServerConfiguration: Sendable {
    /// The `.g2w` model: the only file the server opens.
    public var modelPath: String
    /// Address to bind; loopback by default (`0.0.0.0` or `::` to serve the network).
    public var host = "127.0.0.1"
    /// TCP port; 0 picks a free one (see ``G2WServer/port``).
    public var port = 8080
    /// Sequences decoded together (slots).
    public var parallel = 4
    /// Worker threads of the forward pass (default: all cores).
    public var threads: Int?
    /// When set, every endpoint but `/health` requires `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// Context per sequence (prompt + completion), at most the model's n_ctx (default n_ctx).
    public var contextSize: Int?
    /// Sequences that may wait for a slot; beyond, requests are answered 503 with Retry-After.
    public var queueSize = 64
    /// Prompt tokens run per step while other sequences decode.
    public var promptChunk = 64
    /// Element type of the KV caches (f32 or f16).
    public var kvType: G2WDType = .f32
    /// Name of the model in the API (default: the file name without `.g2w`).
    public var alias: String?
    /// Simultaneous connections; more are answered 503 at once.
    public var maxConnections = 256
    public var limits = HTTPLimits()
    /// Where log lines go (default: none).
    public var log: (@Sendable (String) -> Void)?

    public init(modelPath: String) { self.modelPath = modelPath }
}

/// An error starting the server. Messages name settings by what they are (and the
/// ``ServerConfiguration`` property), never by a command-line flag.
public enum ServerError: Error, CustomStringConvertible {
    /// The address cannot be resolved or listened on.
    case bind(String)
    /// A setting of ``ServerConfiguration`` is out of range.
    case configuration(String)
    /// ``ServerConfiguration/contextSize`` (`requested`) is outside 1...`modelContext`, the
    /// model's n_ctx.
    case contextSize(requested: Int, modelContext: Int)
    /// The model cannot be opened or its tokenizer read (the message names the file once).
    case model(String)

    /// The message.
    public var description: String {
        switch self {
        case let .bind(s), let .configuration(s), let .model(s): return s
        case let .contextSize(s, n): return "the context size (contextSize) must be in 1...\(n) (the model's context), is \(s)"
        }
    }
}

/// g2w-server: an OpenAI-compatible HTTP server for one `.g2w` model with continuous batching.
///
/// ```swift
/// var config = ServerConfiguration(modelPath: "gpt2.g2w")
/// config.port = 0
/// let server = G2WServer(configuration: config)
/// try server.start()             // listening on server.port, model loaded
/// ...
/// server.stop()                  // stops accepting, finishes in-flight requests
/// ```
public final class G2WServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// The port listened on (after ``start()``).
    public private(set) var port = 0

    enum Phase { case loading, ready, stopping }
    private let lock = NSCondition()
    private var phase = Phase.loading
    private var listener: Listener?
    private var acceptThread: Thread?
    private var acceptDone = false
    /// Open connections and whether each is idle (between requests).
    private var connections: [ObjectIdentifier: (Connection, idle: Bool)] = [:]
    var model: GPT2Model!
    var engine: Engine!
    var contextSize = 0
    var threads = 1
    var modelID = ""
    var created = Int(Date().timeIntervalSince1970)
    private var nextID: UInt64 = 0

    public init(configuration: ServerConfiguration) {
        self.configuration = configuration
    }

    func log(_ s: String) { configuration.log?(s) }

    // MARK: Life cycle

    /// Binds, starts accepting (requests get 503 "loading" meanwhile), opens the model, warms it
    /// up and starts the engine. Returns when the server is ready.
    public func start() throws {
        let c = configuration
        guard c.parallel >= 1 && c.parallel <= 256 else { throw ServerError.configuration("the number of sequences decoded together (parallel) must be in 1...256, is \(c.parallel)") }
        guard c.queueSize >= 0 else { throw ServerError.configuration("the queue size must be >= 0") }
        guard c.kvType == .f32 || c.kvType == .f16 else { throw ServerError.configuration("the KV cache type must be f32 or f16") }
        let l = try Listener(host: c.host, port: c.port)
        listener = l
        port = l.port
        let t = Thread { [self] in acceptLoop() }
        t.name = "g2w-accept"
        acceptThread = t
        t.start()
        do {
            try load()
        } catch {
            stop()
            throw error
        }
        lock.lock()
        phase = .ready
        lock.unlock()
        log("listening on http://\(c.host.contains(":") ? "[\(c.host)]" : c.host):\(port) (\(c.parallel) slots, context \(contextSize), \(threads) threads)")
    }

    private func load() throws {
        let c = configuration
        let m: GPT2Model
        // The file's own errors may already start with its path (open failed): name it once.
        func failure(_ error: Error) -> ServerError {
            let text = "\(error)"
            return .model(text.hasPrefix(c.modelPath) ? text : "\(c.modelPath): \(text)")
        }
        do { m = try GPT2Model(path: c.modelPath) } catch { throw failure(error) }
        let n = m.configuration.contextLength
        if let s = c.contextSize, s < 1 || s > n {
            throw ServerError.contextSize(requested: s, modelContext: n)
        }
        // A malformed embedded tokenizer is an error now, not at the first request.
        do { _ = try m.tokenizer } catch { throw failure(error) }
        contextSize = c.contextSize ?? n
        let name = (c.modelPath as NSString).lastPathComponent
        modelID = c.alias ?? (name.hasSuffix(".g2w") ? String(name.dropLast(4)) : name)
        if let attributes = try? FileManager.default.attributesOfItem(atPath: c.modelPath), let d = attributes[.modificationDate] as? Date {
            created = Int(d.timeIntervalSince1970)
        }
        model = m
        let compute = ComputeContext(threads: c.threads)
        threads = compute.threads
        engine = try Engine(model: m, parallel: c.parallel, queueCapacity: c.queueSize, promptChunk: c.promptChunk, compute: compute, kvType: c.kvType)
        // Warm-up: one token through the model maps every weight page before the first request.
        _ = try engine.worker.append([0])
        engine.worker.reset()
        engine.start()
    }

    /// Graceful stop: no new connections or requests (503), idle keep-alive connections closed,
    /// requests in flight (streams included) finished; returns when all connections are closed.
    public func stop() {
        lock.lock()
        phase = .stopping
        lock.unlock()
        // Stop accepting.
        lock.lock()
        while acceptThread != nil && !acceptDone { _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05)) }
        lock.unlock()
        engine?.beginStop()
        // Idle connections: wake and close them; busy ones close after their response.
        lock.lock()
        for (conn, idle) in connections.values where idle { shutdown(conn.fd, Int32(SHUT_RDWR)) }
        while !connections.isEmpty {
            _ = lock.wait(until: Date(timeIntervalSinceNow: 0.05))
            for (conn, idle) in connections.values where idle { shutdown(conn.fd, Int32(SHUT_RDWR)) }
        }
        lock.unlock()
        engine?.waitStopped()
    }

    var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return phase == .stopping
    }

    var currentPhase: Phase {
        lock.lock()
        defer { lock.unlock() }
        return phase
    }

    /// Open connections (for tests and /health).
    public var connectionCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return connections.count
    }

    /// Slots in use, slots idle, sequences waiting.
    public var slotStatus: (processing: Int, idle: Int, queued: Int) { engine?.status ?? (0, configuration.parallel, 0) }

    private func acceptLoop() {
        guard let l = listener else { return }
        while !isStopping {
            guard let (fd, peer) = l.accept(timeout: 0.05) else { continue }
            let conn = Connection(fd: fd, peer: peer, sendTimeout: configuration.limits.sendTimeout)
            lock.lock()
            let full = connections.count >= configuration.maxConnections
            if !full { connections[ObjectIdentifier(conn)] = (conn, true) }
            lock.unlock()
            if full {
                let w = ResponseWriter(connection: conn, minorVersion: 1, keepAlive: false)
                try? w.send(status: 503, body: Self.errorBody(503, "too many connections (\(configuration.maxConnections)); try again", code: "server_busy"),
                            headers: [("Retry-After", "1")])
                conn.close()
                continue
            }
            let t = Thread { [self] in serve(conn) }
            t.name = "g2w-connection"
            t.stackSize = 1 << 20
            t.start()
        }
        l.close()
        lock.lock()
        acceptDone = true
        lock.broadcast()
        lock.unlock()
    }

    private func setIdle(_ conn: Connection, _ idle: Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        connections[ObjectIdentifier(conn)]?.idle = idle
        return phase != .stopping
    }

    // MARK: Connections

    private func serve(_ conn: Connection) {
        defer {
            conn.close()
            lock.lock()
            connections[ObjectIdentifier(conn)] = nil
            lock.broadcast()
            lock.unlock()
        }
        let reader = HTTPRequestReader(connection: conn, limits: configuration.limits)
        while true {
            guard setIdle(conn, true) else { return }
            let head: (HTTPRequest, HTTPRequestReader.BodyFraming)?
            do {
                head = try reader.readHead()
            } catch let e as HTTPError {
                fail(conn, e, minorVersion: 1)
                return
            } catch {
                return
            }
            guard let (parsed, framing) = head else { return }
            var request = parsed
            let open = setIdle(conn, false)
            let writer = ResponseWriter(connection: conn, minorVersion: request.minorVersion, keepAlive: request.keepAlive && open)
            let hasBody: Bool
            if case .none = framing { hasBody = false } else { hasBody = true }
            do {
                // Routing and authentication before the body is read: a refused request's body
                // is never buffered (the connection is closed instead).
                let route = try self.route(request)
                if let expect = request.header("expect") {
                    guard expect.lowercased() == "100-continue" else {
                        throw HTTPError(status: 417, message: "unsupported Expect: \(expect)", code: "expectation_failed")
                    }
                    if request.minorVersion >= 1 && hasBody { try conn.write("HTTP/1.1 100 Continue\r\n\r\n") }
                }
                request.body = try reader.readBody(framing)
                try handle(route, request, writer)
            } catch let e as HTTPError {
                if writer.started { return }
                if e.close || hasBody && request.body.isEmpty { writer.keepAlive = false }
                do {
                    try writer.send(status: e.status, body: Self.errorBody(e.status, e.message, code: e.code, param: nil), headers: e.extraHeaders)
                } catch { return }
                if !writer.keepAlive { conn.lingeringClose(); return }
            } catch let e as FieldError {
                if writer.started { return }
                do {
                    try writer.send(status: 400, body: Self.errorBody(400, e.message, code: e.code, param: e.param.isEmpty ? nil : e.param))
                } catch { return }
            } catch {
                // The socket failed (peer gone, send timeout): nothing more can be said.
                return
            }
            if !writer.keepAlive { return }
        }
    }

    /// Answers a request that could not be read, then closes.
    private func fail(_ conn: Connection, _ e: HTTPError, minorVersion: Int) {
        let w = ResponseWriter(connection: conn, minorVersion: minorVersion, keepAlive: false)
        try? w.send(status: e.status, body: Self.errorBody(e.status, e.message, code: e.code), headers: e.extraHeaders)
        conn.lingeringClose()
    }

    /// OpenAI's error object.
    static func errorBody(_ status: Int, _ message: String, code: String, param: String? = nil) -> [UInt8] {
        let type: String
        switch status {
        case 401: type = "authentication_error"
        case 404: type = "invalid_request_error"
        case 500...599: type = status == 501 ? "not_supported_error" : "server_error"
        default: type = "invalid_request_error"
        }
        return JSONOut.object([("error", .object([
            ("message", .string(message)), ("type", .string(type)), ("param", param.map { .string($0) } ?? .null), ("code", .string(code)),
        ]))]).bytes
    }

    func newID(_ prefix: String) -> String {
        lock.lock()
        nextID += 1
        let n = nextID
        lock.unlock()
        return prefix + String(format: "%08x%06x", UInt32(truncatingIfNeeded: created ^ Int(port)), n)
    }
}
