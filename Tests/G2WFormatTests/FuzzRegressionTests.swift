import Foundation
import XCTest
@preconcurrency import G2WFormat

/// Inputs from the fuzz targets (tools/fuzz) that once crashed a reader, kept under
/// Tests/Fixtures/fuzz-regressions/<target>/. Each must now be handled without a crash.
final class FuzzRegressionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz-regressions")

    func fixture(_ target: String, _ name: String) -> String {
        Self.fixtures.appendingPathComponent(target).appendingPathComponent(name).path
    }

    /// A zero-element tensor whose other dimensions multiply past Int.max
    /// (shape [2^62, 3, 0], data_offsets [0, 0]). The reader accepts it, as the reference
    /// implementation does (the product is checked in 64-bit unsigned arithmetic and is 0), but
    /// `Entry.elementCount` multiplied the dimensions in Int and trapped on overflow.
    func testSafetensorsZeroElementTensorWithHugeDimensions() throws {
        let file = try SafetensorsFile(path: fixture("fuzz-safetensors", "zero-elements-huge-dims.safetensors"))
        XCTAssertEqual(file.entries.count, 1)
        let entry = try XCTUnwrap(file.entries.first)
        XCTAssertEqual(entry.shape, [1 << 62, 3, 0])
        XCTAssertEqual(entry.elementCount, 0)
        XCTAssertEqual(file.bytes(of: entry).count, 0)
    }

    /// Nonzero shapes still multiply out (their product is bounded by the checked byte count).
    func testSafetensorsElementCountOfOrdinaryShapes() throws {
        let dir = try makeTemporaryDirectory(self)
        let header = #"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"U8","shape":[],"data_offsets":[24,25]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
        bytes += [UInt8](repeating: 0, count: 25)
        let path = dir.appendingPathComponent("ordinary.safetensors").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.entries.map(\.elementCount), [6, 1])
    }

    /// Every committed input of the .g2w and safetensors targets opens (and its tensors can be
    /// read) or throws the reader's own error type; none crashes.
    func testAllCommittedInputsAreHandled() throws {
        let fm = FileManager.default
        let readers: [(String, (String) throws -> Void)] = [
            ("fuzz-g2w", { try G2WFile(path: $0).verify() }),
            ("fuzz-safetensors", { path in
                let f = try SafetensorsFile(path: path)
                for e in f.entries { XCTAssertEqual(f.bytes(of: e).count, e.elementCount * e.dtype.size) }
            }),
        ]
        var count = 0
        for (target, read) in readers {
            let dir = Self.fixtures.appendingPathComponent(target)
            for name in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] {
                count += 1
                do { try read(dir.appendingPathComponent(name).path) } catch is G2WFormatError {} catch is SafetensorsError {}
            }
        }
        XCTAssertGreaterThan(count, 0, "no inputs under \(Self.fixtures.path)")
    }
}
