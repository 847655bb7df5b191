// Helpers shared by the fuzz targets: a scratch file for path-based readers, CRC-32C (to fix up
// the header checksum of mutated .g2w files, so mutations reach the layers behind it), and checks
// that crash loudly so libFuzzer reports them.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFuzzDriver

/// Runs libFuzzer with the process's arguments and `callback` as LLVMFuzzerTestOneInput; does not
/// return. Each target's `@main` calls this (SwiftPM renames an executable's `main`, so libFuzzer's
/// own `main` cannot be used).
public func runLibFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// Crashes with `message` when `condition` is false (in every build configuration).
@inline(never)
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz property violated: \(message())", file: file, line: line) }
}

private let verbose = getenv("G2W_FUZZ_VERBOSE") != nil

/// Prints what happened to an input when G2W_FUZZ_VERBOSE is set (for looking at seeds and crashes:
/// `G2W_FUZZ_VERBOSE=1 fuzz-g2w FILE...`).
public func fuzzNote(_ message: @autoclosure () -> String) {
    if verbose { fputs("note: \(message())\n", stderr) }
}

/// The fuzz input as bytes (libFuzzer passes a pointer that may be nil for an empty input).
public func inputBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// One file per process, reused for every input: `BASE/g2w-fuzz-PID/NAME`, where BASE is
/// `$G2W_FUZZ_SCRATCH` if set, else /dev/shm (tmpfs, so writing it costs a memcpy), else `$TMPDIR`
/// or /tmp. Removed at a normal exit (run.sh also removes its scratch directory after a crash).
public final class ScratchFile: @unchecked Sendable {
    public let directory: String
    public let path: String

    public init(name: String) {
        var base = getenv("G2W_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/dev/shm"
        var st = stat()
        if stat(base, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
            base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        }
        directory = "\(base)/g2w-fuzz-\(getpid())"
        path = "\(directory)/\(name)"
        mkdir(directory, 0o700)
        ScratchFile.registerCleanup(directory: directory, path: path)
    }

    /// Replaces the file's contents with `bytes`.
    public func write(_ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("fuzz harness: cannot create \(path): errno \(errno)") }
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { fatalError("fuzz harness: cannot write \(path): errno \(errno)") }
                done += n
            }
        }
        close(fd)
    }

    nonisolated(unsafe) private static var toRemove: [String] = []
    private static func registerCleanup(directory: String, path: String) {
        if toRemove.isEmpty {
            atexit {
                for p in ScratchFile.toRemove { unlink(p) }
                if let d = ScratchFile.toRemove.first { rmdir(String(d[..<d.lastIndex(of: "/")!])) }
            }
        }
        toRemove.append(path)
    }
}

/// Whether `needle` occurs in `haystack` as a run of bytes (String.contains compares Characters, so
/// "<|endoftext|>" followed by a combining mark would not count).
public func containsBytes(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty else { return true }
    guard haystack.count >= needle.count else { return false }
    for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
        if haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}

// MARK: - CRC-32C (Castagnoli), as in spec/g2w.md

private let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
}

/// CRC-32C of `bytes`.
public func crc32c<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
    var c: UInt32 = 0xFFFF_FFFF
    crcTable.withUnsafeBufferPointer { t in
        for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return ~c
}

// MARK: - Little-endian access

public func readLE<T: FixedWidthInteger & UnsignedInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type) -> T? {
    let n = MemoryLayout<T>.size
    guard offset >= 0, offset + n <= bytes.count else { return nil }
    var v: T = 0
    for i in 0..<n { v |= T(bytes[offset + i]) << (8 * i) }
    return v
}

public func writeLE<T: FixedWidthInteger & UnsignedInteger>(_ bytes: inout [UInt8], _ offset: Int, _ value: T) {
    let n = MemoryLayout<T>.size
    guard offset >= 0, offset + n <= bytes.count else { return }
    for i in 0..<n { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
}

// MARK: - .g2w fix-ups

/// Header field offsets (spec/g2w.md, "Header").
public enum G2WHeaderField {
    public static let dataOffset = 72, dataSize = 80, fileSize = 88, checksum = 96
}

/// Rewrites the header CRC-32C of a (mutated) `.g2w` image so that the reader gets past the
/// checksum to the metadata and tensor table. Returns false when the header's `data_offset`
/// does not lie inside the image (nothing to fix).
@discardableResult
public func fixG2WHeaderChecksum(_ bytes: inout [UInt8]) -> Bool {
    guard bytes.count >= 128, let dataOffset = readLE(bytes, G2WHeaderField.dataOffset, as: UInt64.self),
          dataOffset >= 128, dataOffset <= UInt64(bytes.count) else { return false }
    writeLE(&bytes, G2WHeaderField.checksum, UInt32(0))
    let crc = crc32c(bytes[0..<Int(dataOffset)])
    writeLE(&bytes, G2WHeaderField.checksum, crc)
    return true
}

/// Sets `file_size` and `data_size` to agree with the image's length (after a mutation that
/// grew or shrank it), then fixes the checksum.
public func fixG2WSizes(_ bytes: inout [UInt8]) {
    guard bytes.count >= 128 else { return }
    let size = UInt64(bytes.count)
    writeLE(&bytes, G2WHeaderField.fileSize, size)
    if let dataOffset = readLE(bytes, G2WHeaderField.dataOffset, as: UInt64.self), dataOffset <= size {
        writeLE(&bytes, G2WHeaderField.dataSize, size - dataOffset)
    }
    fixG2WHeaderChecksum(&bytes)
}
