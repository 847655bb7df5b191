#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W
import G2WSupport

/// Reading whole input files (configs, tokenizer files, prompts, texts) the same safe way in
/// every tool: never blocking on a FIFO or a device, never reading a directory, and never more
/// than a caller's bound, so a hostile path costs neither a hang nor unbounded memory. (The
/// routines are G2WSupport's `RegularFile`, shared with the tokenizer's file readers; errors are
/// ``G2WFormatError/io(operation:path:reason:)``.)
public enum G2WFileReading {
    /// Opens `path` as a regular file (see `g2w_open_regular`); the descriptor and size, or an
    /// I/O error naming the path and saying what it is instead. The caller closes the descriptor.
    public static func openRegular(_ path: String) throws -> (fd: Int32, size: UInt64) {
        let file = try withFormatErrors { try RegularFile(path) }
        return (file.takeDescriptor(), file.size)
    }

    /// The bytes of the regular file at `path`, at most `limit` of them (a larger file is an error
    /// naming the limit and `what` the file is for).
    public static func readRegularFile(_ path: String, limit: Int, what: String = "file") throws -> [UInt8] {
        try withFormatErrors { try RegularFile.read(path, limit: limit, what: what) }
    }

    /// Reads `fd` to its end, at most `limit` bytes (more is an error, found without reading
    /// further): for files whose size may change and for standard input.
    public static func readAll(_ fd: Int32, limit: Int, path: String, what: String) throws -> [UInt8] {
        try withFormatErrors { try RegularFile.readAll(fd, limit: limit, path: path, what: what) }
    }
}

/// Runs `body`, turning G2WSupport's `FileError` into ``G2WFormatError/io(operation:path:reason:)``.
func withFormatErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as FileError {
        throw G2WFormatError.io(operation: e.operation, path: e.path, reason: e.reason)
    }
}

/// The writers' shared rules for their output and temporary files (issue 17, items 6 and 7).
public enum OutputFiles {
    /// Checks the destination before anything is written: an existing destination needs
    /// `overwrite`, and even then only a regular file (or a link to one) is replaced, never a
    /// device, a directory, a FIFO or a socket.
    public static func checkDestination(_ path: String, overwrite: Bool) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { return }  // absent (or unreachable: creating it will say)
        guard overwrite else { throw G2WFormatError.outputExists(path: path) }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let what = kind == S_IFDIR ? "a directory" : kind == S_IFIFO ? "a FIFO" : kind == S_IFCHR || kind == S_IFBLK ? "a device" : "not a regular file"
            throw G2WFormatError.io(operation: "replace", path: path, reason: "it is \(what); only a regular file may be replaced")
        }
    }

    /// Creates the temporary file exclusively and never through a link: O_CREAT | O_EXCL |
    /// O_NOFOLLOW. A file or link already at that name (left by a killed process whose id this one
    /// reuses, or planted) is unlinked first: unlinking a link removes the link, not its target.
    static func createTemporary(_ temporaryPath: String, for destination: String) throws -> Int32 {
        for attempt in 0..<2 {
            let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if fd >= 0 { return fd }
            if errno == EEXIST && attempt == 0 { unlink(temporaryPath); continue }
            break
        }
        // Named by the user's output (the temporary name is an implementation detail).
        throw G2WFormatError.io(operation: "create", path: destination, reason: errnoText())
    }

    /// Whether two paths name the same file (same device and inode).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
