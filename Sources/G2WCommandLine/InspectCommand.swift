import Foundation
import G2WFormat
import G2WSupport

/// `g2w-inspect`: header, metadata, tensor table and totals of a `.g2w` file; `--verify` checks
/// every blob's CRC-32C.
public enum InspectCommand {
    static let usage = "usage: g2w-inspect [--json] [--verify] [--all-metadata] FILE.g2w"
    static let parser = OptionParser(specs: [
        OptionSpec(names: ["--json"], valueName: nil, help: "print one JSON object instead of tables"),
        OptionSpec(names: ["--verify"], valueName: nil, help: "recompute every tensor's CRC-32C and check padding;\nexit 1 naming the first bad tensor"),
        OptionSpec(names: ["--all-metadata"], valueName: nil, help: "print long string arrays in full (e.g. the vocabulary)"),
        OptionSpec(names: ["--version"], valueName: nil, help: "print the version and exit"),
        OptionSpec(names: ["-h", "--help"], valueName: nil, help: "show this help"),
    ])

    public static func main(_ arguments: [String]) -> Int32 {
        runTool(name: "g2w-inspect", usage: usage) {
            let o = try parser.parse(arguments)
            if o.has("--help") {
                print("""
                g2w-inspect: list the header, metadata and tensors of a .g2w file.

                \(usage)

                \(parser.helpText())

                Exit status: 0 ok, 1 invalid file or failed verification, 2 usage error.
                """)
                return 0
            }
            if o.has("--version") { print(versionLine("g2w-inspect")); return 0 }
            guard o.positionals.count == 1 else {
                throw UsageError(o.positionals.isEmpty ? "missing FILE.g2w" : "expected one file, got \(o.positionals.count)")
            }
            let path = o.positionals[0]
            let file: G2WFile
            do { file = try G2WFile(path: path) } catch let error as G2WFormatError {
                if let hint = FileKind.notG2WMessage(path, then: { "g2w-inspect \($0)" }) { throw ToolError(hint) }
                throw ToolError(error.description.hasPrefix(path) ? "\(error)" : "\(path): \(error)") }
            var verifyError: G2WFormatError?
            if o.has("--verify") {
                let showProgress = Console.stderrIsTerminal && !o.has("--json")
                do {
                    try file.verify { done, total in
                        if showProgress { Console.errorPartial("\rverifying \(done)/\(total)") }
                    }
                } catch let e as G2WFormatError { verifyError = e }
                if showProgress { Console.errorPartial("\r\u{1B}[K") }
            }
            if o.has("--json") {
                print(json(file, verified: o.has("--verify") ? verifyError == nil : nil, error: verifyError))
            } else {
                print(text(file, allMetadata: o.has("--all-metadata")))
                if o.has("--verify"), verifyError == nil {
                    print("verify: all \(file.tensors.count) tensor checksums match (CRC-32C), padding is zero")
                }
            }
            if let e = verifyError { throw ToolError("\(path): verify failed: \(e)") }
            return 0
        }
    }

    struct Totals { var parameters = 0; var bytes: UInt64 = 0 }

    static func totals(_ f: G2WFile) -> Totals {
        f.tensors.reduce(into: Totals()) { $0.parameters += $1.elementCount; $0.bytes += $1.byteCount }
    }

    static func text(_ f: G2WFile, allMetadata: Bool) -> String {
        let h = f.header
        var lines: [String] = []
        lines.append("file:      \(escapedForDisplay(f.path)) (\(grouped(f.fileSize)) bytes)")
        lines.append("format:    g2w \(h.versionMajor).\(h.versionMinor), little-endian, alignment \(h.alignment)")
        lines.append("sections:  header 0+\(h.headerSize), metadata \(h.metadataOffset)+\(h.metadataSize), tensor table \(h.tensorTableOffset)+\(h.tensorTableSize), data \(h.dataOffset)+\(h.dataSize)")
        lines.append("header region CRC-32C: 0x\(String(h.headerChecksum, radix: 16).leftPadded(8))")
        lines.append("")
        lines.append("metadata (\(f.metadata.count) entries):")
        let kw = min(40, f.metadata.entries.map { escapedForDisplay($0.key).count }.max() ?? 0)
        for (k, v) in f.metadata {
            var shown = v.description
            if case let .stringArray(a) = v {
                let preview = (allMetadata ? Array(a) : Array(a.prefix(4))).map { displayQuoted($0) }
                shown = "[\(preview.joined(separator: ", "))\(allMetadata || a.count <= 4 ? "" : ", ... (\(grouped(a.count)) strings)")]"
            }
            lines.append("  \(escapedForDisplay(k).rightPadded(kw))  \(v.typeName.rightPadded(8))  \(shown)")
        }
        lines.append("")
        lines.append("tensors (\(f.tensors.count)):")
        let nw = max(4, min(48, f.tensors.map { escapedForDisplay($0.name).count }.max() ?? 0))
        lines.append("  \("name".rightPadded(nw))  dtype  \("shape".rightPadded(16))  \("offset".leftPadded(12, with: " "))  \("bytes".leftPadded(12, with: " "))  crc32c")
        for t in f.tensors {
            let shape = t.shape.map(String.init).joined(separator: "x")
            lines.append("  \(escapedForDisplay(t.name).rightPadded(nw))  \(t.dtype.description.rightPadded(5))  \(shape.rightPadded(16))  \(String(t.offset).leftPadded(12, with: " "))  \(String(t.byteCount).leftPadded(12, with: " "))  \(String(t.checksum, radix: 16).leftPadded(8))")
        }
        let tot = totals(f)
        let bpw = tot.parameters > 0 ? Double(tot.bytes) * 8 / Double(tot.parameters) : 0
        lines.append("")
        lines.append("totals: \(grouped(f.tensors.count)) tensors, \(grouped(tot.parameters)) parameters, \(grouped(tot.bytes)) tensor bytes, \(String(format: "%.2f", bpw)) bits per weight")
        return lines.joined(separator: "\n")
    }

    static func json(_ f: G2WFile, verified: Bool?, error: G2WFormatError?) -> String {
        let h = f.header
        var parts: [String] = []
        parts.append("\"file\": \(jsonString(f.path))")
        parts.append("\"file_size\": \(f.fileSize)")
        parts.append("\"header\": {\"version_major\": \(h.versionMajor), \"version_minor\": \(h.versionMinor), \"byte_order\": \"little\", \"alignment\": \(h.alignment), \"header_size\": \(h.headerSize), \"metadata_offset\": \(h.metadataOffset), \"metadata_size\": \(h.metadataSize), \"metadata_count\": \(h.metadataCount), \"tensor_table_offset\": \(h.tensorTableOffset), \"tensor_table_size\": \(h.tensorTableSize), \"tensor_count\": \(h.tensorCount), \"data_offset\": \(h.dataOffset), \"data_size\": \(h.dataSize), \"header_crc32c\": \(h.headerChecksum), \"flags\": \(h.flags)}")
        var meta: [String] = []
        for (k, v) in f.metadata {
            let value: String
            switch v {
            case let .uint(x): value = "\"value\": \(x)"
            case let .int(x): value = "\"value\": \(x)"
            case let .float(x): value = "\"value\": \(jsonNumber(x))"
            case let .bool(x): value = "\"value\": \(x)"
            case let .string(s): value = "\"value\": \(jsonString(s))"
            case let .bytes(b): value = "\"count\": \(b.count)"
            case let .stringArray(a): value = "\"count\": \(a.count)"
            case let .unknown(_, b): value = "\"count\": \(b.count)"
            }
            meta.append("{\"key\": \(jsonString(k)), \"type\": \"\(v.typeName)\", \"type_code\": \(v.typeCode), \(value)}")
        }
        parts.append("\"metadata\": [\(meta.joined(separator: ", "))]")
        let tensors = f.tensors.map { t in
            "{\"name\": \(jsonString(t.name)), \"dtype\": \"\(t.dtype)\", \"shape\": [\(t.shape.map(String.init).joined(separator: ", "))], \"offset\": \(t.offset), \"byte_length\": \(t.byteCount), \"crc32c\": \(t.checksum)}"
        }
        parts.append("\"tensors\": [\n    \(tensors.joined(separator: ",\n    "))\n  ]")
        let tot = totals(f)
        parts.append("\"totals\": {\"tensors\": \(f.tensors.count), \"parameters\": \(tot.parameters), \"tensor_bytes\": \(tot.bytes), \"bits_per_weight\": \(jsonNumber(tot.parameters > 0 ? Double(tot.bytes) * 8 / Double(tot.parameters) : 0))}")
        if let verified {
            parts.append("\"verified\": \(verified)" + (error.map { ", \"verify_error\": \(jsonString($0.description))" } ?? ""))
        }
        return "{\n  " + parts.joined(separator: ",\n  ") + "\n}"
    }
}

