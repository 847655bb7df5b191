// fuzz-g2w: the .g2w reader, G2WFile(path:) then verify().
//
// Each input is written to one scratch file and opened. Opening must either throw a
// G2WFormatError or produce a file whose every tensor can be read and verified without a crash.
// Most mutations break the header CRC-32C; when the first open fails only on that, the input is
// opened a second time with its checksum recomputed, so mutations of the metadata and the tensor
// table are exercised too.
import FuzzSupport
import G2WFormat

let scratch = ScratchFile(name: "input.g2w")

@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var bytes = inputBytes(data, size)
    scratch.write(bytes)
    if case .headerChecksumMismatch? = openAndCheck(bytes), fixG2WHeaderChecksum(&bytes) {
        scratch.write(bytes)
        if case .headerChecksumMismatch? = openAndCheck(bytes) { fuzzCheck(false, "header checksum still wrong after fixing it") }
    }
    return 0
}

/// Opens the scratch file; returns the error, or nil after exercising the opened file.
func openAndCheck(_ bytes: [UInt8]) -> G2WFormatError? {
    let file: G2WFile
    do {
        file = try G2WFile(path: scratch.path)
    } catch let e as G2WFormatError {
        fuzzNote("G2WFile: \(e.description)")
        return e
    } catch {
        fuzzCheck(false, "G2WFile(path:) threw a non-G2WFormatError: \(error)")
        return nil
    }
    fuzzCheck(file.fileSize == UInt64(bytes.count), "fileSize \(file.fileSize) != \(bytes.count)")
    fuzzCheck(file.tensors.count == Int(file.header.tensorCount), "tensor count")
    fuzzCheck(file.metadata.count == Int(file.header.metadataCount), "metadata count")
    for (key, value) in file.metadata {
        fuzzCheck(G2WMetadata.isValidKey(key), "invalid key accepted")
        _ = value.description
        _ = value.typeName
    }
    var checksumsGood = true
    for t in file.tensors {
        fuzzCheck(file.info(named: t.name) == t, "info(named:) disagrees for \(t.name)")
        let view = file.bytes(of: t)
        fuzzCheck(t.offset % 64 == 0 && t.offset + t.byteCount <= file.fileSize, "blob out of the file")
        fuzzCheck(view.count == t.elementCount * t.dtype.size, "byte count vs shape")
        // Touch every byte through the mapping, and compare with the input.
        let blob = Array(view)
        fuzzCheck(blob[...] == bytes[Int(t.offset)..<Int(t.offset + t.byteCount)], "mapped bytes differ from the input")
        if crc32c(blob) != t.checksum { checksumsGood = false }
        guard let tensor = file.tensor(named: t.name) else { fuzzCheck(false, "tensor(named:) is nil"); continue }
        fuzzCheck(tensor.floats().count == t.elementCount, "floats() count")
    }
    fuzzNote("G2WFile: opened, \(file.metadata.count) metadata entries, \(file.tensors.count) tensors")
    do {
        try file.verify()
        fuzzCheck(checksumsGood, "verify() accepted a blob with a wrong CRC-32C")
    } catch let e as G2WFormatError {
        fuzzNote("verify: \(e.description)")
        switch e {
        case .tensorChecksumMismatch: fuzzCheck(!checksumsGood, "verify() rejected blobs whose CRC-32C are right")
        case .nonZeroPadding: break
        default: fuzzCheck(false, "verify() threw \(e)")
        }
    } catch {
        fuzzCheck(false, "verify() threw a non-G2WFormatError: \(error)")
    }
    return nil
}
