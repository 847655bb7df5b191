// fuzz-safetensors: the safetensors reader, SafetensorsFile(path:).
//
// Each input is written to one scratch file and opened. Opening must throw SafetensorsError (or
// G2WFormatError for I/O) or produce entries that tile the data buffer exactly; then every
// entry's bytes are read through the mapping and compared with the input.
// Inserting or deleting bytes in the JSON header invalidates the 8-byte length prefix, so when the
// first open fails and the JSON header ends before the end of the input, the input is opened a
// second time with the prefix set to the JSON's real length.
import FuzzSupport
import G2WFormat

let scratch = ScratchFile(name: "input.safetensors")

@main
enum Main {
    static func main() { runLibFuzzer(fuzzOneInput) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var bytes = inputBytes(data, size)
    scratch.write(bytes)
    if !openAndCheck(bytes), bytes.count > 8, let length = jsonLength(bytes[8...]),
       UInt64(length) != readLE(bytes, 0, as: UInt64.self)! {
        writeLE(&bytes, 0, UInt64(length))
        scratch.write(bytes)
        _ = openAndCheck(bytes)
    }
    return 0
}

/// The length of the JSON value at the start of `tail`, when something follows it.
func jsonLength(_ tail: ArraySlice<UInt8>) -> Int? {
    do {
        _ = try JSONValue.parse(tail)
        return nil
    } catch let e as JSONError where e.reason == "unexpected data after the JSON value" {
        return e.offset
    } catch {
        return nil
    }
}

/// Opens the scratch file; returns whether it opened (after checking what it holds).
func openAndCheck(_ bytes: [UInt8]) -> Bool {
    let file: SafetensorsFile
    do {
        file = try SafetensorsFile(path: scratch.path)
    } catch let e as SafetensorsError {
        fuzzNote(e.description)
        return false
    } catch let e as G2WFormatError {
        fuzzCheck(false, "SafetensorsFile(path:) threw \(e) for a readable regular file")
        return false
    } catch {
        fuzzCheck(false, "SafetensorsFile(path:) threw an unexpected error type: \(error)")
        return false
    }
    fuzzNote("opened: \(file.entries.count) tensors, \(file.metadata.count) metadata entries")
    let headerLength = Int(readLE(bytes, 0, as: UInt64.self)!)
    let dataStart = 8 + headerLength
    fuzzCheck(file.fileSize == bytes.count, "fileSize")
    var expected = 0
    for e in file.entries {
        fuzzCheck(e.dataRange.lowerBound == expected, "entries do not tile the data buffer")
        expected = e.dataRange.upperBound
        fuzzCheck(file.entry(named: e.name) == e, "entry(named:) disagrees for \(e.name)")
        let elements = e.shape.reduce(UInt64(1)) { $0 &* UInt64($1) }  // the reader checked it does not overflow
        fuzzCheck(UInt64(e.dataRange.count) == elements &* UInt64(e.dtype.size), "byte count vs shape")
        fuzzCheck(UInt64(e.elementCount) == elements, "elementCount")
        let view = file.bytes(of: e)
        fuzzCheck(view.count == e.dataRange.count, "bytes(of:) count")
        let mapped = Array(view)  // touches every byte
        fuzzCheck(mapped[...] == bytes[(dataStart + e.dataRange.lowerBound)..<(dataStart + e.dataRange.upperBound)],
                  "mapped bytes differ from the input")
    }
    fuzzCheck(dataStart + expected == bytes.count, "entries do not cover the data buffer")
    for (k, v) in file.metadata { _ = k.count + v.count }
    return true
}
