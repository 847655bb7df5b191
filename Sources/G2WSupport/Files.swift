#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W

// Reading input files the one safe way in every reader: never blocking on a FIFO or a device,
// never reading a directory, never more than a bound, and mapping a whole file read-only.

/// A system call that failed on a path: what was done, the path as the user gave it, and why.
/// Each layer turns it into its own error type.
package struct FileError: Error {
    package let operation: String
    package let path: String
    package let reason: String
}

/// The text of `errno` (or of `code`).
package func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// A regular file opened read-only (see `g2w_open_regular`): closed when released.
package final class RegularFile {
    package let path: String
    package let descriptor: Int32
    /// The size at open.
    package let size: UInt64
    private var owned = true

    /// Opens `path` without blocking; anything but a regular file is refused, saying what it is.
    package init(_ path: String) throws {
        var size: UInt64 = 0
        var type: UInt32 = 0
        let fd = g2w_open_regular(path, &size, &type)
        if fd == -2 { throw FileError(operation: "open", path: path, reason: "\(Self.kind(type)), not a regular file") }
        guard fd >= 0 else { throw FileError(operation: "open", path: path, reason: errnoText()) }
        self.path = path
        descriptor = fd
        self.size = size
    }

    deinit { if owned { close(descriptor) } }

    /// Hands the descriptor to the caller, who closes it (this object no longer will).
    package func takeDescriptor() -> Int32 {
        owned = false
        return descriptor
    }

    /// What a path that is not a regular file is, in words (`g2w_open_regular`'s type codes).
    static func kind(_ type: UInt32) -> String {
        switch type {
        case 1: return "a directory"
        case 2: return "a FIFO"
        case 3: return "a device"
        case 4: return "a socket"
        default: return "not a regular file"
        }
    }

    /// Up to `count` bytes at `offset` (fewer only at the end of the file).
    package func read(count: Int, at offset: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "read", path: path, reason: errnoText())
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(count - done)
        return out
    }

    /// The whole file, at most `limit` bytes (a larger one is an error naming the limit and `what`
    /// the file is for, found before reading; one that grows past it while read, too).
    package func readAll(limit: Int, what: String) throws -> [UInt8] {
        guard size <= UInt64(limit) else {
            throw FileError(operation: "read", path: path, reason: "the \(what) is \(size) bytes, more than the \(limit)-byte limit")
        }
        return try Self.readAll(descriptor, limit: limit, path: path, what: what)
    }

    /// The bytes of the regular file at `path`, at most `limit` of them.
    package static func read(_ path: String, limit: Int, what: String) throws -> [UInt8] {
        try RegularFile(path).readAll(limit: limit, what: what)
    }

    /// Reads `fd` to its end, at most `limit` bytes (more is an error, found without reading
    /// further): for standard input and files whose size is not known.
    package static func readAll(_ fd: Int32, limit: Int, path: String, what: String) throws -> [UInt8] {
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "read", path: path, reason: errnoText())
            }
            if n == 0 { return out }
            guard out.count + n <= limit else {
                throw FileError(operation: "read", path: path, reason: "the \(what) is longer than the \(limit)-byte limit")
            }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    /// Maps the whole file read-only (it must not be empty). The mapping outlives this object.
    ///
    /// On Linux a file of 8 MB or more is mapped at a 2 MB boundary and marked MADV_HUGEPAGE: a
    /// file that is not in the page cache yet is then read into 2 MB folios and mapped with 2 MB
    /// entries (where the kernel can: measured on 6.18/ext4, whose page cache otherwise keeps such
    /// a file in 4 KB pages for good), so streaming the weights takes one TLB entry per 2 MB instead
    /// of one per 4 KB (GPT-2 124M q8_0, interleaved runs: tg128 274 -> 316 tok/s, and the mapped
    /// file's plain read faster by about as much). Elsewhere the hint does nothing.
    package func map() throws -> ReadOnlyMapping {
        guard size > 0, size <= UInt64(Int.max) else {
            throw FileError(operation: "mmap", path: path, reason: size == 0 ? "the file is empty" : "the file is too large to map")
        }
        let n = Int(size)
        #if os(Linux)
        let huge = 2 << 20
        if n >= 4 * huge, let p = Self.mapAligned(descriptor, n, huge) {
            return ReadOnlyMapping(base: UnsafeRawPointer(p), size: n)
        }
        #endif
        guard let p = mmap(nil, n, PROT_READ, MAP_SHARED, descriptor, 0), p != MAP_FAILED else {
            throw FileError(operation: "mmap", path: path, reason: errnoText())
        }
        return ReadOnlyMapping(base: UnsafeRawPointer(p), size: n)
    }

    #if os(Linux)
    /// `n` bytes of the file mapped read-only at a multiple of `alignment` (a reservation of
    /// n + alignment bytes, the file mapped over it, the slack released), marked MADV_HUGEPAGE;
    /// nil if any step fails (nothing is left mapped then).
    private static func mapAligned(_ fd: Int32, _ n: Int, _ alignment: Int) -> UnsafeMutableRawPointer? {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0, let r = mmap(nil, n + alignment, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), r != MAP_FAILED else { return nil }
        let start = Int(bitPattern: r), aligned = (start + alignment - 1) / alignment * alignment
        guard let p = mmap(UnsafeMutableRawPointer(bitPattern: aligned), n, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0), p != MAP_FAILED else {
            munmap(r, n + alignment)
            return nil
        }
        let end = (aligned + n + page - 1) / page * page, reservedEnd = start + n + alignment
        if aligned > start { munmap(r, aligned - start) }
        if reservedEnd > end { munmap(UnsafeMutableRawPointer(bitPattern: end), reservedEnd - end) }
        _ = madvise(p, n, MADV_HUGEPAGE)
        return p
    }
    #endif
}

/// read(2) (a name the methods above shadow).
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }

/// A read-only, shared memory map of a whole file, unmapped when released.
///
/// If another process truncates the file while it is mapped, touching a page past the new end
/// raises SIGBUS (as with any memory-mapped reader).
package final class ReadOnlyMapping: @unchecked Sendable {
    // @unchecked: immutable after init; the mapping is only read.
    package let base: UnsafeRawPointer
    package let size: Int

    fileprivate init(base: UnsafeRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    /// Read-only anonymous memory holding a copy of `bytes` (page-aligned, like a file mapping):
    /// files held in memory (tests, fuzzers, models embedded in a program) go through the same
    /// code as mapped files.
    package static func copying(_ bytes: [UInt8], name: String) throws -> ReadOnlyMapping {
        let size = max(bytes.count, 1)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw FileError(operation: "mmap", path: name, reason: errnoText())
        }
        bytes.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        _ = mprotect(p, size, PROT_READ)
        return ReadOnlyMapping(base: UnsafeRawPointer(p), size: size)
    }

    /// The bytes of the mapping.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Tells the kernel the pages wholly inside `range` are not needed now (they are read from the
    /// file again if touched), so streaming through a large file does not grow the resident set.
    package func release(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = min(range.upperBound, size) / page * page
        if end > start { madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED) }
    }
}
