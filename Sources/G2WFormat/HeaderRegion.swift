import CG2W

/// The parsed fixed header (spec/g2w.md, "Header").
public struct G2WHeader: Sendable, Equatable {
    public var versionMajor: UInt16
    public var versionMinor: UInt16
    public var alignment: UInt64
    public var headerSize: UInt64
    public var metadataOffset: UInt64
    public var metadataSize: UInt64
    public var metadataCount: UInt64
    public var tensorTableOffset: UInt64
    public var tensorTableSize: UInt64
    public var tensorCount: UInt64
    public var dataOffset: UInt64
    public var dataSize: UInt64
    public var fileSize: UInt64
    public var headerChecksum: UInt32
    public var flags: UInt32
}

/// Encoding and decoding of the header region: header, metadata and tensor table.
enum HeaderRegion {
    // MARK: Encoding

    static func encodeMetadata(_ metadata: G2WMetadata) throws -> [UInt8] {
        var w = ByteWriter()
        for (key, value) in metadata {
            guard G2WMetadata.isValidKey(key) else {
                throw G2WFormatError.invalidField(section: "metadata", field: "key", offset: 0, reason: "'\(escapedForDisplay(key))' is not 1...255 bytes of [A-Za-z0-9._-]")
            }
            w.u16(UInt16(key.utf8.count))
            w.append(key.utf8)
            w.u16(value.typeCode)
            var v = ByteWriter()
            switch value {
            case let .uint(x): v.u64(x)
            case let .int(x): v.u64(UInt64(bitPattern: x))
            case let .float(x): v.u64(x.bitPattern)
            case let .bool(x): v.u8(x ? 1 : 0)
            case let .string(s): v.append(s.utf8)
            case let .bytes(b): v.append(b)
            case let .stringArray(a):
                v.u64(UInt64(a.count))
                for e in a.utf8Elements {
                    guard e.count <= Int(UInt32.max) else {
                        throw G2WFormatError.invalidField(section: "metadata", field: "'\(key)' element", offset: 0, reason: "\(e.count) bytes is over the 4 GiB element limit")
                    }
                    v.u32(UInt32(e.count))
                    v.append(e)
                }
            case let .unknown(_, b): v.append(b)
            }
            w.u64(UInt64(v.bytes.count))
            w.append(v.bytes)
        }
        return w.bytes
    }

    static func encodeTable(_ tensors: [G2WTensorInfo]) -> [UInt8] {
        var w = ByteWriter()
        for t in tensors {
            w.u16(UInt16(t.name.utf8.count))
            w.u8(t.dtype.rawValue)
            w.u8(UInt8(t.shape.count))
            w.u32(t.checksum)
            for i in 0..<G2WLayout.maxRank { w.u64(i < t.shape.count ? UInt64(t.shape[i]) : 0) }
            w.u64(t.offset)
            w.u64(t.byteCount)
            w.append(t.name.utf8)
        }
        return w.bytes
    }

    static func encodeHeader(_ h: G2WHeader) -> [UInt8] {
        var w = ByteWriter()
        w.append(G2WLayout.magic)
        w.u16(h.versionMajor)
        w.u16(h.versionMinor)
        w.u32(G2WLayout.byteOrderMark)
        w.u32(UInt32(h.alignment))
        w.u32(UInt32(h.headerSize))
        w.u64(h.metadataOffset)
        w.u64(h.metadataSize)
        w.u64(h.metadataCount)
        w.u64(h.tensorTableOffset)
        w.u64(h.tensorTableSize)
        w.u64(h.tensorCount)
        w.u64(h.dataOffset)
        w.u64(h.dataSize)
        w.u64(h.fileSize)
        w.u32(h.headerChecksum)
        w.u32(h.flags)
        w.zeros(Int(G2WLayout.headerSize) - w.bytes.count)
        return w.bytes
    }

    /// CRC-32C of the header region with the checksum field taken as zero.
    static func headerChecksum(_ region: [UInt8]) -> UInt32 {
        region.withUnsafeBytes { raw -> UInt32 in
            let at = G2WLayout.headerCRCOffset
            var crc = g2w_crc32c(0, raw.baseAddress!, at)
            var zero: UInt32 = 0
            crc = g2w_crc32c(crc, &zero, 4)
            return g2w_crc32c(crc, raw.baseAddress! + at + 4, raw.count - at - 4)
        }
    }

    // MARK: Decoding

    /// Parses and validates the fixed header against the file size.
    static func decodeHeader(_ bytes: [UInt8], fileSize: UInt64) throws -> G2WHeader {
        guard fileSize >= G2WLayout.headerSize, bytes.count >= Int(G2WLayout.headerSize) else {
            if bytes.count >= 8, Array(bytes[0..<8]) != G2WLayout.magic { throw G2WFormatError.badMagic(Array(bytes[0..<8])) }
            throw G2WFormatError.truncated(section: "header", needed: G2WLayout.headerSize, actual: fileSize)
        }
        var r = ByteReader(bytes, range: 0..<Int(G2WLayout.headerSize), section: "header")
        let magic = Array(try r.take(8, "magic"))
        guard magic == G2WLayout.magic else { throw G2WFormatError.badMagic(magic) }
        let major = try r.u16("version_major")
        let minor = try r.u16("version_minor")
        let bom = try r.u32("byte_order_mark")
        guard bom == G2WLayout.byteOrderMark else { throw G2WFormatError.wrongByteOrder(found: bom) }
        guard major == G2WLayout.versionMajor else { throw G2WFormatError.unsupportedVersion(major: major, minor: minor) }
        var h = G2WHeader(versionMajor: major, versionMinor: minor, alignment: 0, headerSize: 0, metadataOffset: 0, metadataSize: 0,
                          metadataCount: 0, tensorTableOffset: 0, tensorTableSize: 0, tensorCount: 0, dataOffset: 0,
                          dataSize: 0, fileSize: 0, headerChecksum: 0, flags: 0)
        h.alignment = UInt64(try r.u32("alignment"))
        h.headerSize = UInt64(try r.u32("header_size"))
        h.metadataOffset = try r.u64("metadata_offset")
        h.metadataSize = try r.u64("metadata_size")
        h.metadataCount = try r.u64("metadata_count")
        h.tensorTableOffset = try r.u64("tensor_table_offset")
        h.tensorTableSize = try r.u64("tensor_table_size")
        h.tensorCount = try r.u64("tensor_count")
        h.dataOffset = try r.u64("data_offset")
        h.dataSize = try r.u64("data_size")
        h.fileSize = try r.u64("file_size")
        h.headerChecksum = try r.u32("header_crc32c")
        h.flags = try r.u32("flags")

        func bad(_ field: String, _ offset: UInt64, _ reason: String) -> G2WFormatError {
            .invalidField(section: "header", field: field, offset: offset, reason: reason)
        }
        guard h.alignment == G2WLayout.alignment else { throw bad("alignment", 16, "is \(h.alignment), version 1 requires 64") }
        guard h.headerSize >= G2WLayout.headerSize, h.headerSize % 8 == 0 else {
            throw bad("header_size", 20, "is \(h.headerSize), must be a multiple of 8 and at least 128")
        }
        // The file's own size first: a truncated file is reported as such, not as a bad offset.
        if h.fileSize != fileSize {
            if fileSize < h.fileSize { throw G2WFormatError.truncated(section: "file (header's file_size)", needed: h.fileSize, actual: fileSize) }
            throw bad("file_size", 88, "is \(h.fileSize) but the file has \(fileSize) bytes (trailing data)")
        }
        guard h.metadataOffset == h.headerSize else {
            throw bad("metadata_offset", 24, "is \(h.metadataOffset), must equal header_size \(h.headerSize)")
        }
        guard let tableOffset = h.metadataOffset.addingChecked(h.metadataSize), h.tensorTableOffset == tableOffset else {
            throw bad("tensor_table_offset", 48, "is \(h.tensorTableOffset), must equal metadata_offset + metadata_size")
        }
        guard let tableEnd = h.tensorTableOffset.addingChecked(h.tensorTableSize),
              let dataOffset = alignUp(tableEnd, G2WLayout.alignment), h.dataOffset == dataOffset else {
            throw bad("data_offset", 72, "is \(h.dataOffset), must be tensor_table_offset + tensor_table_size rounded up to 64")
        }
        guard h.dataOffset <= G2WLayout.maxHeaderRegion else {
            throw G2WFormatError.limitExceeded(section: "header", what: "header region (data_offset)", value: h.dataOffset, limit: G2WLayout.maxHeaderRegion)
        }
        guard h.dataOffset <= fileSize else { throw G2WFormatError.truncated(section: "header region", needed: h.dataOffset, actual: fileSize) }
        guard h.dataSize == fileSize - h.dataOffset else {
            throw bad("data_size", 80, "is \(h.dataSize), must be file_size - data_offset = \(fileSize - h.dataOffset)")
        }
        guard h.tensorCount <= G2WLayout.maxTensorCount else {
            throw G2WFormatError.limitExceeded(section: "header", what: "tensor_count", value: h.tensorCount, limit: G2WLayout.maxTensorCount)
        }
        guard h.metadataCount <= G2WLayout.maxMetadataCount else {
            throw G2WFormatError.limitExceeded(section: "header", what: "metadata_count", value: h.metadataCount, limit: G2WLayout.maxMetadataCount)
        }
        return h
    }

    static func decodeMetadata(_ region: [UInt8], header h: G2WHeader) throws -> G2WMetadata {
        var r = ByteReader(region, range: Int(h.metadataOffset)..<Int(h.tensorTableOffset), section: "metadata")
        var metadata = G2WMetadata()
        for i in 0..<Int(h.metadataCount) {
            let entryStart = r.fileOffset
            let keyLength = Int(try r.u16("entry \(i) key_length"))
            let keyBytes = Array(try r.take(keyLength, "entry \(i) key"))
            guard let key = String(validating: keyBytes, as: UTF8.self), G2WMetadata.isValidKey(key) else {
                throw G2WFormatError.invalidField(section: "metadata", field: "entry \(i) key", offset: entryStart + 2,
                                    reason: "must be 1...255 bytes of [A-Za-z0-9._-]")
            }
            let type = try r.u16("'\(key)' type")
            let length64 = try r.u64("'\(key)' value_length")
            guard length64 <= UInt64(r.remaining) else {
                throw G2WFormatError.invalidField(section: "metadata", field: "'\(key)' value_length", offset: r.fileOffset - 8,
                                    reason: "is \(length64) but only \(r.remaining) bytes remain in the section")
            }
            let valueOffset = r.fileOffset
            let raw = try r.take(Int(length64), "'\(key)' value")
            let value = try decodeValue(type: type, raw: raw, key: key, offset: valueOffset)
            guard metadata[key] == nil else { throw G2WFormatError.duplicateName(section: "metadata", name: key) }
            metadata[key] = value
        }
        guard r.remaining == 0 else {
            throw G2WFormatError.invalidField(section: "metadata", field: "metadata_size", offset: r.fileOffset,
                                reason: "\(r.remaining) bytes left after \(h.metadataCount) entries")
        }
        return metadata
    }

    private static func decodeValue(type: UInt16, raw: ArraySlice<UInt8>, key: String, offset: UInt64) throws -> G2WMetadataValue {
        func bad(_ reason: String) -> G2WFormatError {
            .invalidField(section: "metadata", field: "'\(key)' value", offset: offset, reason: reason)
        }
        if type == 7 { return try decodeStringArray(raw, bad: bad, key: key, offset: offset) }
        let bytes = Array(raw)
        func fixed(_ n: Int) throws -> UInt64 {
            guard bytes.count == n else { throw bad("type \(type) needs \(n) bytes, has \(bytes.count)") }
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(bytes[i]) << (8 * UInt64(i)) }
            return v
        }
        switch type {
        case 1: return .uint(try fixed(8))
        case 2: return .int(Int64(bitPattern: try fixed(8)))
        case 3: return .float(Double(bitPattern: try fixed(8)))
        case 4:
            let v = try fixed(1)
            guard v <= 1 else { throw bad("bool must be 0 or 1, is \(v)") }
            return .bool(v == 1)
        case 5:
            guard let s = String(validating: bytes, as: UTF8.self) else { throw bad("string is not valid UTF-8") }
            return .string(s)
        case 6: return .bytes(bytes)
        default:
            return .unknown(type: type, bytes: bytes)
        }
    }

    /// A `string[]` value (type 7), read straight from the region: one copy of the elements' bytes.
    private static func decodeStringArray(_ raw: ArraySlice<UInt8>, bad: (String) -> G2WFormatError, key: String, offset: UInt64) throws -> G2WMetadataValue {
        // Hot at open (a tokenizer is 100,000 strings): one copy of the bytes, one validation pass.
        return try raw.withUnsafeBufferPointer { buf throws -> G2WMetadataValue in
            guard buf.count >= 8 else { throw bad("string[] needs an 8-byte count, has \(buf.count) bytes") }
            let base = UnsafeRawPointer(buf.baseAddress!)
            let count = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
            // Each element takes at least 4 bytes: reject absurd counts before allocating.
            guard count <= UInt64((buf.count - 8) / 4) else { throw bad("string[] count \(count) cannot fit in \(buf.count) bytes") }
            // The elements' bytes, if the value is well formed: everything but the count and the lengths.
            let total = buf.count - 8 - 4 * Int(count)
            var ends: [Int] = []
            ends.reserveCapacity(Int(count))
            // 16 bytes of slack: a short element is moved as one 16-byte vector (the bytes past it
            // are overwritten by the next element, or lie past the end).
            let utf8 = try [UInt8](unsafeUninitializedCapacity: total + 16) { dst, initialized in
                var at = 8, w = 0
                let out = UnsafeMutableRawPointer(dst.baseAddress!)
                for i in 0..<Int(count) {
                    guard buf.count - at >= 4 else { throw bad("string[] element \(i): length runs past the value") }
                    let n = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                    at += 4
                    guard n <= buf.count - at, n <= total - w else { throw bad("string[] element \(i): \(n) bytes run past the value") }
                    if n <= 16 && buf.count - at >= 16 {  // w + 16 <= total + 16: inside the capacity
                        out.storeBytes(of: base.loadUnaligned(fromByteOffset: at, as: SIMD16<UInt8>.self), toByteOffset: w, as: SIMD16<UInt8>.self)
                    } else if n > 0 {
                        (out + w).copyMemory(from: base + at, byteCount: n)
                    }
                    w += n
                    at += n
                    ends.append(w)
                }
                guard at == buf.count else { throw bad("\(buf.count - at) bytes left after \(count) strings") }
                initialized = w
            }
            let i = utf8.withUnsafeBufferPointer { u in ends.withUnsafeBufferPointer { e in
                g2w_utf8_first_invalid_element(u.baseAddress!, e.baseAddress, e.count)
            } }
            if i < ends.count {
                // Element i's bytes start after the count, i + 1 lengths and the bytes before it.
                let at = 8 + 4 * (i + 1) + (i == 0 ? 0 : ends[i - 1])
                throw G2WFormatError.invalidField(section: "metadata '\(key)'", field: "element \(i)", offset: offset + UInt64(at), reason: "not valid UTF-8")
            }
            return .stringArray(G2WStringArray(validatedUTF8: utf8, ends: ends))
        }
    }

    static func decodeTable(_ region: [UInt8], header h: G2WHeader) throws -> [G2WTensorInfo] {
        let tableEnd = Int(h.tensorTableOffset + h.tensorTableSize)
        var r = ByteReader(region, range: Int(h.tensorTableOffset)..<tableEnd, section: "tensor table")
        var tensors: [G2WTensorInfo] = []
        tensors.reserveCapacity(Int(h.tensorCount))
        var names = Set<String>()
        var expectedOffset = h.dataOffset
        for i in 0..<Int(h.tensorCount) {
            let entryOffset = r.fileOffset
            let nameLength = Int(try r.u16("entry \(i) name_length"))
            let dtypeCode = try r.u8("entry \(i) dtype")
            let rank = Int(try r.u8("entry \(i) rank"))
            let checksum = try r.u32("entry \(i) crc32c")
            var dims: [UInt64] = []
            for _ in 0..<G2WLayout.maxRank { dims.append(try r.u64("entry \(i) shape")) }
            let offset = try r.u64("entry \(i) offset")
            let byteCount = try r.u64("entry \(i) byte_length")
            let nameBytes = Array(try r.take(nameLength, "entry \(i) name"))
            func bad(_ field: String, _ at: Int, _ reason: String) -> G2WFormatError {
                .invalidField(section: "tensor table", field: "entry \(i) \(field)", offset: entryOffset + UInt64(at), reason: reason)
            }
            guard nameLength >= 1, nameLength <= G2WLayout.maxNameLength else {
                throw bad("name_length", 0, "is \(nameLength), must be 1...\(G2WLayout.maxNameLength)")
            }
            guard let name = String(validating: nameBytes, as: UTF8.self), !nameBytes.contains(0) else {
                throw bad("name", G2WLayout.tensorEntryFixedSize, "is not valid UTF-8 without NUL")
            }
            guard let dtype = G2WDType(rawValue: dtypeCode) else {
                throw G2WFormatError.invalidTensor(name: name, index: i, reason: "unknown dtype code \(dtypeCode) (this reader knows \(G2WDType.allCases.map { "\($0.rawValue) = \($0)" }.joined(separator: ", ")))")
            }
            guard rank >= 1, rank <= G2WLayout.maxRank else {
                throw G2WFormatError.invalidTensor(name: name, index: i, reason: "rank \(rank), must be 1...\(G2WLayout.maxRank)")
            }
            var elements: UInt64 = 1
            for (d, dim) in dims.enumerated() {
                if d < rank {
                    guard dim >= 1 else { throw G2WFormatError.invalidTensor(name: name, index: i, reason: "dimension \(d) is 0") }
                    guard let p = elements.multiplyingChecked(dim), p <= G2WLayout.maxElementCount else {
                        let shape = dims[0..<rank].map(String.init).joined(separator: "x")
                        throw G2WFormatError.invalidTensor(name: name, index: i, reason: "shape \(shape) has more elements than the format's limit of \(G2WLayout.maxElementCount) (2^60 - 1)")
                    }
                    elements = p
                } else if dim != 0 {
                    throw G2WFormatError.invalidTensor(name: name, index: i, reason: "dimension \(d) beyond rank \(rank) must be 0, is \(dim)")
                }
            }
            if dtype.isQuantized {
                let cols = dims[rank - 1]
                guard cols % UInt64(dtype.blockElements) == 0 else {
                    throw G2WFormatError.invalidTensor(name: name, index: i, reason: "\(dtype) needs the last dimension to be a multiple of \(dtype.blockElements), is \(cols)")
                }
                guard h.versionMinor >= dtype.minimumMinorVersion else {
                    throw G2WFormatError.invalidTensor(name: name, index: i, reason: "\(dtype) needs format version 1.\(dtype.minimumMinorVersion), the file says 1.\(h.versionMinor)")
                }
            }
            let expectedBytes = dtype.byteCount(elements: elements) ?? UInt64.max
            guard byteCount == expectedBytes else {
                throw G2WFormatError.invalidTensor(name: name, index: i, reason: "byte_length \(byteCount) does not match shape x \(dtype) = \(expectedBytes)")
            }
            guard offset % G2WLayout.alignment == 0 else {
                throw G2WFormatError.invalidTensor(name: name, index: i, reason: "offset \(offset) is not a multiple of 64")
            }
            guard offset == expectedOffset else {
                let why = offset < expectedOffset ? "overlaps the previous blob or the tables" : "leaves a hole after the previous blob"
                throw G2WFormatError.invalidTensor(name: name, index: i, reason: "offset \(offset) \(why) (expected \(expectedOffset))")
            }
            guard let end = offset.addingChecked(byteCount), end <= h.fileSize else {
                throw G2WFormatError.truncated(section: "blob of tensor '\(escapedForDisplay(name))'", needed: offset &+ byteCount, actual: h.fileSize)
            }
            guard names.insert(name).inserted else { throw G2WFormatError.duplicateName(section: "tensor table", name: name) }
            tensors.append(G2WTensorInfo(name: name, dtype: dtype, shape: dims[0..<rank].map { Int($0) },
                                         offset: offset, byteCount: byteCount, checksum: checksum))
            let isLast = i == Int(h.tensorCount) - 1
            expectedOffset = isLast ? end : (alignUp(end, G2WLayout.alignment) ?? UInt64.max)
        }
        guard r.remaining == 0 else {
            throw G2WFormatError.invalidField(section: "tensor table", field: "tensor_table_size", offset: r.fileOffset,
                                reason: "\(r.remaining) bytes left after \(h.tensorCount) entries")
        }
        guard expectedOffset == h.fileSize else {
            throw G2WFormatError.invalidField(section: "data", field: "file_size", offset: 88,
                                reason: "the last blob ends at \(expectedOffset) but the file is \(h.fileSize) bytes")
        }
        return tensors
    }
}

extension UInt64 {
    func addingChecked(_ other: UInt64) -> UInt64? {
        let (r, o) = addingReportingOverflow(other)
        return o ? nil : r
    }
    func multiplyingChecked(_ other: UInt64) -> UInt64? {
        let (r, o) = multipliedReportingOverflow(by: other)
        return o ? nil : r
    }
}
