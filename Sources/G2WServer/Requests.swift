import Foundation
import G2W
import G2WFormat

/// A request body field that is missing, of the wrong type or out of range: answered 400 with
/// a message naming the field (OpenAI's `param`).
struct FieldError: Error {
    var param: String
    var message: String
    var code = "invalid_value"
}

/// Typed access to a JSON object's fields. Absent and `null` read as "not given".
struct Fields {
    let pairs: [(String, JSONValue)]

    /// - Parameter key: the field holding the object (nil: the request body).
    init(_ value: JSONValue, key: String? = nil) throws {
        guard case let .object(p) = value else {
            throw FieldError(param: key ?? "", message: "\(key.map { "'\($0)'" } ?? "the request body") must be a JSON object, not \(value.typeName)", code: "invalid_type")
        }
        pairs = p
    }

    func value(_ key: String) -> JSONValue? {
        guard let v = pairs.first(where: { $0.0 == key })?.1, !v.isNull else { return nil }
        return v
    }

    static func typeError(_ key: String, _ expected: String, _ v: JSONValue) -> FieldError {
        FieldError(param: key, message: "'\(key)' must be \(expected), not \(v.typeName)", code: "invalid_type")
    }

    /// An integer (a number with no fraction: 16 or 16.0).
    static func integer(_ v: JSONValue, _ key: String) throws -> Int {
        guard case let .number(d, exact) = v else { throw typeError(key, "an integer", v) }
        if let i = exact, let n = Int(exactly: i) { return n }
        guard d.isFinite, d == d.rounded(), abs(d) < 9.0e15 else {
            throw FieldError(param: key, message: "'\(key)' must be an integer, not \(d)", code: "invalid_type")
        }
        return Int(d)
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(key) else { return nil }
        let n = try Self.integer(v, key)
        guard range.contains(n) else {
            let r = range.upperBound == Int.max ? ">= \(range.lowerBound)" : "in \(range.lowerBound)...\(range.upperBound)"
            throw FieldError(param: key, message: "'\(key)' must be \(r), is \(n)")
        }
        return n
    }

    func double(_ key: String, in range: ClosedRange<Double>, openLower: Bool = false) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard case let .number(d, _) = v else { throw Self.typeError(key, "a number", v) }
        guard d.isFinite, range.contains(d), !(openLower && d == range.lowerBound) else {
            let lower = openLower ? "(\(range.lowerBound)" : "[\(range.lowerBound)"
            throw FieldError(param: key, message: "'\(key)' must be in \(lower), \(range.upperBound)], is \(d)")
        }
        return d
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard case let .bool(b) = v else { throw Self.typeError(key, "a boolean", v) }
        return b
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case let .string(s) = v else { throw Self.typeError(key, "a string", v) }
        return s
    }

    /// An array of token ids, each in 0..<vocabulary.
    static func tokenIDs(_ items: [JSONValue], _ key: String, vocabulary: Int) throws -> [Int] {
        try items.enumerated().map { i, v in
            guard case .number = v else { throw FieldError(param: key, message: "'\(key)[\(i)]' must be a token id (an integer), not \(v.typeName)", code: "invalid_type") }
            let id = try integer(v, "\(key)[\(i)]")
            guard id >= 0 && id < vocabulary else {
                throw FieldError(param: key, message: "'\(key)[\(i)]' is \(id), not a token id (0...\(vocabulary - 1))")
            }
            return id
        }
    }
}

/// A prompt as given: text, or token ids.
enum PromptInput {
    case text(String)
    case tokens([Int])
}

/// The fields of `POST /v1/completions` (OpenAI's legacy completions API, with llama.cpp's
/// sampling extensions), checked.
struct CompletionRequest {
    var prompts: [PromptInput] = []
    var maxTokens: Int?
    var sampling = SamplingOptions()
    var seed: UInt64?
    var stop: [String] = []
    var stream = false
    var includeUsage = false
    var logprobs: Int?
    var echo = false
    var n = 1
    var ignoreEOS = false
    var model: String?

    /// OpenAI's default `max_tokens` for completions.
    static let defaultMaxTokens = 16
    static let maxLogprobs = 20
    static let maxStops = 16
    static let maxPrompts = 64

    init(_ body: JSONValue, vocabulary: Int) throws {
        let f = try Fields(body)
        model = try f.string("model")
        // prompt: a string, an array of token ids, an array of strings, or an array of arrays of ids.
        if let p = f.value("prompt") {
            switch p {
            case let .string(s): prompts = [.text(s)]
            case let .array(items):
                guard !items.isEmpty else { throw FieldError(param: "prompt", message: "'prompt' is an empty array") }
                if items.allSatisfy({ if case .number = $0 { return true } else { return false } }) {
                    prompts = [.tokens(try Fields.tokenIDs(items, "prompt", vocabulary: vocabulary))]
                } else if items.allSatisfy({ if case .string = $0 { return true } else { return false } }) {
                    prompts = items.map { .text($0.string!) }
                } else if items.allSatisfy({ if case .array = $0 { return true } else { return false } }) {
                    prompts = try items.enumerated().map { i, v in
                        guard case let .array(ids) = v, !ids.isEmpty else { throw FieldError(param: "prompt", message: "'prompt[\(i)]' is an empty array") }
                        return .tokens(try Fields.tokenIDs(ids, "prompt[\(i)]", vocabulary: vocabulary))
                    }
                } else {
                    throw FieldError(param: "prompt", message: "'prompt' must be a string, an array of token ids, an array of strings or an array of token-id arrays", code: "invalid_type")
                }
                guard prompts.count <= Self.maxPrompts else { throw FieldError(param: "prompt", message: "at most \(Self.maxPrompts) prompts per request") }
            default:
                throw Fields.typeError("prompt", "a string or an array", p)
            }
        } else {
            prompts = [.tokens([])]  // OpenAI: no prompt means <|endoftext|>
        }
        maxTokens = try f.int("max_tokens", in: 0...Int.max)
        // OpenAI's defaults: plain sampling at temperature 1 (no top-k, top-p or min-p).
        sampling.temperature = try f.double("temperature", in: 0...2) ?? 1
        sampling.topP = try f.double("top_p", in: 0...1, openLower: true) ?? 1
        sampling.topK = try f.int("top_k", in: 0...Int.max) ?? 0
        sampling.minP = try f.double("min_p", in: 0...1) ?? 0
        sampling.repetitionPenalty = try f.double("repeat_penalty", in: 0...1000, openLower: true) ?? 1
        sampling.repetitionWindow = try f.int("repeat_last_n", in: 0...Int.max) ?? 64
        if let v = f.value("seed") {
            let s = try Fields.integer(v, "seed")
            seed = UInt64(bitPattern: Int64(s))
        }
        if let v = f.value("stop") {
            switch v {
            case let .string(s): stop = [s]
            case let .array(items):
                stop = try items.enumerated().map { i, item in
                    guard case let .string(s) = item else { throw FieldError(param: "stop", message: "'stop[\(i)]' must be a string, not \(item.typeName)", code: "invalid_type") }
                    return s
                }
            default: throw Fields.typeError("stop", "a string or an array of strings", v)
            }
            guard stop.count <= Self.maxStops else { throw FieldError(param: "stop", message: "at most \(Self.maxStops) stop strings") }
            if stop.contains("") { throw FieldError(param: "stop", message: "a stop string may not be empty") }
        }
        stream = try f.bool("stream") ?? false
        if let o = f.value("stream_options") {
            includeUsage = try Fields(o, key: "stream_options").bool("include_usage") ?? false
        }
        logprobs = try f.int("logprobs", in: 0...Self.maxLogprobs)
        echo = try f.bool("echo") ?? false
        n = try f.int("n", in: 1...16) ?? 1
        if let b = try f.int("best_of", in: 1...16), b != n {
            throw FieldError(param: "best_of", message: "'best_of' other than 'n' is not supported")
        }
        ignoreEOS = try f.bool("ignore_eos") ?? false
        // Accepted only with their neutral values: sampling this server does not do.
        for key in ["presence_penalty", "frequency_penalty"] {
            if let d = try f.double(key, in: -2...2), d != 0 {
                throw FieldError(param: key, message: "'\(key)' is not supported (only 0); use 'repeat_penalty'")
            }
        }
        if let v = f.value("logit_bias") {
            let b = try Fields(v, key: "logit_bias")
            guard b.pairs.isEmpty else { throw FieldError(param: "logit_bias", message: "'logit_bias' is not supported (only {})") }
        }
        if let s = try f.string("suffix"), !s.isEmpty {
            throw FieldError(param: "suffix", message: "'suffix' (insertion) is not supported by GPT-2")
        }
        _ = try f.string("user")
        if prompts.count * n > Self.maxPrompts {
            throw FieldError(param: "n", message: "prompts x n is \(prompts.count * n); at most \(Self.maxPrompts) completions per request")
        }
    }
}
