#if canImport(Glibc)
import Glibc
#endif
import CG2W
import Foundation
import G2W
import G2WFormat
import G2WServer

/// `g2w-server`: an OpenAI-compatible HTTP server for a `.g2w` model, with continuous batching.
/// Flags follow llama-server's spellings.
public enum ServeCommand {
    static let usage = "usage: g2w-server -m FILE.g2w [--host ADDR] [--port N] [-np N] [-t N] [--api-key KEY] [-c N] [options]"
    static let parser = OptionParser(specs: [
        OptionSpec(names: ["-m", "--model"], valueName: "FILE.g2w", help: "the model to serve (required; the only file the server opens)"),
        OptionSpec(names: ["--host"], valueName: "ADDR", help: "address to listen on (default 127.0.0.1: this machine only;\n0.0.0.0 or :: serves the network)"),
        OptionSpec(names: ["--port"], valueName: "N", help: "TCP port (default 8080; 0 picks a free one, printed at start)"),
        OptionSpec(names: ["-np", "--parallel"], valueName: "N", help: "sequences decoded together, one forward pass per step (default 4)"),
        OptionSpec(names: ["-t", "--threads"], valueName: "N", help: "worker threads (default: number of cores)"),
        OptionSpec(names: ["--api-key"], valueName: "KEY", help: "require 'Authorization: Bearer KEY' (all endpoints but /health)"),
        OptionSpec(names: ["--api-key-file"], valueName: "FILE", help: "the same, the key read from the first line of FILE (not visible in ps)"),
        OptionSpec(names: ["-c", "--ctx-size"], valueName: "N", help: "context per sequence, prompt + completion (default and 0: the model's n_ctx)"),
        OptionSpec(names: ["--queue"], valueName: "N", help: "requests waiting for a slot at most; beyond, 503 + Retry-After (default 64)"),
        OptionSpec(names: ["--prompt-chunk"], valueName: "N", help: "prompt tokens run per step while other sequences decode (default 64)"),
        OptionSpec(names: ["--kv-type"], valueName: "f32|f16", help: "element type of the KV caches (default f32)"),
        OptionSpec(names: ["-a", "--alias"], valueName: "NAME", help: "model name in the API (default: the file name without .g2w)"),
        OptionSpec(names: ["--timeout"], valueName: "S", help: "seconds a request may take to arrive (head and body; default 10);\na slower client is answered 408 and dropped"),
        OptionSpec(names: ["--max-connections"], valueName: "N", help: "open connections at most; more are answered 503 (default 256)"),
        OptionSpec(names: ["-q", "--quiet"], valueName: nil, help: "no log lines on stderr"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-server", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-server: serve a GPT-2 model (.g2w) over HTTP with OpenAI's completions API.

                \(usage)

                \(parser.helpText())

                Endpoints: POST /v1/completions (OpenAI's completions, streaming with stream: true),
                GET /v1/models, GET /health, POST /tokenize, POST /detokenize. GPT-2 is not a chat
                model: /v1/chat/completions answers 404 (as OpenAI does for completion models).
                SIGINT/SIGTERM: stop accepting, finish the requests in flight, exit 0 (a second
                signal exits at once).
                """)
                return 0
            }
            if !o.positionals.isEmpty { throw UsageError("unexpected argument '\(o.positionals[0])'") }
            guard let modelPath = o.string("--model") else { throw UsageError("missing -m FILE.g2w") }
            // A checkpoint of another kind (safetensors, a Hugging Face directory): say how to convert it.
            if let hint = FileKind.notG2WMessage(modelPath, then: { "g2w-server -m \($0)" }) { throw ToolError(hint) }
            var c = ServerConfiguration(modelPath: modelPath)
            if let h = o.string("--host") { c.host = h }
            c.port = try o.int("--port", range: 0...65535) ?? 8080
            c.parallel = try o.int("--parallel", range: 1...256) ?? 4
            c.threads = try o.int("--threads", range: 1...1024)
            if o.has("--api-key") && o.has("--api-key-file") { throw UsageError("--api-key and --api-key-file exclude each other") }
            if let k = o.string("--api-key") {
                guard !k.isEmpty else { throw UsageError("--api-key is empty") }
                c.apiKey = k
            }
            if let f = o.string("--api-key-file") {
                guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { throw ToolError("cannot read the API key file \(f)") }
                let k = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                guard !k.isEmpty else { throw ToolError("\(f): the first line holds no key") }
                c.apiKey = k
            }
            if let n = try o.int("--ctx-size", range: 0...Int(Int32.max)), n > 0 { c.contextSize = n }
            c.queueSize = try o.int("--queue", range: 0...100_000) ?? 64
            c.promptChunk = try o.int("--prompt-chunk", range: 1...4096) ?? 64
            if let k = o.string("--kv-type") {
                guard k == "f32" || k == "f16" else { throw UsageError("invalid value for --kv-type: '\(k)' (expected f32 or f16)") }
                c.kvType = k == "f16" ? .f16 : .f32
            }
            c.alias = o.string("--alias")
            if let t = try o.double("--timeout", range: 0.1...86400) { c.limits.requestTimeout = t }
            c.maxConnections = try o.int("--max-connections", range: 1...100_000) ?? 256
            if !o.has("--quiet") { c.log = { Console.error("g2w-server: \($0)") } }

            // SIGINT/SIGTERM only record the signal (a second one exits at once); SIGPIPE ignored.
            g2w_stop_install_handlers()
            let server = G2WServer(configuration: c)
            do { try server.start() } catch { throw ToolError(CLIErrors.message(error)) }
            while g2w_stop_requested() == 0 { usleep(50_000) }
            c.log?("signal \(g2w_stop_requested()): stopping (finishing the requests in flight; a second signal exits at once)")
            server.stop()
            c.log?("stopped")
            return 0
        }
    }
}
