import Foundation
import G2WSupport
import XCTest

/// File mappings: what is mapped is the file, byte for byte, at every size; large files (8 MB and
/// more) start at a 2 MB boundary on Linux (so the kernel can map them with 2 MB pages).
final class MappingTests: XCTestCase {
    func testMappedBytesAreTheFileAndLargeFilesAre2MBAligned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-map-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for size in [1, 4097, 8 << 20, (9 << 20) + 123] {
            let url = dir.appendingPathComponent("f\(size)")
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
            try Data(bytes).write(to: url)
            let mapping = try RegularFile(url.path).map()
            XCTAssertEqual(mapping.size, size)
            let m = mapping.bytes
            for i in stride(from: 0, to: size, by: 4093) { XCTAssertEqual(m[i], bytes[i], "size \(size) offset \(i)") }
            XCTAssertEqual(m[size - 1], bytes[size - 1])
            #if os(Linux)
            if size >= 8 << 20 { XCTAssertEqual(Int(bitPattern: mapping.base) % (2 << 20), 0, "size \(size)") }
            #endif
            // Released pages come back from the file.
            mapping.release(0..<size)
            XCTAssertEqual(m[size / 2], bytes[size / 2])
        }
    }
}
