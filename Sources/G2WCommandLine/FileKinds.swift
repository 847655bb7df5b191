#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import G2W
import G2WFormat

/// What a path given to a tool holds, recognised from its first bytes (or, for a directory, the
/// files in it), so that a wrong kind of file gets a message saying what it is and the command
/// that handles it, rather than a parse error about its bytes.
enum FileKind: Equatable {
    case g2w
    /// A safetensors file: an 8-byte little-endian header length that fits the file, then '{'.
    case safetensors
    /// A sharded checkpoint's `model.safetensors.index.json`.
    case safetensorsIndex
    /// A PyTorch checkpoint (`torch.save`: a zip archive, or a bare pickle).
    case pytorch
    /// llama.cpp's format.
    case gguf
    /// A Hugging Face checkpoint directory: `model.safetensors` or a sharded index inside.
    case huggingFaceDirectory(sharded: Bool)
    /// A directory with a PyTorch checkpoint (`pytorch_model.bin`) and no safetensors.
    case pytorchDirectory
    /// Another directory; `g2wFiles` are the `.g2w` files in it (sorted).
    case directory(g2wFiles: [String])
    /// Anything else, or a path that cannot be read without blocking (FIFOs, devices: the
    /// tools' own errors say what they are).
    case other

    static let indexName = "model.safetensors.index.json"

    /// Sniffs `path`. Never blocks (FIFOs and devices are not opened for reading) and reads at
    /// most 16 bytes of a file.
    static func of(_ path: String) -> FileKind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .other }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let has = Set(names)
            if has.contains("model.safetensors") { return .huggingFaceDirectory(sharded: false) }
            if has.contains(indexName) { return .huggingFaceDirectory(sharded: true) }
            if has.contains("pytorch_model.bin") || has.contains("pytorch_model.bin.index.json") { return .pytorchDirectory }
            return .directory(g2wFiles: names.filter { $0.hasSuffix(".g2w") && !$0.hasPrefix(".") && of((path as NSString).appendingPathComponent($0)) == .g2w }.sorted())
        }
        guard (st.st_mode & S_IFMT) == S_IFREG, let (fd, size) = try? G2WFileReading.openRegular(path) else { return .other }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 16)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 16, 0) }
        guard n > 0 else { return .other }
        head.removeLast(16 - n)
        if head.count >= 8, Array(head[0..<8]) == G2WLayout.magic { return .g2w }
        if head.count >= 9 {
            let length = head[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            if length >= 2, length <= size - 8, head[8] == UInt8(ascii: "{") { return .safetensors }
        }
        if head.starts(with: Array("GGUF".utf8)) { return .gguf }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || (head.count >= 2 && head[0] == 0x80 && (2...5).contains(head[1])) { return .pytorch }
        if path.hasSuffix(".safetensors.index.json"), head.first == UInt8(ascii: "{") { return .safetensorsIndex }
        return .other
    }

    /// A path as it would be typed in a shell: quoted when it holds anything but plain characters.
    static func shellQuoted(_ s: String) -> String {
        let plain = s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_./-+,:=@%".unicodeScalars.contains($0) }
        return plain && !s.isEmpty ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Where `g2w-convert INPUT` writes by default (a directory: `DIR/model.g2w`).
    static func conversionOutput(for input: String, directory: Bool) -> String {
        if directory { return (input as NSString).appendingPathComponent("model.g2w") }
        let base = (input as NSString).lastPathComponent.hasSuffix(".safetensors.index.json")
            ? (input as NSString).deletingLastPathComponent.isEmpty ? "model.g2w" : ((input as NSString).deletingLastPathComponent as NSString).appendingPathComponent("model.g2w")
            : HuggingFaceConverter.defaultOutput(for: input)
        return base
    }

    /// The transformers one-liner that re-saves a PyTorch checkpoint directory as safetensors.
    static func resaveCommand(_ dir: String) -> String {
        let d = dir.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let code = "from transformers import AutoModelForCausalLM as M; M.from_pretrained(\"\(d)\").save_pretrained(\"\(d)\", safe_serialization=True)"
        return "python3 -c \(shellQuoted(code))"
    }

    static let pickleWhy = "g2w reads safetensors only: a PyTorch .bin file is a Python pickle, and loading a pickle can run arbitrary code"

    /// A one-line message for a file given where a `.g2w` model is expected, or nil when `path`
    /// is not a kind g2w knows to be wrong. `then` is the command to run on the converted file
    /// (given its shell-quoted path), e.g. `{ "g2w-run -m \($0)" }`.
    static func notG2WMessage(_ path: String, then: (String) -> String) -> String? {
        let p = shellQuoted(path)
        switch of(path) {
        case .g2w, .other:
            return nil
        case .safetensors, .safetensorsIndex:
            let out = conversionOutput(for: path, directory: false)
            return "\(path) is a safetensors checkpoint (Hugging Face), not a .g2w file; convert it first: g2w-convert \(p) -o \(shellQuoted(out)) (then \(then(shellQuoted(out))))"
        case .huggingFaceDirectory:
            let out = conversionOutput(for: path, directory: true)
            return "\(path) is a Hugging Face checkpoint directory, not a .g2w file; convert it first: g2w-convert \(p) -o \(shellQuoted(out)) (then \(then(shellQuoted(out))))"
        case .pytorchDirectory:
            return "\(path) is a Hugging Face directory with a PyTorch checkpoint (pytorch_model.bin) and no model.safetensors; \(pickleWhy). Re-save it as safetensors with transformers: \(resaveCommand(path)), then: g2w-convert \(p)"
        case .pytorch:
            let dir = parentDirectory(of: path)
            return "\(path) is a PyTorch checkpoint, not a .g2w file; \(pickleWhy). Re-save its directory as safetensors with transformers: \(resaveCommand(dir)), then: g2w-convert \(shellQuoted(dir))"
        case .gguf:
            return "\(path) is a GGUF file (llama.cpp's format), not a .g2w file; g2w converts from the Hugging Face checkpoint instead: g2w-convert MODEL_DIR (model.safetensors + config.json + tokenizer files)"
        case let .directory(files):
            if files.count == 1 {
                let f = (path as NSString).appendingPathComponent(files[0])
                return "\(path) is a directory, not a .g2w file; it holds \(files[0]): \(then(shellQuoted(f)))"
            }
            if files.count > 1 { return "\(path) is a directory, not a .g2w file; it holds \(files.prefix(5).joined(separator: ", "))\(files.count > 5 ? ", ..." : ""): give one of them" }
            return nil
        }
    }

    /// The directory a file is in, "." for a bare file name.
    static func parentDirectory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// A one-line message for a `g2w-convert` input that is not a Hugging Face safetensors
    /// checkpoint (or a `.g2w` given without a type to re-encode to), or nil to convert it.
    static func convertInputMessage(_ path: String, reencoding: Bool) -> String? {
        let p = shellQuoted(path)
        switch of(path) {
        case .g2w:
            if reencoding { return nil }
            let types = (try? GPT2Model(path: path)).map { $0.weightTypesDescription }
            let quantized = (try? G2WFile(path: path))?.tensors.contains { $0.dtype.isQuantized } ?? false
            if quantized {
                return "\(path) is already a .g2w file (\(types ?? "quantized") weights): nothing to convert (a quantized file is not re-encoded: start from the f32 or f16 file)"
            }
            return "\(path) is already a .g2w file\(types.map { " (\($0) weights)" } ?? ""): nothing to convert. To re-encode it with another weight type, give --dtype: g2w-convert \(p) --dtype q8_0 (writes \(shellQuoted((path as NSString).deletingPathExtension + "-q8_0.g2w")))"
        case .pytorchDirectory:
            return "\(path) holds a PyTorch checkpoint (pytorch_model.bin) and no model.safetensors; \(pickleWhy). Re-save it as safetensors with transformers: \(resaveCommand(path)), then run g2w-convert \(p) again"
        case .pytorch:
            let dir = parentDirectory(of: path)
            return "\(path) is a PyTorch checkpoint; \(pickleWhy). Re-save its directory as safetensors with transformers: \(resaveCommand(dir)), then: g2w-convert \(shellQuoted(dir))"
        case .gguf:
            return "\(path) is a GGUF file (llama.cpp's format); g2w-convert reads the Hugging Face checkpoint (model.safetensors + config.json + tokenizer files): g2w-convert MODEL_DIR"
        case .safetensors:
            // One shard of a sharded checkpoint: the whole checkpoint is its directory.
            let name = (path as NSString).lastPathComponent
            let dir = parentDirectory(of: path)
            if name.range(of: #"-[0-9]+-of-[0-9]+\.safetensors$"#, options: .regularExpression) != nil,
               FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(indexName)) {
                return "\(path) is one shard of a sharded checkpoint (\(indexName) lists the shards); convert them all together: g2w-convert \(shellQuoted(dir))"
            }
            return nil
        default:
            return nil
        }
    }
}
