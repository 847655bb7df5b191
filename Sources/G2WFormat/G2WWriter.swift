#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CG2W
import G2WSupport

/// Writes a `.g2w` file by streaming tensor data, atomically.
///
/// The writer lays out the whole file from the tensor descriptors up front, writes it through an
/// ``AtomicFileWriter`` (a temporary file beside the destination, `.NAME.tmp-PID`), computes each
/// blob's CRC-32C as the bytes stream through, then patches the table and header checksums and
/// commits (`fsync`, then the move into place). Any error, or dropping the writer before
/// ``finish()``, removes the temporary file: no partial output remains under the destination name.
/// The tools also install signal handlers (``installInterruptCleanup()``) so SIGINT/SIGTERM remove
/// it too.
///
/// ```swift
/// let writer = try G2WWriter(path: "out.g2w", metadata: meta, tensors: descriptors)
/// for blob in blobs { try writer.write(blob) }   // in descriptor order, any chunking
/// try writer.finish()
/// ```
public final class G2WWriter {
    public let destination: String
    public var temporaryPath: String { file.temporaryPath }
    public let overwrite: Bool
    private(set) var infos: [G2WTensorInfo]
    private let metadataBytes: [UInt8]
    private var header: G2WHeader
    private let file: AtomicFileWriter
    private var position: UInt64 { file.count }  // bytes written so far
    private var current = 0                // index of the tensor being written
    private var currentWritten: UInt64 = 0
    private var currentCRC: UInt32 = 0
    private var finished = false

    /// Total size of the file being written.
    public var fileSize: UInt64 { header.fileSize }

    /// Creates the temporary file and writes the header region (checksums patched at the end).
    /// - Parameter overwrite: replace an existing destination; otherwise an existing file is an error
    ///   (checked now and again, atomically, when the file is moved into place).
    public init(path: String, metadata: G2WMetadata, tensors: [G2WTensorDescriptor], overwrite: Bool = false) throws {
        destination = path
        self.overwrite = overwrite
        try OutputFiles.checkDestination(path, overwrite: overwrite)
        metadataBytes = try HeaderRegion.encodeMetadata(metadata)

        // Validate descriptors and lay out the data section.
        var names = Set<String>()
        var infos: [G2WTensorInfo] = []
        for (i, t) in tensors.enumerated() {
            let n = t.name.utf8.count
            guard n >= 1, n <= G2WLayout.maxNameLength, !t.name.utf8.contains(0) else {
                throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "name must be 1...255 bytes without NUL")
            }
            guard names.insert(t.name).inserted else { throw G2WFormatError.duplicateName(section: "tensor table", name: t.name) }
            guard t.shape.count >= 1, t.shape.count <= G2WLayout.maxRank, t.shape.allSatisfy({ $0 >= 1 }) else {
                throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "shape \(t.shape) must have rank 1...4 and dimensions >= 1")
            }
            var elements: UInt64 = 1
            for d in t.shape {
                guard let p = elements.multiplyingChecked(UInt64(d)) else {
                    throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "shape \(t.shape) has more than 2^64 - 1 elements, over the limit of \(G2WLayout.maxElementCount) (2^60 - 1)")
                }
                elements = p
            }
            // Same bound as the reader: byte lengths must fit comfortably in Int.
            guard elements <= G2WLayout.maxElementCount, let bytes = t.dtype.byteCount(elements: elements) else {
                throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "shape \(t.shape) has \(elements) elements, over the limit of \(G2WLayout.maxElementCount) (2^60 - 1)")
            }
            guard t.shape.last! % t.dtype.blockElements == 0 else {
                throw G2WFormatError.invalidTensor(name: t.name, index: i, reason: "\(t.dtype) needs the last dimension to be a multiple of \(t.dtype.blockElements), is \(t.shape.last!)")
            }
            infos.append(G2WTensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, offset: 0, byteCount: bytes, checksum: 0))
        }
        guard UInt64(tensors.count) <= G2WLayout.maxTensorCount else {
            throw G2WFormatError.limitExceeded(section: "tensor table", what: "tensor count", value: UInt64(tensors.count), limit: G2WLayout.maxTensorCount)
        }
        guard UInt64(metadata.count) <= G2WLayout.maxMetadataCount else {
            throw G2WFormatError.limitExceeded(section: "metadata", what: "entry count", value: UInt64(metadata.count), limit: G2WLayout.maxMetadataCount)
        }
        let tableSize = UInt64(HeaderRegion.encodeTable(infos).count)
        let metadataOffset = G2WLayout.headerSize
        let tableOffset = metadataOffset + UInt64(metadataBytes.count)
        guard let dataOffset = alignUp(tableOffset + tableSize, G2WLayout.alignment), dataOffset <= G2WLayout.maxHeaderRegion else {
            throw G2WFormatError.limitExceeded(section: "header", what: "header region", value: tableOffset + tableSize, limit: G2WLayout.maxHeaderRegion)
        }
        var offset = dataOffset
        for i in infos.indices {
            infos[i].offset = offset
            guard let end = offset.addingChecked(infos[i].byteCount), let next = alignUp(end, G2WLayout.alignment) else {
                throw G2WFormatError.invalidTensor(name: infos[i].name, index: i, reason: "the file would exceed 2^64 bytes")
            }
            offset = i == infos.count - 1 ? end : next
        }
        self.infos = infos
        header = G2WHeader(versionMajor: G2WLayout.versionMajor, versionMinor: infos.map { $0.dtype.minimumMinorVersion }.max() ?? 0, alignment: G2WLayout.alignment,
                           headerSize: G2WLayout.headerSize, metadataOffset: metadataOffset, metadataSize: UInt64(metadataBytes.count),
                           metadataCount: UInt64(metadata.count), tensorTableOffset: tableOffset, tensorTableSize: tableSize,
                           tensorCount: UInt64(infos.count), dataOffset: dataOffset, dataSize: offset - dataOffset,
                           fileSize: offset, headerChecksum: 0, flags: 0)

        // The temporary file in the destination's directory, so the final rename stays on one filesystem.
        file = try AtomicFileWriter(path: path, overwrite: overwrite)
        do {
            try file.write(region(checksums: false))
            try skipToCurrentTensor()
        } catch {
            abandon()
            throw error
        }
    }

    deinit { if !finished { abandon() } }

    /// Installs SIGINT/SIGTERM/SIGHUP handlers that remove the temporary file of the writer in
    /// progress and exit with 128 + signal. For command-line tools; call once at start.
    public static func installInterruptCleanup() { g2w_cleanup_install_handlers() }

    /// The tensor whose bytes the next ``write(_:)`` continues, or nil when all are written.
    public var currentTensor: G2WTensorInfo? { current < infos.count ? infos[current] : nil }

    /// Appends bytes to the current tensor, moving to the next when one is complete. Chunks may
    /// span tensor boundaries.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        try abandoningOnError {
            while !rest.isEmpty {
                guard current < infos.count else { throw G2WFormatError.writerMisuse("\(rest.count) bytes written after the last tensor") }
                let need = Int(infos[current].byteCount - currentWritten)
                let take = min(need, rest.count)
                let chunk = UnsafeRawBufferPointer(rebasing: rest[0..<take])
                currentCRC = g2w_crc32c(currentCRC, chunk.baseAddress!, take)
                try file.write(chunk)
                currentWritten += UInt64(take)
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                if currentWritten == infos[current].byteCount {
                    infos[current].checksum = currentCRC
                    current += 1
                    currentWritten = 0
                    currentCRC = 0
                    try skipToCurrentTensor()
                }
            }
        }
    }

    /// Convenience for arrays of `Float` / `UInt16` / bytes.
    public func write<T>(_ array: [T]) throws {
        try array.withUnsafeBytes { try write($0) }
    }

    /// Patches checksums, flushes, `fsync`s and moves the file to its destination.
    public func finish() throws {
        guard !finished else { throw G2WFormatError.writerMisuse("finish() called twice") }
        try abandoningOnError {
            guard current == infos.count else {
                throw G2WFormatError.writerMisuse("tensor '\(infos[current].name)' has \(currentWritten) of \(infos[current].byteCount) bytes")
            }
            let region = region(checksums: true)
            try region.withUnsafeBytes { try file.overwrite($0, at: 0) }
            try file.commit()
            finished = true
        }
    }

    /// Stops writing and removes the temporary file. The destination is untouched.
    public func cancel() { abandon() }

    // MARK: Private

    private func region(checksums: Bool) -> [UInt8] {
        var h = header
        var region = HeaderRegion.encodeHeader(h)
        region += metadataBytes
        region += HeaderRegion.encodeTable(infos)
        region += [UInt8](repeating: 0, count: Int(h.dataOffset) - region.count)
        if checksums {
            h.headerChecksum = HeaderRegion.headerChecksum(region)
            let head = HeaderRegion.encodeHeader(h)
            region.replaceSubrange(0..<head.count, with: head)
        }
        return region
    }

    private func skipToCurrentTensor() throws {
        guard current < infos.count else { return }
        let pad = Int(infos[current].offset - position)
        if pad > 0 { try file.write([UInt8](repeating: 0, count: pad)) }
    }

    /// Runs `body`; any error removes the temporary file (the writer is spent) and is rethrown as
    /// a `G2WFormatError`.
    private func abandoningOnError(_ body: () throws -> Void) throws {
        do { try body() } catch let e as G2WFormatError {
            abandon()
            throw e
        } catch {
            abandon()
            throw G2WFormatError.writerMisuse("\(error)")
        }
    }

    private func abandon() {
        file.cancel()
        finished = true
    }

    /// Removes `.NAME.tmp-PID` files left by writers that were killed (SIGKILL cannot be caught)
    /// and whose process no longer exists.
    static func removeStaleTemporaries(directory: String, base: String) {
        guard let d = opendir(directory) else { return }
        defer { closedir(d) }
        let prefix = ".\(base).tmp-"
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
        }
    }

}
