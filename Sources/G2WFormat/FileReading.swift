#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W

/// Reading whole input files (configs, tokenizer files, prompts, texts) the same safe way in
/// every tool: never blocking on a FIFO or a device, never reading a directory, and never more
/// than a caller's bound, so a hostile path costs neither a hang nor unbounded memory.
public enum G2WFileReading {
    /// What a path that is not a regular file is, in words.
    static func kind(_ type: UInt32) -> String {
        switch type {
        case 1: return "a directory"
        case 2: return "a FIFO"
        case 3: return "a device"
        case 4: return "a socket"
        default: return "not a regular file"
        }
    }

    /// Opens `path` as a regular file (see `g2w_open_regular`); the descriptor and size, or an
    /// I/O error naming the path and saying what it is instead.
    public static func openRegular(_ path: String) throws -> (fd: Int32, size: UInt64) {
        var size: UInt64 = 0
        var type: UInt32 = 0
        let fd = g2w_open_regular(path, &size, &type)
        if fd == -2 { throw G2WFormatError.io(operation: "open", path: path, reason: "\(kind(type)), not a regular file") }
        guard fd >= 0 else { throw G2WFormatError.io(operation: "open", path: path, reason: errnoText()) }
        return (fd, size)
    }

    /// The bytes of the regular file at `path`, at most `limit` of them (a larger file is an error
    /// naming the limit and `what` the file is for).
    public static func readRegularFile(_ path: String, limit: Int, what: String = "file") throws -> [UInt8] {
        let (fd, size) = try openRegular(path)
        defer { close(fd) }
        guard size <= UInt64(limit) else {
            throw G2WFormatError.io(operation: "read", path: path, reason: "the \(what) is \(size) bytes, more than the \(limit)-byte limit")
        }
        return try readAll(fd, limit: limit, path: path, what: what)
    }

    /// Reads `fd` to its end, at most `limit` bytes (more is an error, found without reading
    /// further): for files whose size may change and for standard input.
    public static func readAll(_ fd: Int32, limit: Int, path: String, what: String) throws -> [UInt8] {
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw G2WFormatError.io(operation: "read", path: path, reason: errnoText())
            }
            if n == 0 { return out }
            guard out.count + n <= limit else {
                throw G2WFormatError.io(operation: "read", path: path, reason: "the \(what) is longer than the \(limit)-byte limit")
            }
            out.append(contentsOf: chunk[0..<n])
        }
    }
}
