#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W
import G2WSupport

/// Writes safetensors files (https://github.com/huggingface/safetensors), atomically.
///
/// The file is the standard layout: an 8-byte little-endian header length N, N bytes of JSON
/// header padded with spaces to a multiple of 8, then the tensors' raw bytes back to back in the
/// order given. The header is
/// `{"__metadata__":{"k":"v",...},"name":{"dtype":"F32","shape":[..],"data_offsets":[begin,end]},...}`
/// with the metadata keys sorted and the tensors in the order given (the `__metadata__` entry only
/// when there is metadata). ``SafetensorsFile`` reads what this writes.
///
/// Tensor bytes are taken as they are: they must already be in the file's byte order,
/// little-endian, which is the memory order of `Float` and `Float16` on every platform Swift runs
/// this package on (x86-64, arm64). Output goes through ``AtomicFileWriter``: a temporary file
/// beside the destination, `fsync`, then a move into place; an existing destination is an error
/// unless `overwrite` is set, and no temporary file remains after an error.
///
/// ```swift
/// try weights.withUnsafeBufferPointer { w in
///     try SafetensorsWriter.write(to: "model.safetensors",
///                                 tensors: [.f32(name: "wte.weight", shape: [50257, 768], w)],
///                                 metadata: ["format": "pt"])
/// }
/// ```
public enum SafetensorsWriter {
    /// The same limit as ``SafetensorsFile/maxHeaderLength`` (and the reference implementation).
    public static let maxHeaderLength = SafetensorsFile.maxHeaderLength

    /// One tensor to write: its name, element type, shape, and where its bytes come from.
    ///
    /// The bytes are either a buffer (valid for the duration of ``SafetensorsWriter/write(to:tensors:metadata:overwrite:)``)
    /// or a producer that hands them over in pieces, so a tensor that must be converted or
    /// transposed never needs a whole copy in memory.
    public struct Tensor {
        /// Hands the tensor's bytes, in order, to the sink it is given; any number of calls.
        public typealias Producer = (_ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

        enum Source {
            case bytes(UnsafeRawBufferPointer)
            case producer(Producer)
        }

        public var name: String
        public var dtype: SafetensorsFile.DType
        public var shape: [Int]
        let source: Source

        /// A tensor whose little-endian bytes are `bytes` (exactly shape x dtype size of them).
        public init(name: String, dtype: SafetensorsFile.DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            source = .bytes(bytes)
        }

        /// A tensor whose bytes `producer` streams; they must total shape x dtype size bytes.
        public init(name: String, dtype: SafetensorsFile.DType, shape: [Int], producer: @escaping Producer) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            source = .producer(producer)
        }

        /// An F32 tensor over `values` (row-major).
        public static func f32(name: String, shape: [Int], _ values: UnsafeBufferPointer<Float>) -> Tensor {
            Tensor(name: name, dtype: .f32, shape: shape, bytes: UnsafeRawBufferPointer(values))
        }

        /// An F16 tensor of `values` converted to binary16 (round to nearest even, as PyTorch's
        /// `.half()`), in slices, so memory stays bounded.
        public static func f16(name: String, shape: [Int], converting values: UnsafeBufferPointer<Float>) -> Tensor {
            Tensor(name: name, dtype: .f16, shape: shape) { sink in
                let slice = 1 << 18
                var halves = [UInt16](repeating: 0, count: min(slice, values.count))
                var start = 0
                while start < values.count {
                    let n = min(slice, values.count - start)
                    halves.withUnsafeMutableBufferPointer { h in
                        if let src = values.baseAddress, let dst = h.baseAddress { g2w_f32_to_f16(src + start, dst, n) }
                    }
                    try halves.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<(2 * n)])) }
                    start += n
                }
            }
        }
    }

    /// Writes `tensors` (data in the order given) and `metadata` (the header's `__metadata__`)
    /// to `path`.
    ///
    /// - Parameter overwrite: replace an existing file; otherwise an existing `path` is
    ///   ``G2WFormatError/outputExists(path:)``, checked before writing and again, atomically,
    ///   when the file is moved into place.
    /// - Throws: ``G2WFormatError``: `invalidTensor` (empty or reserved name, negative or
    ///   overflowing shape, a byte count that disagrees with the shape), `duplicateName`,
    ///   `limitExceeded` (header over 100 MB), `outputExists`, `io` (which call, which file, why).
    public static func write(to path: String, tensors: [Tensor], metadata: [String: String] = [:], overwrite: Bool = false) throws {
        let layout = try plan(tensors)
        let header = try encodeHeader(tensors, byteCounts: layout, metadata: metadata)
        let file = try AtomicFileWriter(path: path, overwrite: overwrite)
        do {
            var prefix: [UInt8] = []
            prefix.reserveCapacity(8 + header.count)
            let n = UInt64(header.count)
            for i in 0..<8 { prefix.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
            prefix += header
            try file.write(prefix)
            for (i, t) in tensors.enumerated() {
                let expected = layout[i]
                switch t.source {
                case let .bytes(b):
                    try file.write(b)
                case let .producer(produce):
                    var written = 0
                    var overrun = false
                    try produce { chunk in
                        let (sum, o) = written.addingReportingOverflow(chunk.count)
                        guard !o, sum <= expected else {
                            overrun = true
                            throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "the producer wrote more than the \(expected) bytes that shape \(t.shape) x \(t.dtype.rawValue) needs")
                        }
                        written = sum
                        try file.write(chunk)
                    }
                    guard !overrun, written == expected else {
                        throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "the producer wrote \(written) bytes, shape \(t.shape) x \(t.dtype.rawValue) needs \(expected)")
                    }
                }
            }
            try file.commit()
        } catch {
            file.cancel()
            throw error
        }
    }

    /// Checks every tensor and returns each one's byte count.
    static func plan(_ tensors: [Tensor]) throws -> [Int] {
        var names = Set<String>()
        var counts: [Int] = []
        counts.reserveCapacity(tensors.count)
        var total = 0
        for (i, t) in tensors.enumerated() {
            func bad(_ reason: String) -> G2WFormatError { .invalidTensor(name: t.name, index: i, reason: reason) }
            guard !t.name.isEmpty else { throw bad("the name is empty") }
            guard t.name != "__metadata__" else { throw bad("'__metadata__' is reserved for the header's metadata") }
            guard names.insert(t.name).inserted else { throw G2WFormatError.duplicateName(section: "safetensors header", name: t.name) }
            var bytes = t.dtype.size
            for d in t.shape {
                guard d >= 0 else { throw bad("shape \(t.shape) has a negative dimension") }
                let (p, o) = bytes.multipliedReportingOverflow(by: d)
                guard !o else { throw bad("shape \(t.shape) x \(t.dtype.rawValue) overflows the byte count") }
                bytes = p
            }
            if case let .bytes(b) = t.source, b.count != bytes {
                throw bad("has \(b.count) bytes, shape \(t.shape) x \(t.dtype.rawValue) needs \(bytes)")
            }
            let (sum, o) = total.addingReportingOverflow(bytes)
            guard !o else { throw bad("the data section would exceed \(Int.max) bytes") }
            total = sum
            counts.append(bytes)
        }
        return counts
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    static func encodeHeader(_ tensors: [Tensor], byteCounts: [Int], metadata: [String: String]) throws -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            for (k, (key, value)) in metadata.sorted(by: { $0.key < $1.key }).enumerated() {
                if k > 0 { json += "," }
                json += JSONValue.quoted(key) + ":" + JSONValue.quoted(value)
            }
            json += "}"
            first = false
        }
        var offset = 0
        for (i, t) in tensors.enumerated() {
            if !first { json += "," }
            first = false
            let end = offset + byteCounts[i]  // cannot overflow: plan() checked the total
            json += JSONValue.quoted(t.name) + ":{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":["
            json += t.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        let padded = (bytes.count + 7) / 8 * 8
        bytes += repeatElement(0x20, count: padded - bytes.count)
        guard UInt64(bytes.count) <= maxHeaderLength else {
            throw G2WFormatError.limitExceeded(section: "safetensors header", what: "header length", value: UInt64(bytes.count), limit: maxHeaderLength)
        }
        return bytes
    }
}

extension JSONValue {
    /// A JSON string literal for `s`: `"` and `\` escaped, control characters as `\n`, `\t`, ...
    /// or `\u00XX`, everything else as UTF-8 (a Swift `String` is valid Unicode, so the result is
    /// valid JSON text). With `asciiOnly`, every non-ASCII scalar is a `\uXXXX` escape (a
    /// surrogate pair above U+FFFF), as Python's `json.dumps` writes by default.
    public static func quoted(_ s: String, asciiOnly: Bool = false) -> String {
        var out = "\""
        func hex4(_ v: UInt32) -> String { "\\u" + String(v, radix: 16).leftPadded(4) }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += hex4(u.value)
                } else if asciiOnly && u.value > 0x7F {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// The value as JSON text: compact, or with `indent` spaces per level (one member per line,
    /// as Python's `json.dumps(indent=)`). Object members keep their order. Numbers with an exact
    /// integer are written as that integer, others in Swift's shortest round-trip form (`1e-05`,
    /// `0.1`); a non-finite number, which JSON cannot hold, is written as `null`.
    public func serialized(indent: Int? = nil, asciiOnly: Bool = false) -> String {
        var out = ""
        write(to: &out, indent: indent, level: 0, asciiOnly: asciiOnly)
        return out
    }

    private func write(to out: inout String, indent: Int?, level: Int, asciiOnly: Bool) {
        func newline(_ level: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * level) }
        }
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .number(d, i):
            if let i { out += String(i) } else if d.isFinite { out += "\(d)" } else { out += "null" }
        case let .string(s): out += Self.quoted(s, asciiOnly: asciiOnly)
        case let .array(items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "["
            for (k, v) in items.enumerated() {
                if k > 0 { out += "," }
                newline(level + 1)
                v.write(to: &out, indent: indent, level: level + 1, asciiOnly: asciiOnly)
            }
            newline(level)
            out += "]"
        case let .object(pairs):
            guard !pairs.isEmpty else { out += "{}"; return }
            out += "{"
            for (k, (key, v)) in pairs.enumerated() {
                if k > 0 { out += "," }
                newline(level + 1)
                out += Self.quoted(key, asciiOnly: asciiOnly) + (indent == nil ? ":" : ": ")
                v.write(to: &out, indent: indent, level: level + 1, asciiOnly: asciiOnly)
            }
            newline(level)
            out += "}"
        }
    }
}

/// Writes one file atomically: the bytes go to a temporary file beside the destination
/// (`.NAME.tmp-PID`, the name ``G2WWriter`` uses, so stale ones left by a killed process are
/// removed the same way), which is `fsync`ed and moved into place by ``commit()``.
///
/// Any error, ``cancel()``, or dropping the writer before ``commit()`` removes the temporary
/// file: the destination is never left partial. Without `overwrite`, an existing destination is
/// ``G2WFormatError/outputExists(path:)``, checked at creation and again atomically at the move
/// (`link(2)` fails if the file appeared meanwhile). The temporary file is registered with the
/// SIGINT/SIGTERM cleanup of ``G2WWriter/installInterruptCleanup()``; that cleanup tracks one
/// file per process, so write one file at a time.
///
/// ```swift
/// try AtomicFileWriter.write(Array(text.utf8), to: "config.json", overwrite: true)
/// ```
public final class AtomicFileWriter {
    public let destination: String
    public let temporaryPath: String
    public let overwrite: Bool
    /// Bytes written so far.
    public private(set) var count: UInt64 = 0
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    private var done = false

    /// Creates the temporary file.
    /// - Throws: ``G2WFormatError/outputExists(path:)`` if `path` exists and `overwrite` is
    ///   false; ``G2WFormatError/io(operation:path:reason:)`` if the file cannot be created.
    public init(path: String, overwrite: Bool = false) throws {
        destination = path
        self.overwrite = overwrite
        let (dir, base) = Self.split(path)
        guard !base.isEmpty else { throw G2WFormatError.io(operation: "create", path: path, reason: "the path names a directory, not a file") }
        try OutputFiles.checkDestination(path, overwrite: overwrite)
        let prefix = path.lastIndex(of: "/").map { String(path[...$0]) } ?? ""
        temporaryPath = prefix + ".\(base).tmp-\(getpid())"
        // The temporary name is per process: claim it, so two writers of one file in this
        // process cannot share (and corrupt) it.
        guard ActiveTemporaries.claim(temporaryPath) else {
            fd = -1
            done = true
            throw G2WFormatError.writerMisuse("another writer in this process is writing \(path)")
        }
        G2WWriter.removeStaleTemporaries(directory: dir, base: base)
        // Not claimed by this process, so a file by this name is left by a killed process whose
        // id this one reuses: replace it.
        do { fd = try OutputFiles.createTemporary(temporaryPath, for: path) } catch {
            fd = -1
            ActiveTemporaries.release(temporaryPath)
            done = true
            throw error
        }
        g2w_cleanup_register(temporaryPath)
        buffer.reserveCapacity(bufferLimit)
    }

    deinit { if !done { abandon() } }

    /// Writes `bytes` into `path` atomically (see the type's documentation).
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool = false) throws {
        let w = try AtomicFileWriter(path: path, overwrite: overwrite)
        try w.write(bytes)
        try w.commit()
    }

    /// Writes `text` as UTF-8 into `path` atomically.
    public static func write(_ text: String, to path: String, overwrite: Bool = false) throws {
        try write(Array(text.utf8), to: path, overwrite: overwrite)
    }

    /// Appends bytes (buffered). On error the temporary file is removed and the writer is spent.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !done else { throw G2WFormatError.writerMisuse("\(destination): write after commit() or cancel()") }
        do {
            if buffer.count + bytes.count > bufferLimit { try flush() }
            if bytes.count >= bufferLimit {
                try writeAll(bytes)
            } else {
                buffer.append(contentsOf: bytes)
            }
            count += UInt64(bytes.count)
        } catch {
            abandon()
            throw error
        }
    }

    /// Appends bytes (buffered).
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Rewrites bytes already written, at `offset` (for a header whose checksums are known only at
    /// the end). On error the temporary file is removed and the writer is spent.
    public func overwrite(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard !done else { throw G2WFormatError.writerMisuse("\(destination): overwrite after commit() or cancel()") }
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        guard offset <= count, UInt64(bytes.count) <= count - offset else {
            throw G2WFormatError.writerMisuse("\(destination): overwrite of bytes \(offset)..<\(offset + UInt64(bytes.count)), only \(count) written")
        }
        do {
            try flush()
            var written = 0
            while written < bytes.count {
                let n = pwrite(fd, base + written, bytes.count - written, off_t(offset) + off_t(written))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw G2WFormatError.io(operation: "write", path: destination, reason: errnoText())
                }
                written += n
            }
        } catch {
            abandon()
            throw error
        }
    }

    /// Flushes, `fsync`s, closes and moves the file to its destination, then `fsync`s the
    /// directory. On error the temporary file is removed and the destination is untouched.
    public func commit() throws {
        guard !done else { throw G2WFormatError.writerMisuse("\(destination): commit() after commit() or cancel()") }
        do {
            try flush()
            guard fsync(fd) == 0 else { throw G2WFormatError.io(operation: "fsync", path: destination, reason: errnoText()) }
            let closed = close(fd)
            fd = -1
            guard closed == 0 else { throw G2WFormatError.io(operation: "close", path: destination, reason: errnoText()) }
            if overwrite {
                guard rename(temporaryPath, destination) == 0 else { throw G2WFormatError.io(operation: "rename", path: destination, reason: errnoText()) }
            } else if link(temporaryPath, destination) == 0 {
                // link() fails if the destination appeared meanwhile: never replace a file silently.
                unlink(temporaryPath)
            } else if errno == EEXIST {
                throw G2WFormatError.outputExists(path: destination)
            } else {
                // Filesystems without hard links: check, then rename.
                guard access(destination, F_OK) != 0 else { throw G2WFormatError.outputExists(path: destination) }
                guard rename(temporaryPath, destination) == 0 else { throw G2WFormatError.io(operation: "rename", path: destination, reason: errnoText()) }
            }
            done = true
            g2w_cleanup_unregister()
            ActiveTemporaries.release(temporaryPath)
            let dfd = open(Self.split(destination).directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 { fsync(dfd); close(dfd) }
        } catch {
            abandon()
            throw error
        }
    }

    /// Stops writing and removes the temporary file. The destination is untouched.
    public func cancel() { if !done { abandon() } }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        try buffer.withUnsafeBytes { try writeAll($0) }
    }

    // Errors name the destination; the temporary file is an implementation detail.
    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try writeFully(fd, bytes, path: destination) }

    private func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !done {
            unlink(temporaryPath)
            g2w_cleanup_unregister()
            ActiveTemporaries.release(temporaryPath)
            done = true
        }
    }

    /// The directory (`.` when there is none, `/` for the root) and the last component.
    static func split(_ path: String) -> (directory: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }
}

/// The temporary files this process's ``AtomicFileWriter``s are writing.
private enum ActiveTemporaries {
    private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    nonisolated(unsafe) private static var paths = Set<String>()

    /// Marks `path` in use; false if it already is.
    static func claim(_ path: String) -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return paths.insert(path).inserted
    }

    static func release(_ path: String) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        paths.remove(path)
    }
}
