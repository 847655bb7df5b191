import Foundation
import G2WFormat

/// The tensors of a Hugging Face safetensors checkpoint: one `model.safetensors`, or the shards
/// a `model.safetensors.index.json` lists (`model-00001-of-0000N.safetensors` ...).
///
/// Every shard is memory-mapped and validated like a single file; the index is validated before
/// any tensor is read: its `weight_map` names plain files in the index's directory (no path, no
/// `..`), every tensor of every listed shard is in the map and mapped to that shard, and every
/// mapped tensor is in its shard (so each tensor is in exactly one shard). Reading stays a
/// stream: a tensor's pages are released once converted, whatever shard holds it.
struct SafetensorsCheckpoint {
    /// One tensor and the file that holds it.
    struct Tensor {
        let file: SafetensorsFile
        let entry: SafetensorsFile.Entry
        var name: String { entry.name }
        var dtype: SafetensorsFile.DType { entry.dtype }
        var shape: [Int] { entry.shape }
        var elementCount: Int { entry.elementCount }
        /// The raw little-endian bytes (a view into the file's mapping).
        var bytes: UnsafeRawBufferPointer { file.bytes(of: entry) }
        /// Releases the tensor's pages (see ``SafetensorsFile/release(_:)``).
        func release() { file.release(entry) }
        func release(bytes: Range<Int>) { file.release(entry, bytes: bytes) }
    }

    /// The checkpoint's path: the safetensors file or the index.
    let path: String
    /// The files read (one, or the shards in index order).
    let files: [SafetensorsFile]
    /// Every tensor, shard by shard, in data order.
    let tensors: [Tensor]
    /// The checkpoint's file name as `g2w.source` records it: the file's, or for a sharded
    /// checkpoint the name the index describes (`model.safetensors` for
    /// `model.safetensors.index.json`), so a sharded and an unsharded copy convert to the same bytes.
    let sourceName: String
    /// Whether the tensors come from shards listed by an index.
    var isSharded: Bool { path.hasSuffix(Self.indexSuffix) }

    static let indexSuffix = ".safetensors.index.json"
    static let indexName = "model.safetensors.index.json"
    /// Bounds on what an index may claim (HF's largest GPT-2, 1.5B, has a handful of shards).
    static let maxIndexBytes = 64 << 20
    static let maxShards = 10_000

    /// Opens `path`: a safetensors file, or (name ending `.safetensors.index.json`) an index and its shards.
    init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        guard name.hasSuffix(Self.indexSuffix) else {
            let f = try SafetensorsFile(path: path)
            files = [f]
            tensors = f.entries.map { Tensor(file: f, entry: $0) }
            sourceName = name
            return
        }
        sourceName = String(name.dropLast(".index.json".count))
        let dir = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        func bad(_ reason: String) -> ConversionError { ConversionError("\(path): invalid sharded-checkpoint index: \(reason)") }

        let data: [UInt8]
        do { data = try G2WFileReading.readRegularFile(path, limit: Self.maxIndexBytes, what: "index") } catch { throw ConversionError("\(error)", underlying: error) }
        let json: JSONValue
        do { json = try JSONValue.parse(data) } catch let e as JSONError { throw bad("\(e)") }
        guard case .object = json else { throw bad("it is \(json.typeName), not a JSON object") }
        guard let mapValue = json["weight_map"] else { throw bad("no \"weight_map\"") }
        guard case let .object(pairs) = mapValue else { throw bad("\"weight_map\" is \(mapValue.typeName), not an object") }
        var shardOf: [String: String] = [:]
        var shardNames: [String] = []
        for (tensor, value) in pairs {
            guard let shard = value.string else { throw bad("tensor '\(escapedForDisplay(tensor))' maps to \(value.typeName), not a file name") }
            guard shardOf[tensor] == nil else { throw bad("tensor '\(escapedForDisplay(tensor))' is listed twice") }
            guard Self.isPlainFileName(shard) else {
                throw bad("shard '\(escapedForDisplay(shard))' (of tensor '\(escapedForDisplay(tensor))') is not a plain file name in the index's directory")
            }
            if !shardNames.contains(shard) {
                guard shardNames.count < Self.maxShards else { throw bad("more than \(Self.maxShards) shards") }
                shardNames.append(shard)
            }
            shardOf[tensor] = shard
        }
        guard !shardNames.isEmpty else { throw bad("\"weight_map\" is empty") }
        var files: [SafetensorsFile] = []
        var tensors: [Tensor] = []
        var foundIn: [String: String] = [:]
        for shard in shardNames {
            let f = try SafetensorsFile(path: (dir as NSString).appendingPathComponent(shard))
            for e in f.entries {
                if let other = foundIn[e.name] {
                    throw bad("tensor '\(escapedForDisplay(e.name))' is in two shards, \(other) and \(shard)")
                }
                guard let listed = shardOf[e.name] else { throw bad("tensor '\(escapedForDisplay(e.name))' of \(shard) is not in \"weight_map\"") }
                guard listed == shard else { throw bad("tensor '\(escapedForDisplay(e.name))' is in \(shard), but \"weight_map\" puts it in \(listed)") }
                foundIn[e.name] = shard
                tensors.append(Tensor(file: f, entry: e))
            }
            files.append(f)
        }
        for (tensor, _) in pairs where foundIn[tensor] == nil {
            throw bad("\"weight_map\" puts tensor '\(escapedForDisplay(tensor))' in \(shardOf[tensor]!), which does not hold it")
        }
        self.files = files
        self.tensors = tensors
    }

    /// A name that stays inside the directory: not empty, not `.` or `..`, no `/`, no NUL.
    static func isPlainFileName(_ s: String) -> Bool {
        !s.isEmpty && s != "." && s != ".." && !s.contains("/") && !s.unicodeScalars.contains("\0")
    }

    /// The checkpoint inside a Hugging Face directory: `model.safetensors`, else the sharded index.
    static func path(inDirectory dir: String) -> String {
        let single = (dir as NSString).appendingPathComponent("model.safetensors")
        let index = (dir as NSString).appendingPathComponent(indexName)
        return !FileManager.default.fileExists(atPath: single) && FileManager.default.fileExists(atPath: index) ? index : single
    }
}
