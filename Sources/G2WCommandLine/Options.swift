#if canImport(Glibc)
import Glibc
#endif
import Foundation

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
    var names: [String]          // e.g. ["-n", "--max-tokens"]
    var valueName: String?       // nil for a flag without value
    var help: String
    var repeatable = false
    var canonical: String { names.last! }
}

/// Parsed options: values by canonical name, and positional arguments.
struct ParsedOptions {
    var values: [String: [String]] = [:]
    var positionals: [String] = []

    func has(_ name: String) -> Bool { values[name] != nil }
    func string(_ name: String) -> String? { values[name]?.last }
    func strings(_ name: String) -> [String] { values[name] ?? [] }

    func int(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let s = string(name) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError("invalid value for \(name): '\(s)' (expected an integer in \(describe(range)))")
        }
        return v
    }

    func uint64(_ name: String) throws -> UInt64? {
        guard let s = string(name) else { return nil }
        guard let v = UInt64(s) else { throw UsageError("invalid value for \(name): '\(s)' (expected an integer in 0...\(UInt64.max))") }
        return v
    }

    func double(_ name: String, range: ClosedRange<Double>, openLower: Bool = false) throws -> Double? {
        guard let s = string(name) else { return nil }
        guard let v = Double(s), v.isFinite, range.contains(v), !(openLower && v == range.lowerBound) else {
            let lower = openLower ? "(\(range.lowerBound)" : "[\(range.lowerBound)"
            throw UsageError("invalid value for \(name): '\(s)' (expected a number in \(lower), \(range.upperBound)])")
        }
        return v
    }

    private func describe(_ r: ClosedRange<Int>) -> String {
        r.upperBound == Int.max ? "\(r.lowerBound)..." : "\(r.lowerBound)...\(r.upperBound)"
    }
}

/// A tiny, strict parser: `--name value`, `--name=value`, `-n value`, flags, `--` ends options.
/// Unknown options, missing values and repeated non-repeatable options are usage errors.
struct OptionParser {
    var specs: [OptionSpec]

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
                throw UsageError("unknown option '\(name)'")
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
                throw UsageError("option \(name) given more than once")
            }
            out.values[spec.canonical, default: []].append(value)
        }
        return out
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
        Console.error("\(name): error: \(error)")
        return 1
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

/// JSON string literal with escapes.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// JSON number for a Double (finite), or null.
func jsonNumber(_ d: Double) -> String {
    guard d.isFinite else { return "null" }
    if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
    return "\(d)"
}
