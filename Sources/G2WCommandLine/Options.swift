#if canImport(Glibc)
import Glibc
#endif
import Foundation
import G2W
import G2WFormat
import G2WServer
import G2WTraining

/// A command-line usage error: printed as one line plus the usage, exit status 2.
public struct UsageError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A failure while doing the work (bad file, I/O): printed as one line, exit status 1.
public struct ToolError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One option a tool accepts.
struct OptionSpec {
    var names: [String]          // e.g. ["-n", "--n-predict", "--max-tokens"]
    var valueName: String?       // nil for a flag without value
    var help: String
    var repeatable = false
    /// The key values are stored under (the last name, so code keeps reading its long-standing name).
    var canonical: String { names.last! }
    /// The spelling suggested and shown first: the first long name (llama.cpp's where it has one).
    var preferred: String { names.first { $0.hasPrefix("--") } ?? names[0] }
}

/// Parsed options: values by canonical name, and positional arguments.
struct ParsedOptions {
    var values: [String: [String]] = [:]
    var positionals: [String] = []
    /// The spelling the user typed for each canonical name (for messages: "-t", not "--threads").
    var spellings: [String: String] = [:]

    func has(_ name: String) -> Bool { values[name] != nil }
    func string(_ name: String) -> String? { values[name]?.last }
    func strings(_ name: String) -> [String] { values[name] ?? [] }
    /// The option as the user wrote it ("-n" or "--max-tokens"), or `name` when absent.
    func spelled(_ name: String) -> String { spellings[name] ?? name }

    func int(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let s = string(name) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError("invalid value for \(spelled(name)): '\(escapedForDisplay(s))' (expected an integer in \(describe(range)))")
        }
        return v
    }

    func uint64(_ name: String) throws -> UInt64? {
        guard let s = string(name) else { return nil }
        guard let v = UInt64(s) else { throw UsageError("invalid value for \(spelled(name)): '\(escapedForDisplay(s))' (expected an integer in 0...\(UInt64.max))") }
        return v
    }

    func double(_ name: String, range: ClosedRange<Double>, openLower: Bool = false) throws -> Double? {
        guard let s = string(name) else { return nil }
        guard let v = Double(s), v.isFinite, range.contains(v), !(openLower && v == range.lowerBound) else {
            let lower = openLower ? "(\(range.lowerBound)" : "[\(range.lowerBound)"
            throw UsageError("invalid value for \(spelled(name)): '\(escapedForDisplay(s))' (expected a number in \(lower), \(range.upperBound)])")
        }
        return v
    }

    private func describe(_ r: ClosedRange<Int>) -> String {
        r.upperBound == Int.max ? "\(r.lowerBound)..." : "\(r.lowerBound)...\(r.upperBound)"
    }
}

/// A tiny, strict parser: `--name value`, `--name=value`, `-n value`, flags, `--` ends options.
/// Unknown options (with the nearest known one suggested), missing values and repeated
/// non-repeatable options are usage errors.
struct OptionParser {
    var specs: [OptionSpec]
    /// Options of other tools (llama.cpp's) that this one does not have, with what to do instead:
    /// a precise message rather than a guess at the nearest name.
    var foreign: [(names: [String], hint: String)] = []

    func parse(_ args: [String]) throws -> ParsedOptions {
        var out = ParsedOptions()
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let arg = args[i]
            i += 1
            if onlyPositionals || !arg.hasPrefix("-") || arg == "-" {
                out.positionals.append(arg)
                continue
            }
            if arg == "--" { onlyPositionals = true; continue }
            var name = arg
            var inline: String?
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            guard let spec = specs.first(where: { $0.names.contains(name) }) else {
                throw UsageError(unknownOptionMessage(name))
            }
            var value = ""
            if spec.valueName != nil {
                if let v = inline { value = v } else {
                    guard i < args.count else { throw UsageError("option \(name) needs a value (\(spec.valueName!))") }
                    value = args[i]
                    i += 1
                }
            } else if inline != nil {
                throw UsageError("option \(name) takes no value")
            }
            if !spec.repeatable, out.values[spec.canonical] != nil {
                let first = out.spellings[spec.canonical] ?? name
                throw UsageError(first == name ? "option \(name) given more than once" : "option \(name) given more than once (\(first) is the same option)")
            }
            out.values[spec.canonical, default: []].append(value)
            if out.spellings[spec.canonical] == nil { out.spellings[spec.canonical] = name }
        }
        return out
    }

    /// "unknown option --temperatur; did you mean --temp?" (the preferred spelling of the nearest
    /// option), or what to use instead of another tool's option.
    func unknownOptionMessage(_ name: String) -> String {
        let shown = escapedForDisplay(name)
        if let f = foreign.first(where: { $0.names.contains(name) }) { return "unknown option \(shown): \(f.hint)" }
        guard let s = nearest(name) else { return "unknown option \(shown)" }
        return "unknown option \(shown); did you mean \(s.preferred)?"
    }

    /// The option whose name is closest to `name` (edit distance, dashes ignored, so `-temp` finds
    /// `--temp`), if it is close enough to be a plausible typo; one-letter names are never guessed.
    func nearest(_ name: String) -> OptionSpec? {
        let typed = Array(name.drop { $0 == "-" }.lowercased())
        guard typed.count >= 2 else { return nil }
        var best: (distance: Int, spec: OptionSpec)?
        for spec in specs {
            for n in spec.names {
                let candidate = Array(n.drop { $0 == "-" })
                guard candidate.count >= 2 else { continue }
                var d = editDistance(typed, candidate)
                // A prefix of at least 4 letters ("--n-pred", "--temperat") is a plausible abbreviation.
                if typed.count >= 4, candidate.starts(with: typed) { d = min(d, 1) }
                if best == nil || d < best!.distance { best = (d, spec) }
            }
        }
        guard let best else { return nil }
        let limit = typed.count <= 3 ? 1 : typed.count <= 8 ? 2 : 3
        return best.distance <= limit ? best.spec : nil
    }

    /// The options section of `--help`.
    func helpText() -> String {
        var lines: [String] = []
        let heads = specs.map { s -> String in
            s.names.joined(separator: ", ") + (s.valueName.map { " \($0)" } ?? "")
        }
        let width = min(30, (heads.map(\.count).max() ?? 0) + 2)
        for (h, s) in zip(heads, specs) {
            let pad = h.count < width ? String(repeating: " ", count: width - h.count) : "\n" + String(repeating: " ", count: width + 2)
            let helpLines = s.help.split(separator: "\n", omittingEmptySubsequences: false)
            lines.append("  " + h + pad + helpLines[0])
            for extra in helpLines.dropFirst() { lines.append(String(repeating: " ", count: width + 2) + extra) }
        }
        return lines.joined(separator: "\n")
    }
}

/// Levenshtein distance (insertions, deletions, substitutions, and swaps of two neighbours).
func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
        }
    }
    return d[a.count][b.count]
}

/// `--version`: the tool and the library's version (one constant, ``G2WVersion``).
func versionLine(_ tool: String) -> String { "\(tool) \(G2WVersion.string)" }

/// Standard error, unbuffered.
enum Console {
    /// Writes to standard error. A closed or failing standard error is ignored (diagnostics are
    /// best effort; the exit status still says what happened), never a trap.
    static func error(_ s: String) { errorPartial(s + "\n") }
    static func errorPartial(_ s: String) {
        var bytes = Array(s.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
    }
    /// Writes to standard output and flushes, for streaming. If standard output fails (a full
    /// disk, a closed descriptor), the tool stops at once with status 1, naming it: output is
    /// never lost silently.
    static func out(_ s: String) {
        fputs(s, stdout)
        if fflush(stdout) != 0 || ferror(stdout) != 0 { stdoutFailed() }
    }
    /// Checks that everything written to standard output got there (run by `runTool` at the end).
    static func finishStdout() -> Bool { fflush(stdout) == 0 && ferror(stdout) == 0 }
    static func stdoutFailed() -> Never {
        let why = String(cString: strerror(errno))
        error("\((CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent }) ?? "g2w"): error: cannot write to standard output: \(why)")
        exit(1)
    }
    static var stderrIsTerminal: Bool { isatty(2) == 1 }
    static var stdinIsTerminal: Bool { isatty(0) == 1 }
}

/// Runs a tool's body with the shared exit-status convention: 0 success, 1 failure, 2 usage.
func runTool(name: String, usage: String, _ body: () throws -> Int32) -> Int32 {
    do {
        let status = try body()
        // Output that did not reach standard output (a full disk, a closed descriptor) is a failure.
        if !Console.finishStdout() {
            Console.error("\(name): error: cannot write to standard output: \(String(cString: strerror(errno)))")
            return 1
        }
        return status
    } catch let e as UsageError {
        Console.error("\(name): \(e.description)")
        Console.error(usage)
        Console.error("Try '\(name) --help' for more.")
        return 2
    } catch {
        Console.error("\(name): error: \(CLIErrors.message(error))")
        return 1
    }
}

/// The library's errors describe problems in its own terms and name no flags; the tools add the
/// flag that addresses each (once: a message that already names it is left as it is).
enum CLIErrors {
    static func message(_ error: Error) -> String {
        let text = "\(error)"
        switch error {
        case let e as G2WFormatError:
            if case .outputExists = e, !text.contains("--force") { return text + " (use --force to overwrite)" }
        case let e as ModelError:
            if case .noTokenizer = e, !text.contains("--tokens") { return text + " (g2w-run takes ids with --tokens IDS)" }
        case is ConversionError:
            // The converter's errors are text: the flag that addresses each is added when missing.
            if text.hasSuffix("already exists") { return text + " (use --force to overwrite)" }
            if text.contains("not a multiple of"), !text.contains("--dtype") { return text + "; choose another --dtype/--head-dtype" }
            if text.contains("n_head does not"), !text.contains("--n-head") { return text + " (--n-head N or --config FILE)" }
            if text.contains("is an input") || text.contains("is the input file itself"), !text.contains("-o ") { return text + "; choose another -o" }
        case let e as GenerationError:
            if case let .promptTooLong(p, n, c) = e, p < c {
                return "the prompt (\(p == 1 ? "1 token" : "\(p) tokens")) plus -n \(n) exceeds the model's context of \(c) tokens; use -n \(c - p) or less, or a shorter prompt"
            }
        case let e as Trainer.SetupError:
            // g2w-train's settings, said with the flags that set them.
            switch e.reason {
            case let .windowLengthOutOfRange(n, c): return "--ctx \(n) is outside 1...\(c) (the model's n_ctx)"
            case let .gradientAccumulationBelowOne(k): return "--grad-accum is \(k); it must be at least 1"
            case let .epochShorterThanAStep(b, k): return "one epoch has \(b) micro-batches, fewer than --grad-accum \(k): give --max-steps"
            case .noTrainingData: return "no training data: give --train FILE..."
            case .mixedTrainingFiles: return "--train mixes text files and llm.c token files"
            case let .notACheckpoint(path): return "\(path): not a g2w-train checkpoint (no training state); to fine-tune a model, use --init"
            case .other: break
            }
        case let e as TrainingCheckpoint.ReadError:
            if e.reason.hasPrefix("not a g2w-train checkpoint"), !text.contains("--init") { return text + "; to fine-tune it, use --init" }
        case let e as ServerError:
            if case let .contextSize(s, n) = e { return "--ctx-size must be in 1...\(n) (the model's context), is \(s)" }
        default:
            break
        }
        return text
    }
}

/// Formats 1234567 as "1,234,567".
func grouped(_ n: some BinaryInteger) -> String {
    let s = String(n.magnitude)
    var out = ""
    for (i, c) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + String(out.reversed())
}

/// JSON string literal with escapes (the one JSON string writer: `JSONValue.quoted`).
func jsonString(_ s: String) -> String { JSONValue.quoted(s) }

/// JSON number for a Double (finite), or null.
func jsonNumber(_ d: Double) -> String {
    guard d.isFinite else { return "null" }
    if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
    return "\(d)"
}
