#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W
import G2WSupport

/// A `.g2w` file opened for reading: its header, metadata and tensor table, validated in full at
/// open, and its tensors as zero-copy views into a read-only memory map.
///
/// Opening reads only the header region (header, metadata, table: O(header)), checks its CRC-32C
/// and every offset and length against the file size with checked arithmetic, and only then maps
/// the file. Tensor data is never copied or read at open; `verify()` recomputes blob checksums
/// on request.
///
/// The mapping lives as long as this object (or any ``G2WTensor`` view taken from it).
///
/// Limitation: if another process truncates the file while it is mapped, touching a page past the
/// new end raises SIGBUS (as with any memory-mapped reader); do not modify model files in use.
public final class G2WFile: @unchecked Sendable {
    public let path: String
    public let header: G2WHeader
    public let metadata: G2WMetadata
    public let tensors: [G2WTensorInfo]
    /// Start of the read-only mapping of the whole file.
    public var baseAddress: UnsafeRawPointer { mapping.base }
    public let fileSize: UInt64
    private let mapping: ReadOnlyMapping
    private let tensorIndex: [String: Int]

    /// Opens and validates `path`. Throws ``G2WFormatError`` naming what is wrong and where.
    public convenience init(path: String) throws {
        // Never blocks on a FIFO or a device; anything but a regular file is refused, saying what it is.
        let file = try withFormatErrors { try RegularFile(path) }
        try self.init(path: path, size: file.size, read: { try Self.read(file, count: $0) }, map: { try withFormatErrors { try file.map() } })
    }

    /// Validates a `.g2w` file held in memory, exactly as ``init(path:)`` validates one on disk;
    /// the bytes are copied once into read-only, page-aligned memory the file owns (tests,
    /// fuzzers, models embedded in a program). `name` stands for the path in messages.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws {
        let mapping = try withFormatErrors { try ReadOnlyMapping.copying(bytes, name: name) }
        try self.init(path: name, size: UInt64(bytes.count), read: { count in
            guard count <= bytes.count else {
                throw G2WFormatError.truncated(section: "header region", needed: UInt64(count), actual: UInt64(bytes.count))
            }
            return Array(bytes[0..<count])
        }, map: { mapping })
    }

    /// Reads the header region with `read(count)` (the first `count` bytes), validates it, then
    /// takes the mapping of all `size` bytes from `map`.
    private init(path: String, size: UInt64, read: (Int) throws -> [UInt8], map: () throws -> ReadOnlyMapping) throws {
        self.path = path
        let head = try read(Int(min(size, G2WLayout.headerSize)))
        if head.count >= 8, Array(head[0..<8]) != G2WLayout.magic { throw G2WFormatError.badMagic(Array(head[0..<8])) }
        let h = try HeaderRegion.decodeHeader(head, fileSize: size)
        let region = try read(Int(h.dataOffset))
        let computed = HeaderRegion.headerChecksum(region)
        guard computed == h.headerChecksum else { throw G2WFormatError.headerChecksumMismatch(stored: h.headerChecksum, computed: computed) }
        let tableEnd = Int(h.tensorTableOffset + h.tensorTableSize)
        if let nz = region[tableEnd..<Int(h.dataOffset)].firstIndex(where: { $0 != 0 }) { throw G2WFormatError.nonZeroPadding(offset: UInt64(nz)) }
        metadata = try HeaderRegion.decodeMetadata(region, header: h)
        tensors = try HeaderRegion.decodeTable(region, header: h)
        header = h
        fileSize = size
        tensorIndex = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })

        // Map only after everything is validated (a file always has at least its 128-byte header).
        let mapping = try map()
        // Quantized tensors: every block scale must be finite. Only the scales regions are read
        // (1/17 of a q8_0 blob, 1/9 of a q4_0 one), so this stays cheap beside the weights.
        for (i, t) in tensors.enumerated() where t.dtype.isQuantized {
            let blocks = t.elementCount / t.dtype.blockElements
            let scales = (mapping.base + Int(t.offset) + t.dtype.scalesOffset(elements: t.elementCount)).assumingMemoryBound(to: UInt16.self)
            let bad = g2w_first_nonfinite_f16(scales, blocks)
            if bad < blocks {
                let bits = scales[bad]
                throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "the scale of block \(bad) is \(bits & 0x3FF == 0 ? "infinite" : "NaN") (binary16 0x\(String(bits, radix: 16)))")
            }
        }
        self.mapping = mapping
    }

    /// The table entry named `name`, if any.
    public func info(named name: String) -> G2WTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// A zero-copy view of the tensor named `name`, if any.
    public func tensor(named name: String) -> G2WTensor? {
        info(named: name).map { G2WTensor(info: $0, file: self) }
    }

    /// The blob bytes of `info` (a view into the mapping; no copy).
    public func bytes(of info: G2WTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: baseAddress + Int(info.offset), count: Int(info.byteCount))
    }

    /// Recomputes the CRC-32C of every blob and checks that padding between blobs is zero.
    /// Throws on the first bad tensor. `progress` is called with (tensors done, total).
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws {
        for (i, t) in tensors.enumerated() {
            let computed = g2w_crc32c(0, baseAddress + Int(t.offset), Int(t.byteCount))
            guard computed == t.checksum else {
                throw G2WFormatError.tensorChecksumMismatch(name: t.name, offset: t.offset, stored: t.checksum, computed: computed)
            }
            let end = Int(t.offset + t.byteCount)
            let next = i + 1 < tensors.count ? Int(tensors[i + 1].offset) : end
            for o in end..<next where baseAddress.load(fromByteOffset: o, as: UInt8.self) != 0 {
                throw G2WFormatError.nonZeroPadding(offset: UInt64(o))
            }
            progress?(i + 1, tensors.count)
        }
    }

    /// `count` bytes from the start of the file; fewer is a truncated header region.
    private static func read(_ file: RegularFile, count: Int) throws -> [UInt8] {
        let bytes = try withFormatErrors { try file.read(count: count, at: 0) }
        guard bytes.count == count else {
            throw G2WFormatError.truncated(section: "header region", needed: UInt64(count), actual: UInt64(bytes.count))
        }
        return bytes
    }
}

/// A zero-copy view of one tensor in a mapped ``G2WFile``. Keeps the file mapped while it lives.
public struct G2WTensor: @unchecked Sendable {
    public let info: G2WTensorInfo
    public let file: G2WFile

    /// Start of the blob in the mapping (64-byte aligned).
    public var baseAddress: UnsafeRawPointer { file.baseAddress + Int(info.offset) }
    public var bytes: UnsafeRawBufferPointer { file.bytes(of: info) }
    public var shape: [Int] { info.shape }
    public var dtype: G2WDType { info.dtype }

    /// The elements as `Float` (a view for f32 tensors; nil for other dtypes).
    public var float32s: UnsafeBufferPointer<Float>? {
        guard info.dtype == .f32 else { return nil }
        return UnsafeBufferPointer(start: baseAddress.assumingMemoryBound(to: Float.self), count: info.elementCount)
    }

    /// The elements as IEEE binary16 bit patterns (a view for f16 tensors; nil for other dtypes).
    public var float16Bits: UnsafeBufferPointer<UInt16>? {
        guard info.dtype == .f16 else { return nil }
        return UnsafeBufferPointer(start: baseAddress.assumingMemoryBound(to: UInt16.self), count: info.elementCount)
    }

    /// Copies the elements out as `Float` (f16 converted exactly, quantized types dequantized).
    /// For tests and tools, not the hot path.
    public func floats() -> [Float] {
        let n = info.elementCount, cols = info.shape.last ?? 1
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { dst in
            dtype.traits.pointee.dequantize(baseAddress, n / cols, cols, 0, n / cols, dst.baseAddress!)
        }
        return out
    }
}

/// Writes all of `bytes` to `fd` (retrying after EINTR and short writes); a failure is an I/O
/// error naming `path`, with full disks and file-size limits said in words. For the writers.
func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    guard let base = bytes.baseAddress else { return }
    var done = 0
    while done < bytes.count {
        let n = write(fd, base + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            let code = errno
            let why = code == ENOSPC ? "no space left on the device" : code == EFBIG ? "file size limit exceeded" : errnoText(code)
            throw G2WFormatError.io(operation: "write", path: path, reason: why)
        }
        done += n
    }
}

