import Foundation
import G2W
import G2WFormat
import XCTest

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ p: String) -> String { root.appendingPathComponent(p).path }
    /// The project's shared material (`../shared` beside the repository), when present.
    static let shared: URL? = {
        let u = root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
        return FileManager.default.fileExists(atPath: u.path) ? u : nil
    }()

    /// Debug builds run the C kernels unoptimised (50-150x slower): the longest reference checks
    /// run in release builds only (`swift test -c release`, what CI runs), and a few loops are
    /// shorter, so a debug `swift test` stays within minutes.
    static let isDebugBuild: Bool = {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }()

    static func requireReleaseBuild(_ what: String) throws {
        if isDebugBuild { throw XCTSkip("\(what): run in release builds only (swift test -c release); this debug build runs the kernels unoptimised") }
    }

    static func floats(_ path: String) throws -> [Float] {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        return d.withUnsafeBytes { raw in (0..<(d.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    }

    static func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    static let lock = NSLock()
    nonisolated(unsafe) static var converted: [String: String] = [:]

    /// Converts a fixture checkpoint once per test run (cached by source and dtype).
    static func convert(_ source: String, dtype: G2WDType, extra: (inout HuggingFaceConverter.Options) -> Void = { _ in }) throws -> String {
        lock.lock(); defer { lock.unlock() }
        let key = "\(source)|\(dtype)"
        if let p = converted[key] { return p }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-fixture-\(UUID().uuidString).g2w").path
        var o = HuggingFaceConverter.Options()
        o.dtype = dtype
        o.output = out
        extra(&o)
        _ = try HuggingFaceConverter(input: source, options: o).run()
        converted[key] = out
        return out
    }
}

func maxAbsDiff(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
