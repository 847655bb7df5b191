import Foundation
import G2W
import G2WFormat
import G2WTokenizer

/// The endpoints.
enum Route: Equatable {
    case health, models, model(String), completions, chatCompletions, tokenize, detokenize
}

extension G2WServer {
    /// The route of a request, after the checks that need no body: path (404), method (405),
    /// API key (401), server state (503 while loading or stopping).
    func route(_ r: HTTPRequest) throws -> Route {
        let p = r.path
        let found: (Route, [String])?
        switch p {
        case "/health", "/v1/health": found = (.health, ["GET"])
        case "/v1/models", "/models": found = (.models, ["GET"])
        case "/v1/completions": found = (.completions, ["POST"])
        case "/v1/chat/completions", "/chat/completions": found = (.chatCompletions, ["POST"])
        case "/tokenize": found = (.tokenize, ["POST"])
        case "/detokenize": found = (.detokenize, ["POST"])
        default:
            if p.hasPrefix("/v1/models/"), p.count > 11 {
                found = (.model(String(p.dropFirst(11)).removingPercentEncoding ?? String(p.dropFirst(11))), ["GET"])
            } else {
                found = nil
            }
        }
        if found?.0 != .health, let key = configuration.apiKey, !Self.authorized(r, key: key) {
            throw HTTPError(status: 401, message: "invalid or missing API key: send 'Authorization: Bearer KEY'", code: "invalid_api_key",
                            close: false, extraHeaders: [("WWW-Authenticate", "Bearer")])
        }
        guard let (route, methods) = found else {
            throw HTTPError(status: 404, message: "no endpoint \(r.method) \(p.prefix(200)) (endpoints: POST /v1/completions, GET /v1/models, GET /health, POST /tokenize, POST /detokenize)",
                            code: "not_found", close: false)
        }
        guard methods.contains(r.method) else {
            throw HTTPError(status: 405, message: "\(p) does not accept \(r.method.prefix(32)) (use \(methods.joined(separator: ", ")))", code: "method_not_allowed",
                            close: false, extraHeaders: [("Allow", methods.joined(separator: ", "))])
        }
        if route != .health {
            switch currentPhase {
            case .loading:
                throw HTTPError(status: 503, message: "the model is loading", code: "loading", close: false, extraHeaders: [("Retry-After", "1")])
            case .stopping:
                throw HTTPError(status: 503, message: "the server is shutting down", code: "shutting_down", close: true)
            case .ready: break
            }
        }
        return route
    }

    /// `Authorization: Bearer KEY`, compared in constant time (the time depends on the length of
    /// the server's key only, never on where the first difference is).
    static func authorized(_ r: HTTPRequest, key: String) -> Bool {
        guard let value = r.header("authorization") else { return false }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return constantTimeEqual(Array(parts[1].trimmingCharacters(in: .whitespaces).utf8), Array(key.utf8))
    }

    package static func constantTimeEqual(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        var diff: UInt8 = given.count == expected.count ? 0 : 1
        for i in 0..<expected.count { diff |= expected[i] ^ (i < given.count ? given[i] : 0) }
        return diff == 0
    }

    func handle(_ route: Route, _ r: HTTPRequest, _ w: ResponseWriter) throws {
        switch route {
        case .health: try health(w)
        case .models: try w.send(status: 200, body: JSONOut.object([("object", .string("list")), ("data", .array([modelObject]))]).bytes)
        case let .model(id):
            guard id == modelID else {
                throw HTTPError(status: 404, message: "the model '\(id.prefix(200))' does not exist (this server serves '\(modelID)')", code: "model_not_found", close: false)
            }
            try w.send(status: 200, body: modelObject.bytes)
        case .completions: try completions(r, w)
        case .chatCompletions:
            // OpenAI's answer for a model that is not a chat model.
            throw HTTPError(status: 404, message: "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use v1/completions? (GPT-2 continues text; g2w-server applies no chat template)",
                            code: "not_chat_model", close: false)
        case .tokenize: try tokenize(r, w)
        case .detokenize: try detokenize(r, w)
        }
    }

    func health(_ w: ResponseWriter) throws {
        switch currentPhase {
        case .loading:
            try w.send(status: 503, body: JSONOut.object([("status", .string("loading")),
                                                          ("error", .object([("message", .string("the model is loading")), ("type", .string("server_error")), ("param", .null), ("code", .string("loading"))]))]).bytes,
                       headers: [("Retry-After", "1")])
        case .stopping:
            try w.send(status: 503, body: JSONOut.object([("status", .string("stopping"))]).bytes)
        case .ready:
            let s = slotStatus
            try w.send(status: 200, body: JSONOut.object([("status", .string("ok")), ("slots_idle", .int(s.idle)), ("slots_processing", .int(s.processing)),
                                                          ("requests_queued", .int(s.queued))]).bytes)
        }
    }

    var modelObject: JSONOut {
        let c = model.configuration
        return .object([
            ("id", .string(modelID)), ("object", .string("model")), ("created", .int(created)), ("owned_by", .string("g2w")),
            ("meta", .object([("n_ctx_train", .int(c.contextLength)), ("n_ctx", .int(contextSize)), ("n_vocab", .int(c.vocabularySize)),
                              ("n_embd", .int(c.embeddingSize)), ("n_layer", .int(c.layerCount)), ("n_head", .int(c.headCount)),
                              ("dtype", .string(model.weightTypesDescription)), ("n_parallel", .int(configuration.parallel))])),
        ])
    }

    func parseBody(_ r: HTTPRequest) throws -> JSONValue {
        guard !r.body.isEmpty else { throw HTTPError(status: 400, message: "the request has no body (a JSON object is expected)", code: "invalid_json", close: false) }
        do {
            return try JSONValue.parse(r.body)
        } catch let e as JSONError {
            throw HTTPError(status: 400, message: "the body is not valid JSON: \(e.description)", code: "invalid_json", close: false)
        }
    }

    func requireTokenizer() throws -> GPT2Tokenizer {
        guard let t = try model.tokenizer else {
            throw HTTPError(status: 400, message: "this model file embeds no tokenizer: send token ids", code: "no_tokenizer", close: false)
        }
        return t
    }

    // MARK: /tokenize, /detokenize (llama-server's shapes)

    func tokenize(_ r: HTTPRequest, _ w: ResponseWriter) throws {
        let f = try Fields(parseBody(r))
        guard let content = try f.string("content") else { throw FieldError(param: "content", message: "'content' (a string) is required") }
        let withPieces = try f.bool("with_pieces") ?? false
        _ = try f.bool("add_special")  // GPT-2 adds no special token
        let special = try f.bool("parse_special") ?? false
        let t = try requireTokenizer()
        let ids = t.encode(content, allowSpecialTokens: special)
        let tokens: [JSONOut] = try ids.map { id in
            guard withPieces else { return .int(id) }
            let bytes = try t.tokenBytes(id)
            let piece: JSONOut = String(validating: bytes, as: UTF8.self).map { .string($0) } ?? .array(bytes.map { .int(Int($0)) })
            return .object([("id", .int(id)), ("piece", piece)])
        }
        try w.send(status: 200, body: JSONOut.object([("tokens", .array(tokens))]).bytes)
    }

    func detokenize(_ r: HTTPRequest, _ w: ResponseWriter) throws {
        let f = try Fields(parseBody(r))
        guard let v = f.value("tokens") else { throw FieldError(param: "tokens", message: "'tokens' (an array of token ids) is required") }
        guard case let .array(items) = v else { throw Fields.typeError("tokens", "an array of token ids", v) }
        let t = try requireTokenizer()
        let ids = try Fields.tokenIDs(items, "tokens", vocabulary: t.vocabularySize)
        try w.send(status: 200, body: JSONOut.object([("content", .string(try t.decodeText(ids)))]).bytes)
    }

    // MARK: /v1/completions

    /// A token as OpenAI's logprobs show it: its text, or `bytes:\xNN...` when it is not whole UTF-8.
    func tokenText(_ id: Int, _ t: GPT2Tokenizer?) -> String {
        guard let t, let bytes = try? t.tokenBytes(id) else { return "<\(id)>" }
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        return "bytes:" + bytes.map { String(format: "\\x%02x", $0) }.joined()
    }

    /// OpenAI's completions `logprobs` object for `entries`, text offsets from `offset` (in
    /// Unicode scalars, as Python's len); returns the offset after them.
    func logprobsObject(_ entries: [LogprobEntry], offset: inout Int, _ t: GPT2Tokenizer?) -> JSONOut {
        var tokens: [JSONOut] = [], lps: [JSONOut] = [], tops: [JSONOut] = [], offsets: [JSONOut] = []
        for e in entries {
            let s = tokenText(e.token, t)
            tokens.append(.string(s))
            lps.append(e.logProbability.map { .double(max($0, -9999)) } ?? .null)
            if e.logProbability == nil {
                tops.append(.null)
            } else {
                var seen = Set<String>()
                var pairs: [(String, JSONOut)] = []
                for alt in e.top {
                    let k = tokenText(alt.token, t)
                    if seen.insert(k).inserted { pairs.append((k, .double(max(alt.logProbability, -9999)))) }
                }
                tops.append(.object(pairs))
            }
            offsets.append(.int(offset))
            offset += s.unicodeScalars.count
        }
        return .object([("tokens", .array(tokens)), ("token_logprobs", .array(lps)), ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))])
    }

    static func finishReason(_ r: StopReason) -> String {
        switch r {
        case .maxTokens: return "length"
        case .endOfText, .stopString, .cancelled: return "stop"
        }
    }

    /// What the connection keeps of one choice.
    struct Choice {
        var promptText = ""
        var promptTokens = 0
        var text = ""
        var promptEntries: [LogprobEntry]?
        var entries: [LogprobEntry] = []
        var finish: StopReason?
        var completionTokens = 0
        /// Text offset of the next generated token (logprobs).
        var offset = 0
    }

    func completions(_ r: HTTPRequest, _ w: ResponseWriter) throws {
        let body = try parseBody(r)
        let c = model.configuration
        let req = try CompletionRequest(body, vocabulary: c.vocabularySize)
        let tokenizer = try model.tokenizer
        // Prompts to token ids, and their text (for echo and text offsets).
        var prompts: [(ids: [Int], text: String)] = []
        for (i, p) in req.prompts.enumerated() {
            let param = req.prompts.count > 1 ? "prompt[\(i)]" : "prompt"
            switch p {
            case let .text(s):
                guard let t = tokenizer else { throw FieldError(param: "prompt", message: "this model file embeds no tokenizer: send 'prompt' as token ids") }
                prompts.append((t.encode(s), s))
            case let .tokens(ids):
                if let t = tokenizer, ids.contains(where: { $0 >= t.vocabularySize }) {
                    throw FieldError(param: param, message: "'\(param)' has ids the tokenizer cannot show (>= \(t.vocabularySize))")
                }
                prompts.append((ids, (try? tokenizer?.decodeText(ids)) ?? ""))
            }
            let n = max(prompts.last!.ids.count, 1)
            if n >= contextSize {
                throw FieldError(param: param, message: "This model's maximum context length is \(contextSize) tokens, however your prompt has \(n) tokens, leaving no room for a completion.",
                                 code: "context_length_exceeded")
            }
        }
        let job = CompletionJob(id: newID("cmpl-"))
        var tasks: [GenerationTask] = []
        let baseSeed = req.seed ?? UInt64.random(in: 0...UInt64.max)
        var choices: [Choice] = []
        for (pi, p) in prompts.enumerated() {
            let inputCount = max(p.ids.count, 1)
            for k in 0..<req.n {
                var o = GenerationOptions()
                // max_tokens is capped by the context (prompt + completion <= the context size).
                o.maxTokens = min(req.maxTokens ?? CompletionRequest.defaultMaxTokens, contextSize - inputCount)
                o.sampling = req.sampling
                o.sampling.seed = baseSeed &+ UInt64(k)
                o.stopAtEndOfText = !req.ignoreEOS
                o.stopStrings = req.stop
                o.logProbabilities = req.logprobs
                let state: GenerationState
                do { state = try GenerationState(model: model, prompt: p.ids, options: o) } catch {
                    throw FieldError(param: "prompt", message: "\(error)")
                }
                let index = pi * req.n + k
                tasks.append(GenerationTask(job: job, choice: index, state: state, promptLogprobs: req.echo ? req.logprobs : nil))
                var ch = Choice()
                ch.promptText = p.text
                ch.promptTokens = inputCount
                ch.offset = req.echo ? 0 : p.text.unicodeScalars.count
                choices.append(ch)
            }
        }
        do {
            try engine.submit(tasks)
        } catch EngineRefusal.busy {
            let s = slotStatus
            throw HTTPError(status: 503, message: "all \(configuration.parallel) slots are busy and \(s.queued) requests are queued (the queue holds \(configuration.queueSize)); retry later",
                            code: "server_busy", close: false, extraHeaders: [("Retry-After", "1")])
        } catch {
            throw HTTPError(status: 503, message: "the server is shutting down", code: "shutting_down", close: true)
        }
        let promptTokens = prompts.reduce(0) { $0 + max($1.ids.count, 1) }
        if req.stream {
            try streamCompletion(job, req, &choices, promptTokens: promptTokens, tokenizer, w)
        } else {
            try wholeCompletion(job, req, &choices, promptTokens: promptTokens, tokenizer, w)
        }
    }

    /// Waits for the job's events, watching for a client that goes away (the job is cancelled:
    /// its slots are freed at the engine's next step).
    func events(_ job: CompletionJob, _ w: ResponseWriter, _ body: ([EngineEvent]) throws -> Bool) throws {
        var lastCheck = now()
        while true {
            let evs = job.take(timeout: 0.05)
            let t = now()
            if evs.isEmpty || t - lastCheck > 50_000_000 {
                lastCheck = t
                if w.connection.peerHasGone() { job.cancel(); throw SocketError.closed }
            }
            do {
                if try !body(evs) { return }
            } catch {
                job.cancel()
                throw error
            }
        }
    }

    func usageObject(_ promptTokens: Int, _ choices: [Choice]) -> JSONOut {
        let completion = choices.reduce(0) { $0 + $1.completionTokens }
        return .object([("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completion)), ("total_tokens", .int(promptTokens + completion))])
    }

    func wholeCompletion(_ job: CompletionJob, _ req: CompletionRequest, _ choices: inout [Choice], promptTokens: Int, _ t: GPT2Tokenizer?, _ w: ResponseWriter) throws {
        var remaining = choices.count
        var failure: String?
        var chs = choices
        try events(job, w) { evs in
            for e in evs {
                switch e {
                case let .started(i, prompt): chs[i].promptEntries = prompt
                case let .piece(i, p):
                    chs[i].text += p.text
                    if p.token >= 0, let lp = p.logProbability { chs[i].entries.append(LogprobEntry(token: p.token, logProbability: lp, top: p.topLogProbabilities)) }
                case let .finished(i, reason, n):
                    chs[i].finish = reason
                    chs[i].completionTokens = n
                    remaining -= 1
                case let .failed(m): failure = m
                }
            }
            return remaining > 0 && failure == nil
        }
        choices = chs
        if let failure {
            job.cancel()
            throw HTTPError(status: 500, message: failure, code: "server_error", close: false)
        }
        let items: [JSONOut] = choices.enumerated().map { i, ch in
            var logprobs = JSONOut.null
            if req.logprobs != nil {
                var offset = ch.offset
                logprobs = logprobsObject((req.echo ? ch.promptEntries ?? [] : []) + ch.entries, offset: &offset, t)
            }
            return .object([("text", .string((req.echo ? ch.promptText : "") + ch.text)), ("index", .int(i)), ("logprobs", logprobs),
                            ("finish_reason", .string(Self.finishReason(ch.finish ?? .maxTokens)))])
        }
        let out = JSONOut.object([("id", .string(job.id)), ("object", .string("text_completion")), ("created", .int(job.created)), ("model", .string(modelID)),
                                  ("choices", .array(items)), ("usage", usageObject(promptTokens, choices))])
        try w.send(status: 200, body: out.bytes)
    }

    func streamCompletion(_ job: CompletionJob, _ req: CompletionRequest, _ choices: inout [Choice], promptTokens: Int, _ t: GPT2Tokenizer?, _ w: ResponseWriter) throws {
        try w.startStream(status: 200, contentType: "text/event-stream")
        func send(_ j: JSONOut) throws { try w.sendChunk(Array(("data: " + j.text + "\n\n").utf8)) }
        func chunk(_ i: Int, _ text: String, _ logprobs: JSONOut, _ finish: String?) -> JSONOut {
            .object([("id", .string(job.id)), ("object", .string("text_completion")), ("created", .int(job.created)), ("model", .string(modelID)),
                     ("choices", .array([.object([("text", .string(text)), ("index", .int(i)), ("logprobs", logprobs), ("finish_reason", finish.map { .string($0) } ?? .null)])]))])
        }
        var remaining = choices.count
        var chs = choices
        var failure: String?
        try events(job, w) { evs in
            var out: [UInt8] = []
            for e in evs {
                var j: JSONOut?
                switch e {
                case let .started(i, prompt):
                    guard req.echo else { break }
                    var lp = JSONOut.null
                    if req.logprobs != nil { lp = logprobsObject(prompt ?? [], offset: &chs[i].offset, t) }
                    if !chs[i].promptText.isEmpty || req.logprobs != nil { j = chunk(i, chs[i].promptText, lp, nil) }
                case let .piece(i, p):
                    var lp = JSONOut.null
                    if req.logprobs != nil, p.token >= 0, let l = p.logProbability {
                        lp = logprobsObject([LogprobEntry(token: p.token, logProbability: l, top: p.topLogProbabilities)], offset: &chs[i].offset, t)
                    }
                    if !p.text.isEmpty || lp.isNotNull { j = chunk(i, p.text, lp, nil) }
                case let .finished(i, reason, n):
                    chs[i].completionTokens = n
                    remaining -= 1
                    j = chunk(i, "", .null, Self.finishReason(reason))
                case let .failed(m):
                    failure = m
                    j = .object([("error", .object([("message", .string(m)), ("type", .string("server_error")), ("param", .null), ("code", .string("server_error"))]))])
                }
                if let j { out += Array(("data: " + j.text + "\n\n").utf8) }
            }
            try w.sendChunk(out)
            return remaining > 0 && failure == nil
        }
        choices = chs
        if failure == nil {
            if req.includeUsage {
                try send(.object([("id", .string(job.id)), ("object", .string("text_completion")), ("created", .int(job.created)), ("model", .string(modelID)),
                                  ("choices", .array([])), ("usage", usageObject(promptTokens, choices))]))
            }
        } else {
            job.cancel()
        }
        try w.sendChunk(Array("data: [DONE]\n\n".utf8))
        try w.endStream()
    }
}

extension JSONOut {
    var isNotNull: Bool { if case .null = self { return false } else { return true } }
}
